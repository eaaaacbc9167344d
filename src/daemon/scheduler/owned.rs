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
                if !e.removed && !new.holds(e.id.as_str()) {
                    self.table.get_mut(i).removed = true;
                    self.timer.cancel(&mut self.table, i);
                    dropped += 1;
                }
            }
            tracing::info!(
                partitions = lost.len(),
                links = dropped,
                "dropped the links of partitions this replica no longer holds"
            );
        }
        if !gained.is_empty() {
            spawn_load(&self.tasks, self.store.clone(), gained, tx);
        }
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
