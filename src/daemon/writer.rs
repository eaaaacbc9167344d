//! Group commit of outcomes: answers are queued by the scheduler and written
//! in batches, one transaction per batch, so durability does not cap
//! throughput. Intents are written by the dispatcher before sending (see
//! `dispatch.rs`); an outcome that is still queued when the process dies is
//! harmless, because its intent already counts the request as sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::{LinkId, Product};
use crate::store::{DueUpdate, LinkPatch, Outcome, Store, Timestamp};

/// Largest batch per transaction.
const MAX_BATCH: usize = 1024;

/// A write for the store.
#[derive(Debug)]
pub enum Write {
    /// The answer to a POST.
    Outcome(Outcome),
    /// A change outside a POST (reconciliation, re-check).
    Patch(LinkId, LinkPatch),
    /// A link's products' newly computed due times, for the fleet page;
    /// coalesced per flush (only the latest per product is written).
    Due(Vec<DueUpdate>),
}

/// Runs until every sender is dropped, then flushes what is queued.
pub async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    clock: crate::clock::Clock,
) {
    let mut outcomes = Vec::with_capacity(MAX_BATCH);
    let mut dues: HashMap<(LinkId, Product), Option<Timestamp>> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Outcome(o) => outcomes.push(o),
                Write::Due(updates) => {
                    for (link, product, due) in updates {
                        dues.insert((link, product), due);
                    }
                }
                Write::Patch(link, patch) => {
                    if let Err(e) = store.apply_patch(&link, &patch, clock.now()).await {
                        tracing::error!(link = %link, error = %e, "could not record a link change");
                    }
                }
            }
            if outcomes.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !dues.is_empty() {
            flush_dues(&*store, &mut dues).await;
        }
        if outcomes.is_empty() {
            continue;
        }
        // A failed write is retried: losing an outcome would only make the
        // state more conservative, but losing a 429's restore or a park
        // would cost requests.
        let mut delay = Duration::from_millis(50);
        loop {
            match store.record_outcomes(&outcomes).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, batch = outcomes.len(), "could not record outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if rx.is_closed() && delay >= Duration::from_secs(5) {
                        tracing::error!(
                            batch = outcomes.len(),
                            "giving up on outcomes at shutdown; their intents count them as sent"
                        );
                        break;
                    }
                }
            }
        }
        outcomes.clear();
    }
}

/// Writes coalesced due times; a failure only makes the fleet page stale,
/// so it is logged and dropped rather than retried.
async fn flush_dues(store: &dyn Store, dues: &mut HashMap<(LinkId, Product), Option<Timestamp>>) {
    let updates: Vec<DueUpdate> = dues.drain().map(|((l, p), d)| (l, p, d)).collect();
    if let Err(e) = store.set_next_due(&updates).await {
        tracing::warn!(error = %e, updates = updates.len(), "could not record due times");
    }
}
