//! Streams the store's links into the scheduler at start, a page at a time.
//!
//! Loading a million links whole took half a minute and held them twice
//! (the records, then the table built from them): more than the daemon's
//! memory budget, and no POST could leave before the last link was read. The
//! loader instead reads pages of [`Store::load_links_page`] in id order and
//! hands each to the running scheduler, which schedules its links at once:
//! the first POST leaves after the first page, and at most a couple of pages
//! are in memory beside the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::health::StoreHealth;
use crate::store::{LinkRecord, Store};

/// Pages read ahead of the scheduler: enough to keep it busy, few enough to
/// bound memory.
const READ_AHEAD: usize = 2;

/// Starts reading; the channel closes after the last page (or at shutdown).
/// A page that fails to load is retried with a growing pause (at most 5 s),
/// so a store hiccup at start delays links rather than dropping them; while
/// it fails, `health` says so and `/readyz` answers 503 with the reason.
pub fn spawn(
    tasks: &TaskTracker,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    health: StoreHealth,
) -> mpsc::Receiver<Vec<LinkRecord>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tasks.spawn(async move {
        let started = Instant::now();
        let mut after = String::new();
        let mut loaded = 0usize;
        let mut delay = Duration::from_millis(100);
        loop {
            let page = tokio::select! {
                () = cancel.cancelled() => return,
                page = store.load_links_page(&after) => page,
            };
            match page {
                Ok(Some((links, last))) => {
                    if delay > Duration::from_millis(100) {
                        health.recovered();
                    }
                    loaded += links.len();
                    after = last;
                    delay = Duration::from_millis(100);
                    if tx.send(links).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, after = %after, retry_in = ?delay, "could not load a page of links; retrying");
                    health.failed(format!("could not load the links from the store: {e}"));
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(links = loaded, elapsed = ?started.elapsed(), "links loaded");
    });
    rx
}
