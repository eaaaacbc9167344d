//! Group commit: answers and what reconciliations read, queued by the
//! scheduler, and intents handed over by the dispatcher are written
//! together, one transaction per round (see
//! [`Store::record_batch`]), so durability does not cap throughput. The
//! dispatcher waits for its intents' commit before sending; an outcome that
//! is still queued when the process dies is harmless, because its intent
//! already counts the request as sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::budget::Exhaustion;
use crate::config::BudgetConfig;
use crate::domain::{LinkId, Product};
use crate::store::health::StoreHealth;
use crate::store::{
    AttemptId, DueUpdate, Intent, LinkPatch, Outcome, OwnPatch, PostCap, Store, Timestamp,
};

/// At shutdown, failed writes are retried until the pause between tries
/// reaches this (50 ms doubling: about 1.5 s in all), then given up.
const SHUTDOWN_RETRY_LIMIT: Duration = Duration::from_secs(1);

/// Largest batch per transaction.
const MAX_BATCH: usize = 1024;

/// How long due times may wait before they are written. They only feed the
/// fleet page, and writing them with every outcome batch cost a third of the
/// store's time at full throughput (one more transaction per batch).
const DUE_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Due times written at once, sooner than [`DUE_FLUSH_EVERY`], when this
/// many are waiting: while a replica loads a third of a million links, a
/// second's worth (each with its link id) was megabytes of its start-up
/// peak (issue 16).
const DUE_FLUSH_ROWS: usize = 8192;

/// A write for the store.
#[derive(Debug)]
pub enum Write {
    /// The answer to a POST.
    Outcome(Outcome),
    /// A change outside a POST (reconciliation, re-check), written in the
    /// next round like an outcome.
    Patch(LinkId, LinkPatch),
    /// Intents of POSTs about to be sent; the reply carries one attempt id
    /// per intent (`None`: claim refused) once they are committed.
    Intents(Vec<Intent>, IntentsReply),
    /// A link's products' newly computed due times, for the fleet page;
    /// coalesced (only the latest per product is written) and flushed at
    /// most once a second.
    Due(Vec<DueUpdate>),
    /// A budget exhaustion episode: its `budget.exhausted` event is
    /// written at once (one small insert, nothing when `[events]` is not
    /// configured); a failure is logged, not retried.
    BudgetExhausted(Exhaustion),
}

/// Where the writer answers a [`Write::Intents`].
pub type IntentsReply = oneshot::Sender<Result<Vec<Option<AttemptId>>, String>>;

/// Runs until every sender is dropped, then flushes what is queued.
/// Intents are committed under the `[budget]` in force (`budget`), as a
/// [`PostCap`]: the budget gate's last line of defence across replicas.
pub async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    clock: crate::clock::Clock,
    health: StoreHealth,
    budget: watch::Receiver<Option<BudgetConfig>>,
) {
    let mut outcomes = Vec::with_capacity(MAX_BATCH);
    let mut patches: Vec<OwnPatch> = Vec::new();
    let mut intents: Vec<(Vec<Intent>, IntentsReply)> = Vec::new();
    let mut dues: HashMap<(LinkId, Product), Option<Timestamp>> = HashMap::new();
    let mut due_deadline: Option<Instant> = None;
    loop {
        let first = match due_deadline {
            None => rx.recv().await,
            Some(deadline) => tokio::select! {
                write = rx.recv() => write,
                () = tokio::time::sleep_until(deadline) => {
                    flush_dues(&*store, &mut dues).await;
                    due_deadline = None;
                    continue;
                }
            },
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Outcome(o) => outcomes.push(o),
                Write::Intents(batch, reply) => intents.push((batch, reply)),
                Write::Due(updates) => {
                    for (link, product, due) in updates {
                        if fold_due(&mut outcomes, &link, product, due) {
                            dues.remove(&(link, product));
                            continue;
                        }
                        dues.insert((link, product), due);
                    }
                    if !dues.is_empty() {
                        due_deadline.get_or_insert_with(|| Instant::now() + DUE_FLUSH_EVERY);
                    }
                }
                Write::BudgetExhausted(x) => record_exhaustion(&*store, &x).await,
                Write::Patch(link, patch) => patches.push(OwnPatch {
                    link,
                    patch,
                    at: clock.now(),
                }),
            }
            if outcomes.len() + patches.len() + intents.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if due_deadline.is_some_and(|d| d <= Instant::now()) || dues.len() >= DUE_FLUSH_ROWS {
            flush_dues(&*store, &mut dues).await;
            due_deadline = None;
        }
        if !intents.is_empty() {
            let cap = budget.borrow().as_ref().map(|b| PostCap {
                since: clock.now() - b.budget.span(),
                limit: b.budget.posts_per_day,
            });
            let round = Round {
                outcomes: &mut outcomes,
                patches: &mut patches,
                intents: &mut intents,
            };
            commit_round(&*store, &health, round, cap).await;
        }
        if !outcomes.is_empty() || !patches.is_empty() {
            record(&*store, &health, &mut outcomes, &mut patches, &rx).await;
        }
    }
    if !dues.is_empty() {
        flush_dues(&*store, &mut dues).await;
    }
}

/// What one round commits.
struct Round<'a> {
    outcomes: &'a mut Vec<Outcome>,
    patches: &'a mut Vec<OwnPatch>,
    intents: &'a mut Vec<(Vec<Intent>, IntentsReply)>,
}

/// Commits the queued outcomes, patches and intents in one transaction and
/// answers the intents. On failure the intents are refused (their POSTs are
/// not sent) and the rest stays queued for [`record`]'s retries.
async fn commit_round(
    store: &dyn Store,
    health: &StoreHealth,
    round: Round<'_>,
    cap: Option<PostCap>,
) {
    let Round {
        outcomes,
        patches,
        intents,
    } = round;
    let sizes: Vec<usize> = intents.iter().map(|(batch, _)| batch.len()).collect();
    let all: Vec<Intent> = intents
        .iter_mut()
        .flat_map(|(batch, _)| std::mem::take(batch))
        .collect();
    match store
        .record_batch_capped(outcomes, patches, &all, cap)
        .await
    {
        Ok(ids) => {
            health.recovered();
            outcomes.clear();
            patches.clear();
            let mut ids = ids.into_iter();
            for (n, (_, reply)) in sizes.into_iter().zip(intents.drain(..)) {
                let _ = reply.send(Ok(ids.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, intents = all.len(), outcomes = outcomes.len(), patches = patches.len(), "could not commit a round of intents and outcomes");
            health.failed(format!("the store cannot commit: {e}"));
            for (_, reply) in intents.drain(..) {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Writes a batch of outcomes and patches. A failed write is retried:
/// losing an outcome would only make the state more conservative, but losing
/// a 429's restore or a park would cost requests.
async fn record(
    store: &dyn Store,
    health: &StoreHealth,
    outcomes: &mut Vec<Outcome>,
    patches: &mut Vec<OwnPatch>,
    rx: &mpsc::UnboundedReceiver<Write>,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.record_batch(outcomes, patches, &[]).await.map(|_| ()) {
            Ok(()) => {
                health.recovered();
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, outcomes = outcomes.len(), patches = patches.len(), "could not record outcomes; retrying");
                health.failed(format!("the store cannot commit: {e}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                // At shutdown the retries end within about 1.5 s, inside
                // the bounded drain: SIGTERM on a full disk took 16 s.
                if rx.is_closed() && delay >= SHUTDOWN_RETRY_LIMIT {
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
    patches.clear();
}

/// Writes the `budget.exhausted` event of an episode. Losing it costs
/// only a notification (the gauge and the log still show the episode), so
/// a failure is logged and dropped rather than retried.
async fn record_exhaustion(store: &dyn Store, x: &Exhaustion) {
    let window = x.window.to_std().unwrap_or_default();
    if let Err(e) = store
        .record_budget_exhausted(x.at, x.used, x.limit, window, x.waiting)
        .await
    {
        tracing::warn!(error = %e, "could not record the budget.exhausted event");
    }
}

/// Puts a product's new due time into the outcome queued just before it
/// for the same link, if that outcome writes the product's row anyway: the
/// scheduler sends a POST's outcome and then, deciding for the link again,
/// its due times, so the row of each product sent took two row versions
/// (and two entries in each of its indexes, the due and the last-request
/// ones) a POST. On PostgreSQL the separate due writes were a quarter of
/// the store's statement time at full throughput (issue 16). Only the last
/// outcome is looked at: the two messages come back to back.
fn fold_due(
    outcomes: &mut [Outcome],
    link: &LinkId,
    product: Product,
    due: Option<Timestamp>,
) -> bool {
    let Some(last) = outcomes.last_mut().filter(|o| o.link == *link) else {
        return false;
    };
    match last.patch.products.iter_mut().find(|(p, _)| *p == product) {
        Some((_, patch)) => {
            patch.next_due_at = Some(due);
            true
        }
        None => false,
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::store::ProductPatch;

    fn t(s: i64) -> Timestamp {
        DateTime::<Utc>::from_timestamp(s, 0).unwrap()
    }

    fn outcome(link: &str, products: &[Product]) -> Outcome {
        Outcome {
            attempt: 1,
            link: LinkId::parse(link).unwrap(),
            label: "accepted".into(),
            status: Some(202),
            detail: None,
            at: t(0),
            patch: LinkPatch {
                products: products
                    .iter()
                    .map(|p| (*p, ProductPatch::default()))
                    .collect(),
                ..LinkPatch::default()
            },
        }
    }

    #[test]
    fn a_due_time_rides_with_the_outcome_that_writes_its_row_anyway() {
        let mut queued = vec![outcome("mk_a", &[Product::Accounts, Product::Transactions])];
        let a = LinkId::parse("mk_a").unwrap();
        assert!(fold_due(
            &mut queued,
            &a,
            Product::Transactions,
            Some(t(60))
        ));
        assert!(fold_due(&mut queued, &a, Product::Accounts, None));
        let patches = &queued[0].patch.products;
        assert_eq!(
            patches[0].1.next_due_at,
            Some(None),
            "accounts: no due time"
        );
        assert_eq!(patches[1].1.next_due_at, Some(Some(t(60))));
    }

    #[test]
    fn a_due_time_of_another_product_or_link_is_left_to_the_due_flush() {
        let mut queued = vec![
            outcome("mk_b", &[Product::Accounts]),
            outcome("mk_a", &[Product::Accounts]),
        ];
        let (a, b) = (
            LinkId::parse("mk_a").unwrap(),
            LinkId::parse("mk_b").unwrap(),
        );
        assert!(
            !fold_due(&mut queued, &a, Product::Identity, Some(t(60))),
            "not in the patch"
        );
        assert!(
            !fold_due(&mut queued, &b, Product::Accounts, Some(t(60))),
            "not the last outcome"
        );
        assert!(
            !fold_due(&mut [], &a, Product::Accounts, Some(t(60))),
            "nothing queued"
        );
        assert!(
            queued
                .iter()
                .all(|o| o.patch.products.iter().all(|p| p.1.next_due_at.is_none()))
        );
    }
}
