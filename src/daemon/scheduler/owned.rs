//! The scheduler's side of partitioned ownership (PostgreSQL; see "Several
//! replicas" in [`crate::store`]): it holds only the links of the partitions
//! its replica holds. On gaining a partition it loads that partition's links
//! from the store, a page at a time; on losing one (or holding it again at a
//! new epoch, after its hold lapsed) it drops them, and the dispatcher's
//! fence refuses whatever of theirs was already queued.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::Scheduler;
use crate::daemon::membership::Holdings;
use crate::domain::LinkId;
use crate::store::{LinkRecord, Store};

/// Pages of a gained partition's links read ahead of the loop.
const READ_AHEAD: usize = 2;

/// What the loop knows of its replica's partitions.
pub struct Owned {
    /// Published by the heartbeat ([`crate::daemon::membership`]).
    pub holdings: watch::Receiver<Arc<Holdings>>,
    /// The holdings the table was last brought in line with.
    pub applied: Arc<Holdings>,
    /// Pages of gained partitions' links, from loader tasks.
    pages: mpsc::Receiver<Vec<LinkRecord>>,
    pages_tx: mpsc::Sender<Vec<LinkRecord>>,
}

impl Owned {
    /// Nothing held yet; `holdings` says when that changes.
    pub fn new(holdings: watch::Receiver<Arc<Holdings>>) -> Self {
        let (pages_tx, pages) = mpsc::channel(READ_AHEAD);
        Self {
            holdings,
            applied: Arc::default(),
            pages,
            pages_tx,
        }
    }
}

/// What partitioned ownership woke the loop for.
pub(super) enum Wake {
    /// The heartbeat published new holdings.
    Holdings,
    /// A page of a gained partition's links.
    Gained(Vec<LinkRecord>),
}

/// The next change of the holdings or page of gained links; never ready
/// without partitioned ownership (or once the heartbeat has stopped).
pub(super) async fn next(owned: &mut Option<Owned>) -> Wake {
    let Some(o) = owned else {
        return std::future::pending().await;
    };
    tokio::select! {
        Ok(()) = o.holdings.changed() => Wake::Holdings,
        Some(page) = o.pages.recv() => Wake::Gained(page),
        else => std::future::pending().await,
    }
}

/// `(partition, epoch)` pairs: a partition held again at a new epoch counts
/// as lost and gained, since others may have sent for its links meanwhile.
fn pairs(h: &Holdings) -> BTreeSet<(u32, i64)> {
    h.held.iter().map(|(p, e)| (*p, *e)).collect()
}

impl Scheduler {
    /// Whether this replica schedules the link: every link on SQLite; on
    /// PostgreSQL those of the partitions it holds.
    pub(super) fn mine(&self, id: &LinkId) -> bool {
        self.owned
            .as_ref()
            .is_none_or(|o| o.applied.holds(id.as_str()))
    }

    /// Brings the table in line with new holdings: drops the links of lost
    /// partitions, starts loading those of gained ones.
    pub(super) fn on_holdings(&mut self) {
        let Some(owned) = self.owned.as_mut() else {
            return;
        };
        let new = owned.holdings.borrow_and_update().clone();
        let (before, after) = (pairs(&owned.applied), pairs(&new));
        let recount = owned.applied.partitions != new.partitions;
        let lost: BTreeSet<u32> = before.difference(&after).map(|(p, _)| *p).collect();
        let gained: Vec<u32> = after.difference(&before).map(|(p, _)| *p).collect();
        owned.applied = new.clone();
        let tx = owned.pages_tx.clone();
        if !lost.is_empty() || recount {
            let mut dropped = 0usize;
            // A partition held again at a new epoch is not dropped: its
            // reload below merges the store's newer times over it.
            for i in 0..self.table.len() {
                let e = self.table.get(i);
                if e.is_vacant() || new.holds(e.id.as_str()) {
                    continue;
                }
                dropped += usize::from(!e.removed);
                self.table.get_mut(i).removed = true;
                self.timer.cancel(&mut self.table, i);
                self.withdraw_from_budget(i);
                self.release_if_dropped(i);
            }
            // The first holdings only set the partition count: nothing to say.
            if dropped > 0 || !lost.is_empty() {
                tracing::info!(
                    partitions = lost.len(),
                    links = dropped,
                    held = self.table.held(),
                    "dropped the links of partitions this replica no longer holds"
                );
            }
        }
        if !gained.is_empty() {
            spawn_load(&self.tasks, self.store.clone(), gained, tx);
        }
    }

    /// Frees link `i`'s slot in the table (see [`LinkTable::release`]) once
    /// it was dropped with its partition and nothing refers to its index:
    /// not in flight (a job queued or sent: released when its answer
    /// comes), not waiting for budget. Never on SQLite, where every link is
    /// this replica's.
    ///
    /// [`LinkTable::release`]: crate::daemon::table::LinkTable::release
    pub(super) fn release_if_dropped(&mut self, i: usize) {
        let e = self.table.get(i);
        if e.is_vacant() || !e.removed || e.in_flight || self.mine(&e.id) {
            return;
        }
        if self.budget.as_ref().is_some_and(|g| g.is_waiting(i)) {
            return;
        }
        self.timer.cancel(&mut self.table, i);
        self.table.release(i);
    }

    /// A page of a gained partition's links: merged (a link dropped before
    /// comes back with the store's state) and decided for now.
    pub(super) fn gained(&mut self, page: &[LinkRecord]) {
        let now = self.clock.now();
        for rec in page {
            if !self.mine(&rec.id) {
                continue;
            }
            let i = self.table.merge(rec);
            self.merged(i);
            if !self.table.get(i).in_flight {
                self.timer.schedule(&mut self.table, i, now);
            }
        }
    }
}

/// Reads the links of `parts` a page at a time into `tx`. A failed page
/// is retried (the partitions stay held, their links must come).
fn spawn_load(
    tasks: &tokio_util::task::TaskTracker,
    store: Arc<dyn Store>,
    parts: Vec<u32>,
    tx: mpsc::Sender<Vec<LinkRecord>>,
) {
    tasks.spawn(async move {
        let Some(ownership) = store.ownership() else {
            return;
        };
        let started = std::time::Instant::now();
        let (mut after, mut loaded) = (String::new(), 0usize);
        loop {
            match ownership.load_partitions_page(&parts, &after).await {
                Ok(Some((links, last))) => {
                    loaded += links.len();
                    after = last;
                    if tx.send(links).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) if tx.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not load the links of gained partitions; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        tracing::info!(partitions = parts.len(), links = loaded, elapsed = ?started.elapsed(), "loaded the links of gained partitions");
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::Owned;
    use crate::daemon::dispatch::{Done, NotSentReason};
    use crate::daemon::membership::Holdings;
    use crate::daemon::scheduler::merge::tests::scheduler;
    use crate::daemon::table::fresh_record;
    use crate::policy::partitions::partition_of;
    use crate::store::LinkRecord;

    /// `n` links of partition `part` of 2.
    fn links_of(part: u32, n: usize) -> Vec<LinkRecord> {
        (0..)
            .map(|k| format!("mk_p{k}"))
            .filter(|id| partition_of(id, 2) == part)
            .take(n)
            .map(|id| fresh_record(&id, "accounts"))
            .collect()
    }

    fn holding(part: u32) -> Arc<Holdings> {
        Arc::new(Holdings {
            partitions: 2,
            held: BTreeMap::from([(part, 1)]),
            leaving: BTreeMap::new(),
            valid_until: None,
        })
    }

    /// Issue 16: a replica whose partitions move back and forth (a
    /// rebalance, a fleet starting) holds one partition's links at a time;
    /// its table must not keep every link it ever held. A link dropped
    /// while its request is in flight is released when the answer comes.
    #[tokio::test]
    async fn the_links_of_lost_partitions_free_their_slots_for_the_links_of_gained_ones() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lf.db").display());
        let store = crate::store::connect(&url).await.unwrap();
        let (mut s, _ends) = scheduler(store).await;
        let (tx, rx) = watch::channel(Arc::new(Holdings::default()));
        s.owned = Some(Owned::new(rx));
        let (zero, one) = (links_of(0, 50), links_of(1, 50));
        for round in 0..4 {
            let (part, page) = if round % 2 == 0 {
                (0, &zero)
            } else {
                (1, &one)
            };
            tx.send_replace(holding(part));
            s.on_holdings();
            s.gained(page);
            assert_eq!(s.table.iter().filter(|e| !e.removed).count(), 50);
        }
        assert_eq!(s.table.len(), 50, "slots for the links held at once");

        // In flight when its partition goes: kept until its answer.
        let id = one[0].id.clone();
        let i = s.table.find(&id).unwrap();
        s.table.get_mut(i).in_flight = true;
        s.in_flight += 1;
        tx.send_replace(holding(0));
        s.on_holdings();
        assert_eq!(s.table.find(&id), Some(i), "released while in flight");
        s.gained(&zero);
        assert_eq!(s.table.len(), 51, "its slot is not reused yet");
        s.on_done(Done::NotSent {
            idx: i,
            reason: NotSentReason::NotHeld,
        });
        assert_eq!(s.table.find(&id), None, "released once answered");
        assert!(s.table.get(i).is_vacant());
        tx.send_replace(holding(1));
        s.on_holdings();
        s.gained(&one);
        assert_eq!(s.table.len(), 51);
        assert_eq!(s.table.held(), 50);
    }
}
