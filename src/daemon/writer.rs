//! Group commit: answers and what reconciliations read, queued by the
//! scheduler, and intents handed over by the dispatcher are written
//! together, one transaction per round (see
//! [`Store::record_batch`]), so durability does not cap throughput. The
//! dispatcher waits for its intents' commit before sending; an outcome that
//! is still queued when the process dies is harmless, because its intent
//! already counts the request as sent.
//!
//! Where the store has more than one write connection (PostgreSQL, see
//! [`Store::write_rounds`]), rounds are pipelined: while one commits, the
//! next is gathered and may start on its own task, unless it writes a link
//! the committing one writes too; it then waits, so that each link's
//! writes land in the order they were queued. One replica was bound by
//! the latency of its serial rounds, not by the database's work (issue 16).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use super::budget::Exhaustion;
use super::write_round::Round;
use crate::config::BudgetConfig;
use crate::domain::{LinkId, Product};
use crate::store::health::StoreHealth;
use crate::store::{DueUpdate, Intent, LinkPatch, Outcome, OwnPatch, PostCap, Store, Timestamp};

pub use super::write_round::IntentsReply;

/// Largest batch per transaction.
const MAX_BATCH: usize = 1024;

/// Rows a round needs to start beside one still committing. A round's
/// cost is mostly fixed (about a dozen statement round trips and the
/// commit, whatever its size), so a second round of a few rows cost the
/// database nearly what a full one does: one replica, `scaleout` `pg1`,
/// against serial rounds: any size 1.12-1.17x the POST/s at 1.13-1.11x
/// the CPU per POST; from 64 rows 1.16-1.30x at 1.11-1.02x (issue 16).
const PIPELINE_MIN_ROWS: usize = 64;

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

/// Runs until every sender is dropped, then flushes what is queued.
/// Intents are committed under the `[budget]` in force (`budget`), as a
/// [`PostCap`]: the budget gate's last line of defence across replicas.
/// `queue` tells a round retrying its outcomes that shutdown has begun (a
/// weak handle on the writes' channel: it does not keep it open).
pub async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    queue: mpsc::WeakUnboundedSender<Write>,
    clock: crate::clock::Clock,
    health: StoreHealth,
    budget: watch::Receiver<Option<BudgetConfig>>,
) {
    let depth = store.write_rounds().max(1);
    let mut queued = Queued::default();
    let mut rounds = JoinSet::new();
    // The rounds in flight (one per task in `rounds`) and the links each
    // writes: the one count of busy slots.
    let mut committing: Vec<(Id, HashSet<LinkId>)> = Vec::new();
    let mut open = true;
    loop {
        // Due times may be any link's: written only while no round
        // commits (two multi-row updates can deadlock), and no round
        // starts until they are.
        let due_now = queued.due_now();
        if due_now && committing.is_empty() {
            queued.flush_dues(&*store).await;
            continue;
        }
        if !due_now && !queued.next.is_empty() {
            let busy = committing.iter().map(|(_, busy)| busy);
            if may_start(queued.next.links(), queued.next.rows(), busy, depth) {
                let cap = budget.borrow().as_ref().map(|b| PostCap {
                    since: clock.now() - b.budget.span(),
                    limit: b.budget.posts_per_day,
                });
                let mut round = std::mem::take(&mut queued.next);
                let links = round.take_links();
                let queue = queue.clone();
                let closing = move || queue.upgrade().is_none();
                let task = rounds.spawn(round.commit(store.clone(), health.clone(), cap, closing));
                committing.push((task.id(), links));
                continue;
            }
        }
        if !open && queued.next.is_empty() && committing.is_empty() {
            break;
        }
        let due_at = queued.due_deadline.filter(|_| !due_now);
        // While every slot commits, writes wait in the channel and are
        // taken in one go when one frees: waking for each as it came cost
        // SQLite's one-slot writer a tenth more CPU per POST.
        let receive = open && queued.next.len() < MAX_BATCH && committing.len() < depth;
        tokio::select! {
            Some(ended) = rounds.join_next_with_id() => {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "a round of writes ended abnormally; its intents are not sent");
                        e.id()
                    }
                };
                committing.retain(|(round, _)| *round != id);
            }
            write = rx.recv(), if receive => {
                let Some(write) = write else {
                    open = false;
                    continue;
                };
                let mut next = Some(write);
                while let Some(write) = next.take() {
                    if let Some(x) = queued.take(write, clock) {
                        record_exhaustion(&*store, &x).await;
                    }
                    if queued.next.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
            }
            () = sleep_until_some(due_at), if due_at.is_some() => {}
        }
    }
    if !queued.dues.is_empty() {
        queued.flush_dues(&*store).await;
    }
}

/// Whether a round writing `links` (`rows` rows) may start beside the
/// rounds still committing (the links each writes): always when none
/// commits; else only while fewer than `depth` commit, none of them writes
/// one of its links (so that two writes of one link never race: the later
/// one could commit first), and it has [`PIPELINE_MIN_ROWS`].
fn may_start<'a>(
    links: &HashSet<LinkId>,
    rows: usize,
    committing: impl ExactSizeIterator<Item = &'a HashSet<LinkId>>,
    depth: usize,
) -> bool {
    if committing.len() == 0 {
        return true;
    }
    rows >= PIPELINE_MIN_ROWS
        && committing.len() < depth
        && committing.into_iter().all(|busy| busy.is_disjoint(links))
}

/// Sleeps until `at` (never returns for `None`; its branch is disabled then).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the writer holds between rounds.
#[derive(Default)]
struct Queued {
    /// The next round, gathered while others commit.
    next: Round,
    /// Due times waiting for their flush, the latest per product.
    dues: HashMap<(LinkId, Product), Option<Timestamp>>,
    /// When they are flushed at the latest.
    due_deadline: Option<Instant>,
}

impl Queued {
    /// Queues a write; a budget exhaustion is handed back to be recorded
    /// at once.
    fn take(&mut self, write: Write, clock: crate::clock::Clock) -> Option<Exhaustion> {
        let next = &mut self.next;
        match write {
            Write::Outcome(o) => next.add_outcome(o),
            Write::Intents(batch, reply) => next.add_intents(batch, reply),
            Write::Due(updates) => {
                for (link, product, due) in updates {
                    if fold_due(next.outcomes_mut(), &link, product, due) {
                        self.dues.remove(&(link, product));
                        continue;
                    }
                    self.dues.insert((link, product), due);
                }
                if !self.dues.is_empty() {
                    self.due_deadline
                        .get_or_insert_with(|| Instant::now() + DUE_FLUSH_EVERY);
                }
            }
            Write::BudgetExhausted(x) => return Some(x),
            Write::Patch(link, patch) => next.add_patch(OwnPatch {
                link,
                patch,
                at: clock.now(),
            }),
        }
        None
    }

    /// Whether the due times are to be written now.
    fn due_now(&self) -> bool {
        self.due_deadline.is_some_and(|d| d <= Instant::now()) || self.dues.len() >= DUE_FLUSH_ROWS
    }

    /// Writes the coalesced due times; a failure only makes the fleet page
    /// stale, so it is logged and dropped rather than retried.
    async fn flush_dues(&mut self, store: &dyn Store) {
        self.due_deadline = None;
        let updates: Vec<DueUpdate> = self.dues.drain().map(|((l, p), d)| (l, p, d)).collect();
        if let Err(e) = store.set_next_due(&updates).await {
            tracing::warn!(error = %e, updates = updates.len(), "could not record due times");
        }
    }
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

    fn links(ids: &[&str]) -> HashSet<LinkId> {
        ids.iter().map(|id| LinkId::parse(id).unwrap()).collect()
    }

    #[test]
    fn a_round_starts_beside_others_only_on_links_none_of_them_writes() {
        let next = links(&["mk_a", "mk_b"]);
        let other = links(&["mk_c"]);
        let same = links(&["mk_c", "mk_b"]);
        let full = PIPELINE_MIN_ROWS;
        assert!(may_start(&next, 1, [].iter(), 1), "nothing commits");
        assert!(
            may_start(&next, full, [&other].into_iter(), 2),
            "other links"
        );
        assert!(
            !may_start(&next, full, [&same].into_iter(), 2),
            "mk_b is written"
        );
        assert!(
            !may_start(&next, full - 1, [&other].into_iter(), 2),
            "too few rows to be worth a second round"
        );
        assert!(
            !may_start(&next, full, [&other].into_iter(), 1),
            "one writer: never two rounds at once"
        );
        assert!(
            !may_start(&next, full, [&other, &other].into_iter(), 2),
            "full"
        );
    }

    #[test]
    fn a_round_names_every_link_it_writes() {
        let mut round = Round::default();
        round.add_outcome(outcome("mk_a", &[Product::Accounts]));
        round.add_patch(OwnPatch {
            link: LinkId::parse("mk_b").unwrap(),
            patch: LinkPatch::default(),
            at: t(0),
        });
        let intent = |id: &str| Intent {
            link: LinkId::parse(id).unwrap(),
            products: crate::domain::ProductSet::of(Product::Accounts),
            at: t(0),
            claim: None,
        };
        let (reply, _answer) = tokio::sync::oneshot::channel();
        round.add_intents(vec![intent("mk_c"), intent("mk_a")], reply);
        assert_eq!(round.len(), 3, "an intents batch counts once");
        assert_eq!(round.rows(), 4, "each intent is a row");
        assert_eq!(round.links(), &links(&["mk_a", "mk_b", "mk_c"]));
        assert_eq!(round.take_links(), links(&["mk_a", "mk_b", "mk_c"]));
        assert!(round.links().is_empty());
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
