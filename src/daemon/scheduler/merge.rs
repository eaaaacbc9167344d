//! Bringing what the store knows into the table: the pages of the load at
//! start, the changes made through the store (operator, API), the links
//! other replicas claimed or finished, the links whose claim was refused, and
//! the links of a reloaded configuration. Each merges records into the
//! [`LinkTable`](super::super::table::LinkTable) and lets the loop decide for
//! them again.

use std::sync::Arc;

use chrono::TimeDelta;
use tokio::sync::mpsc;

use super::Scheduler;
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
            let i = self.table.merge(rec);
            tracing::debug!(link = %rec.id, state = %rec.state, "link changed in the store");
            self.consider(i, now);
        }
        if self.shared {
            self.poll_claims().await;
            self.refresh_budget().await;
        }
    }

    /// Reloads the links whose claims were refused and decides for them again
    /// shortly (see [`CLAIM_RETRY`]).
    pub(super) async fn reload_refused(&mut self) {
        for idx in std::mem::take(&mut self.refused) {
            let id = self.table.get(idx).id.clone();
            match self.store.load_link(&id).await {
                Ok(Some(rec)) => {
                    self.table.merge(&rec);
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
            let i = self.table.merge(rec);
            if !self.table.get(i).in_flight {
                self.consider(i, now);
            }
        }
    }

    pub(super) async fn reload(&mut self) {
        let Some(reloaded) =
            crate::daemon::reload::reload(&self.config_path, &self.store, self.clock).await
        else {
            return;
        };
        self.rules = reloaded.rules;
        self.reload_budget(reloaded.budget).await;
        self.published_rules
            .send_replace(Arc::new(self.rules.clone()));
        let now = self.clock.now();
        for rec in &reloaded.records {
            let i = self.table.merge(rec);
            self.consider(i, now);
        }
        let kept: std::collections::HashSet<&crate::domain::LinkId> =
            reloaded.records.iter().map(|r| &r.id).collect();
        for i in 0..self.table.len() {
            if !kept.contains(&self.table.get(i).id) {
                let e = self.table.get_mut(i);
                e.removed = true;
                self.timer.cancel(&mut self.table, i);
            }
        }
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
