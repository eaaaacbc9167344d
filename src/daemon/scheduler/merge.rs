//! Bringing what the store knows into the table: the pages of the load at
//! start, the changes made through the store (operator, API), the links
//! other replicas claimed or finished, the links whose claim was refused,
//! and the links of a reloaded configuration (streamed in pages, as at
//! start). Each merges records into the
//! [`LinkTable`](super::super::table::LinkTable) and lets the loop decide
//! for them again.

use std::sync::Arc;

use chrono::TimeDelta;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Scheduler;
use crate::daemon::loader;
use crate::store::LinkRecord;

/// Pause between reloading a link whose claim was refused and deciding for it
/// again: if the refusal was a row briefly locked or a lease still held (the
/// times did not move), the claim is retried at this pace, not in a tight loop.
const CLAIM_RETRY: TimeDelta = TimeDelta::milliseconds(200);

impl Scheduler {
    /// Adds a page of stored links and schedules each for evaluation now.
    /// A link already in the table came from a change poll, a claim poll or
    /// a reload that ran while loading: its record may be newer than this
    /// page (read ahead), and any later change reaches it through the polls,
    /// so the page's record is skipped rather than merged over it.
    pub(super) fn load(&mut self, page: &[LinkRecord]) {
        let now = self.clock.now();
        for rec in page {
            if self.table.find(&rec.id).is_some() {
                continue;
            }
            let i = self.table.merge(rec);
            self.merged(i);
            self.timer.schedule(&mut self.table, i, now);
        }
    }

    /// Operator and API changes made through the store, about once a second.
    pub(super) async fn poll_changes(&mut self) {
        self.heartbeat.beat();
        let changes = match self.store.changes_since(self.change_seq).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not poll the store for changes");
                return;
            }
        };
        let (seq, records) = changes;
        self.change_seq = seq;
        let now = self.clock.now();
        for rec in &records {
            if !self.mine(&rec.id) {
                continue;
            }
            let i = self.table.merge(rec);
            self.merged(i);
            tracing::debug!(link = %rec.id, state = %rec.state, "link changed in the store");
            self.consider(i, now);
        }
        // With partitions nobody else claims this replica's links (but for
        // a handover's first moments, which a refused claim and its reload
        // cover): reading every other replica's claims each second would
        // cost each replica the whole fleet's traffic again.
        if self.shared && self.owned.is_none() {
            self.poll_claims().await;
            self.refresh_budget().await;
        }
    }

    /// Reloads the links whose claims were refused and decides for them again
    /// shortly (see [`CLAIM_RETRY`]).
    pub(super) async fn reload_refused(&mut self) {
        for idx in std::mem::take(&mut self.refused) {
            let id = self.table.get(idx).id.clone();
            if id.is_vacant() || !self.mine(&id) {
                continue;
            }
            match self.store.load_link(&id).await {
                Ok(Some(rec)) => {
                    let i = self.table.merge(&rec);
                    self.merged(i);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(link = %id, error = %e, "could not reload a link"),
            }
            let at = self.clock.now() + CLAIM_RETRY;
            self.timer.schedule(&mut self.table, idx, at);
        }
    }

    /// Requests other replicas claimed or finished since the last poll.
    pub(super) async fn poll_claims(&mut self) {
        let (seq, records) = match self.store.claims_since(self.claim_seq).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not poll the store for other replicas' claims");
                return;
            }
        };
        self.claim_seq = seq;
        let now = self.clock.now();
        for rec in &records {
            if !self.mine(&rec.id) {
                continue;
            }
            let i = self.table.merge(rec);
            self.merged(i);
            if !self.table.get(i).in_flight {
                self.consider(i, now);
            }
        }
    }

    /// Re-reads the configuration (SIGHUP, config change) and syncs it; the
    /// new rules apply at once, and the synced links then stream in through
    /// the paged [`loader`](crate::daemon::loader) as at start (see
    /// [`Reloading`]). A reload asked for while one streams starts over.
    pub(super) async fn reload(&mut self) {
        let Some(reloaded) =
            crate::daemon::reload::reload(&self.config_path, &self.store, self.clock).await
        else {
            return;
        };
        self.rules = reloaded.rules;
        self.published_budget.send_replace(reloaded.budget.clone());
        self.reload_budget(reloaded.budget).await;
        // Profiles may have changed: each link is resolved again as its
        // page of the reload arrives.
        self.table.set_profiles(self.rules.profiles.clone());
        self.published_rules
            .send_replace(Arc::new(self.rules.clone()));
        let stop = CancellationToken::new();
        let pages = loader::spawn(
            &self.tasks,
            self.store.clone(),
            stop.clone(),
            self.store_health.clone(),
        );
        self.reloading = Some(Reloading {
            pages,
            seen: Vec::new(),
            _stop: stop.drop_guard(),
        });
    }

    /// Merges a page of a reload's links and decides for each again.
    pub(super) fn reload_page(&mut self, page: &[LinkRecord]) {
        let now = self.clock.now();
        for rec in page {
            if !self.mine(&rec.id) {
                continue;
            }
            let i = self.table.merge(rec);
            self.merged(i);
            self.consider(i, now);
        }
    }

    /// A reload's last page has arrived: every link the table holds that
    /// neither the reload nor any other read of the store since brought back
    /// is no longer configured.
    pub(super) fn reload_done(&mut self) {
        let Some(reloading) = self.reloading.take() else {
            return;
        };
        for i in 0..self.table.len() {
            if !reloading.seen.get(i).copied().unwrap_or(false) {
                let e = self.table.get_mut(i);
                e.removed = true;
                self.timer.cancel(&mut self.table, i);
            }
        }
    }

    /// Notes that entry `i` was just merged from a record read after the
    /// running reload's sync, so its end does not take it for removed (a
    /// link added through the API while the reload streams, or loaded by a
    /// start-up page behind it, is in the store but may sort before the
    /// reload's position).
    pub(super) fn merged(&mut self, i: usize) {
        if let Some(r) = &mut self.reloading {
            if r.seen.len() <= i {
                r.seen.resize(i + 1, false);
            }
            r.seen[i] = true;
        }
    }
}

/// A reload whose links are still arriving.
pub(crate) struct Reloading {
    /// Pages from the loader, in id order.
    pages: mpsc::Receiver<Vec<LinkRecord>>,
    /// Table entries merged since the reload's sync, by index.
    seen: Vec<bool>,
    /// Stops the loader when the reload ends, is superseded or the loop stops.
    _stop: DropGuard,
}

/// The next page of a running reload; never ready when none runs.
pub(super) async fn next_reload_page(reloading: &mut Option<Reloading>) -> Option<Vec<LinkRecord>> {
    match reloading {
        Some(r) => r.pages.recv().await,
        None => std::future::pending().await,
    }
}

/// The next page from the loader; never ready once loading has ended.
pub(super) async fn next_page(
    loading: &mut Option<mpsc::Receiver<Vec<LinkRecord>>>,
) -> Option<Vec<LinkRecord>> {
    match loading {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use chrono::TimeDelta;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::{Reloading, Scheduler};
    use crate::clock::Clock;
    use crate::daemon::limiter::Limiter;
    use crate::daemon::table::{LinkTable, fresh_record};
    use crate::daemon::timer::Timer;
    use crate::domain::{LinkId, ProductSet};
    use crate::health::Heartbeat;
    use crate::policy::Rules;
    use crate::store::health::StoreHealth;
    use crate::store::{LinkRecord, LinkSource, LinkSpec, Store};

    /// A loop over a real SQLite file, not running: the test drives its steps.
    /// The channels' other ends are returned so that nothing it sends fails.
    pub(in crate::daemon::scheduler) async fn scheduler(
        store: Arc<dyn Store>,
    ) -> (Scheduler, impl Sized) {
        let (jobs, jobs_rx) = mpsc::channel(64);
        let (done_tx, done) = mpsc::unbounded_channel();
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let (reload_tx, reload) = mpsc::channel(1);
        let (published_rules, rules_rx) = watch::channel(Arc::new(Rules::default()));
        let change_seq = store.change_mark().await.unwrap();
        let s = Scheduler {
            table: LinkTable::default(),
            timer: Timer::default(),
            rules: Rules::default(),
            published_rules,
            published_budget: watch::channel(None).0,
            profile_ages: Default::default(),
            clock: Clock::default(),
            store,
            jobs,
            done,
            writes,
            limiter: Limiter::new(10),
            activity: None,
            heartbeat: Heartbeat::default(),
            reload,
            config_path: std::path::PathBuf::new(),
            change_seq,
            in_flight: 0,
            history_retention: TimeDelta::days(30),
            shared: false,
            claim_seq: 0,
            refused: Vec::new(),
            tasks: TaskTracker::new(),
            loading: None,
            reloading: None,
            owned: None,
            store_health: StoreHealth::new(),
            budget: None,
            replica: "test".into(),
        };
        (s, (jobs_rx, done_tx, writes_rx, reload_tx, rules_rx))
    }

    fn removed(s: &Scheduler, id: &str) -> bool {
        let i = s.table.find(&LinkId::parse(id).unwrap()).unwrap();
        s.table.get(i).removed
    }

    #[tokio::test]
    async fn a_paged_reload_removes_only_links_no_read_since_its_sync_brought_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lf.db").display());
        let store = crate::store::connect(&url).await.unwrap();
        let (mut s, _ends) = scheduler(store.clone()).await;
        // Running with mk_a, mk_b and mk_c; the new config drops mk_c.
        for id in ["mk_a", "mk_b", "mk_c"] {
            s.table.merge(&fresh_record(id, "accounts"));
        }
        let (pages, rx) = mpsc::channel::<Vec<LinkRecord>>(4);
        s.reloading = Some(Reloading {
            pages: rx,
            seen: Vec::new(),
            _stop: CancellationToken::new().drop_guard(),
        });
        s.reload_page(&[fresh_record("mk_a", "accounts")]);
        // While the reload streams, an operator adds mk_0d through the API.
        // It sorts before the reload's position, so no page brings it back;
        // the change poll merges it.
        let now = s.clock.now();
        let d = LinkSpec {
            id: LinkId::parse("mk_0d").unwrap(),
            products: ProductSet::parse_list("accounts").unwrap(),
            cadence: None,
            source: LinkSource::Api,
        };
        store.upsert_link(&d, now).await.unwrap();
        s.poll_changes().await;
        s.reload_page(&[fresh_record("mk_b", "accounts")]);
        drop(pages);
        s.reload_done();
        assert!(s.reloading.is_none());
        assert!(removed(&s, "mk_c"), "dropped from the config");
        for kept in ["mk_a", "mk_b", "mk_0d"] {
            assert!(!removed(&s, kept), "{kept} was taken for removed");
        }
    }
}
