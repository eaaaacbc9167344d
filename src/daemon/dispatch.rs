//! The dispatcher: paces jobs through the global limits, commits the intents
//! of each batch in one transaction, then sends.
//!
//! Order matters for crash safety: permits first (so the recorded send time
//! is the real one, not a time before a long wait for the rate limiter), the
//! intent commit second, the request last.
//!
//! Intents are committed by the [`writer`](super::writer) in the same
//! transaction as the outcomes queued at that moment (group commit), and the
//! dispatcher waits for that commit before sending.
//!
//! On a shared store (PostgreSQL) the intent commit is a guarded claim (see
//! "Several replicas" in [`crate::store::ownership`]): each POST carries the link's request times the
//! scheduler decided from, and the store refuses it if another replica has
//! requested the link since or holds its lease. A refused POST is not sent;
//! it comes back as [`Done::NotSent`] with [`NotSentReason::ClaimedElsewhere`] and the
//! scheduler reloads the link.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limiter::Limiter;
use super::membership::Holdings;
use super::writer::Write;
use crate::clock::Clock;
use crate::domain::{LinkId, Product, ProductSet};
use crate::moneykit::{LinkOutcome, MoneyKit, RefreshOutcome};
use crate::store::ownership::Fence;
use crate::store::{AttemptId, Claim, Intent};

/// Most jobs whose intents share one transaction.
const MAX_BATCH: usize = 512;

/// Why a job came back as [`Done::NotSent`]: typed, so that the scheduler
/// tells a refused claim (reload the link, decide again) from the rest (try
/// again in a second) by a variant, not by comparing words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSentReason {
    /// The store refused the POST's claim: another replica requested the
    /// link since, or holds its lease.
    ClaimedElsewhere,
    /// Shutdown began before the job was sent.
    ShuttingDown,
    /// The intent could not be committed.
    Store(String),
    /// The link's partition is no longer held by this replica, or no
    /// longer for certain (its heartbeat is late): the holder sends for it.
    NotHeld,
}

impl std::fmt::Display for NotSentReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSentReason::ClaimedElsewhere => f.write_str("claimed by another replica"),
            NotSentReason::ShuttingDown => f.write_str("shutting down"),
            NotSentReason::Store(e) => write!(f, "store: {e}"),
            NotSentReason::NotHeld => f.write_str("partition not held"),
        }
    }
}

/// Why a link is read with `GET /links/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPurpose {
    /// No local history: learn what the server already did before any POST.
    Reconcile,
    /// Parked as needs_user_action: has the user reconnected it?
    Recheck,
}

/// Work for the dispatcher.
#[derive(Debug)]
pub enum Job {
    /// `POST /links/{id}/products`.
    Refresh {
        /// Link index in the table.
        idx: usize,
        /// Link id.
        link: LinkId,
        /// Products to request.
        products: ProductSet,
        /// Earliest due time among them (for the lateness metric).
        due_at: DateTime<Utc>,
        /// The in-memory `last_requested_at` of each product the decision
        /// was based on: the claim's guard.
        known: Vec<(Product, Option<DateTime<Utc>>)>,
    },
    /// `GET /links/{id}`.
    Read {
        /// Link index in the table.
        idx: usize,
        /// Link id.
        link: LinkId,
        /// Why.
        purpose: ReadPurpose,
    },
}

/// A finished job, back to the scheduler.
#[derive(Debug)]
pub enum Done {
    /// A POST was answered (or failed).
    Refresh {
        /// Link index.
        idx: usize,
        /// Products requested.
        products: ProductSet,
        /// Earliest due time among them.
        due_at: DateTime<Utc>,
        /// The history row of the intent.
        attempt: AttemptId,
        /// When the request left.
        sent_at: DateTime<Utc>,
        /// When the answer came.
        received_at: DateTime<Utc>,
        /// The answer (boxed: it carries the parsed link).
        outcome: Box<RefreshOutcome>,
    },
    /// A read was answered.
    Read {
        /// Link index.
        idx: usize,
        /// Why it was read.
        purpose: ReadPurpose,
        /// When the answer came.
        received_at: DateTime<Utc>,
        /// The answer.
        outcome: Box<LinkOutcome>,
    },
    /// The job was dropped before sending (intent not committed, shutdown).
    NotSent {
        /// Link index.
        idx: usize,
        /// Why.
        reason: NotSentReason,
    },
}

impl Job {
    fn idx(&self) -> usize {
        match self {
            Job::Refresh { idx, .. } | Job::Read { idx, .. } => *idx,
        }
    }
}

/// Shared handles the dispatcher needs.
pub struct Dispatcher {
    /// The writer, which commits intents (see [`Write::Intents`]).
    pub writes: mpsc::UnboundedSender<Write>,
    /// MoneyKit client.
    pub client: MoneyKit,
    /// Global request rate.
    pub limiter: Limiter,
    /// Global in-flight bound: requests on the wire (`max_in_flight`).
    pub in_flight: Arc<Semaphore>,
    /// Jobs taken from the queue whose intents are being committed or wait
    /// for a place on the wire: twice `max_in_flight`. Separate from
    /// `in_flight`, so that a request's wait for the group commit does not
    /// hold a place on the wire: with one semaphore for both, the durable
    /// POST rate was bound by `max_in_flight / (commit wait + round trip)`
    /// (throughput benchmark: 7,271/s with one, 8,393/s with this). A
    /// committed intent waits for the wire at most one `request_timeout`
    /// (when a place frees), which the window margin covers if the process
    /// dies after sending and before the answer is recorded.
    pub staging: Arc<Semaphore>,
    /// Time source.
    pub clock: Clock,
    /// Tracks send tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// This process's claim owner name (unique per process).
    pub replica: String,
    /// Whether intents are guarded claims: only where other replicas may
    /// share the store (PostgreSQL). A SQLite file has one daemon, held by
    /// its owner lock (see [`crate::store::owner`]).
    pub claims: bool,
    /// How long a claim's lease lasts (`[database] lease`).
    pub lease: TimeDelta,
    /// The partitions this replica holds (PostgreSQL): each intent is
    /// fenced by its partition's epoch, and a committed POST leaves only
    /// while the hold is still certain (see "Several replicas" in
    /// [`crate::store::ownership`]). `None` on SQLite.
    pub holdings: Option<watch::Receiver<Arc<Holdings>>>,
}

impl Dispatcher {
    /// Runs until `jobs` closes or `cancel` fires.
    pub async fn run(
        self: Arc<Self>,
        mut jobs: mpsc::Receiver<Job>,
        done: mpsc::UnboundedSender<Done>,
        cancel: CancellationToken,
    ) {
        let mut pending: Option<Job> = None;
        loop {
            let first = match pending.take() {
                Some(job) => job,
                None => tokio::select! {
                    () = cancel.cancelled() => break,
                    job = jobs.recv() => match job { Some(j) => j, None => break },
                },
            };
            let permit = tokio::select! {
                () = cancel.cancelled() => { let _ = done.send(Done::NotSent { idx: first.idx(), reason: NotSentReason::ShuttingDown }); break }
                p = self.staging.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            tokio::select! {
                () = cancel.cancelled() => { let _ = done.send(Done::NotSent { idx: first.idx(), reason: NotSentReason::ShuttingDown }); break }
                () = self.limiter.acquire() => {}
            }
            let mut batch = vec![(first, permit)];
            while batch.len() < MAX_BATCH {
                let Ok(job) = jobs.try_recv() else { break };
                match self.staging.clone().try_acquire_owned() {
                    Ok(p) if self.limiter.try_acquire() => batch.push((job, p)),
                    _ => {
                        pending = Some(job);
                        break;
                    }
                }
            }
            // Not awaited: while this batch's intents wait for the writer's
            // group commit, the next batch is gathered from the permits that
            // answers free, and the writer commits them together.
            let this = self.clone();
            let done = done.clone();
            self.tracker
                .spawn(async move { this.send_batch(batch, &done).await });
        }
        // Whatever is still queued was never sent.
        jobs.close();
        while let Some(job) = pending.take().or_else(|| jobs.try_recv().ok()) {
            let _ = done.send(Done::NotSent {
                idx: job.idx(),
                reason: NotSentReason::ShuttingDown,
            });
        }
    }

    /// Each job with the fence of its link's partition; a POST for a link
    /// whose partition is not held (for certain) is answered [`NotSentReason::NotHeld`]
    /// here, before any intent.
    fn fence(
        &self,
        batch: Vec<(Job, OwnedSemaphorePermit)>,
        done: &mpsc::UnboundedSender<Done>,
    ) -> Vec<(Job, OwnedSemaphorePermit, Option<Fence>)> {
        let Some(holdings) = &self.holdings else {
            return batch.into_iter().map(|(j, p)| (j, p, None)).collect();
        };
        let held = holdings.borrow().clone();
        let now = tokio::time::Instant::now();
        batch
            .into_iter()
            .filter_map(|(job, permit)| match &job {
                Job::Refresh { idx, link, .. } => match held.fence(link.as_str(), now) {
                    Some(fence) => Some((job, permit, Some(fence))),
                    None => {
                        let _ = done.send(Done::NotSent {
                            idx: *idx,
                            reason: NotSentReason::NotHeld,
                        });
                        None
                    }
                },
                Job::Read { .. } => Some((job, permit, None)),
            })
            .collect()
    }

    async fn send_batch(
        &self,
        batch: Vec<(Job, OwnedSemaphorePermit)>,
        done: &mpsc::UnboundedSender<Done>,
    ) {
        let batch = self.fence(batch, done);
        let now = self.clock.now();
        let intents: Vec<Intent> = batch
            .iter()
            .filter_map(|(job, _, fence)| match job {
                Job::Refresh {
                    link,
                    products,
                    known,
                    ..
                } => Some(Intent {
                    link: link.clone(),
                    products: *products,
                    at: now,
                    claim: self.claims.then(|| Claim {
                        known: known.clone(),
                        owner: self.replica.clone(),
                        lease_until: now + self.lease,
                        fence: *fence,
                    }),
                }),
                Job::Read { .. } => None,
            })
            .collect();
        let count = intents.len();
        let attempts = if intents.is_empty() {
            Ok(Vec::new())
        } else {
            commit_intents(&self.writes, intents).await
        };
        let mut attempts = match attempts {
            Ok(ids) => ids.into_iter(),
            Err(e) => {
                tracing::error!(error = %e, batch = count, "could not commit intents; not sending");
                for (job, _, _) in batch {
                    let _ = done.send(match job {
                        Job::Refresh { idx, .. } => Done::NotSent {
                            idx,
                            reason: NotSentReason::Store(e.clone()),
                        },
                        read @ Job::Read { .. } => {
                            self.spawn(read, None, None, done.clone(), None);
                            continue;
                        }
                    });
                }
                return;
            }
        };
        for (job, permit, fence) in batch {
            let attempt = match &job {
                Job::Refresh { idx, .. } => match attempts.next().flatten() {
                    Some(id) => Some(id),
                    None => {
                        metrics::counter!(crate::metrics::CLAIMS_REFUSED_TOTAL).increment(1);
                        let _ = done.send(Done::NotSent {
                            idx: *idx,
                            reason: NotSentReason::ClaimedElsewhere,
                        });
                        continue;
                    }
                },
                Job::Read { .. } => None,
            };
            self.spawn(job, attempt, fence, done.clone(), Some(permit));
        }
    }

    /// Sends one job on its own task; its place in staging (if any) is
    /// given up once it has a place on the wire. A fenced POST leaves only
    /// if its partition is still held for certain once it has that place
    /// (a pause or a late heartbeat in between: its intent already counts
    /// it as sent, so at worst one refresh is skipped, never doubled).
    fn spawn(
        &self,
        job: Job,
        attempt: Option<AttemptId>,
        fence: Option<Fence>,
        done: mpsc::UnboundedSender<Done>,
        staged: Option<OwnedSemaphorePermit>,
    ) {
        let client = self.client.clone();
        let clock = self.clock;
        let sem = self.in_flight.clone();
        let holdings = self.holdings.clone();
        // The place on the wire is taken inside the task and held for the
        // whole request; only then is the place in staging given up.
        self.tracker.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            drop(staged);
            if let (Some(fence), Some(holdings), Job::Refresh { idx, link, .. }) =
                (fence, &holdings, &job)
                && !holdings
                    .borrow()
                    .still_holds(fence, tokio::time::Instant::now())
            {
                tracing::warn!(link = %link, partition = fence.part, "not sending: this replica no longer holds the link's partition for certain");
                let _ = done.send(Done::NotSent {
                    idx: *idx,
                    reason: NotSentReason::NotHeld,
                });
                return;
            }
            metrics::gauge!(crate::metrics::IN_FLIGHT).increment(1.0);
            let message = match job {
                Job::Refresh {
                    idx,
                    link,
                    products,
                    due_at,
                    ..
                } => {
                    let sent_at = clock.now();
                    let outcome = client.refresh(&link, products).await;
                    Done::Refresh {
                        idx,
                        products,
                        due_at,
                        attempt: attempt.unwrap_or_default(),
                        sent_at,
                        received_at: clock.now(),
                        outcome: Box::new(outcome),
                    }
                }
                Job::Read { idx, link, purpose } => {
                    let outcome = client.get_link(&link).await;
                    Done::Read {
                        idx,
                        purpose,
                        received_at: clock.now(),
                        outcome: Box::new(outcome),
                    }
                }
            };
            metrics::gauge!(crate::metrics::IN_FLIGHT).decrement(1.0);
            let _ = done.send(message);
        });
    }
}

/// Hands intents to the writer and waits for their commit.
async fn commit_intents(
    writes: &mpsc::UnboundedSender<Write>,
    intents: Vec<Intent>,
) -> Result<Vec<Option<AttemptId>>, String> {
    let (reply, answer) = oneshot::channel();
    writes
        .send(Write::Intents(intents, reply))
        .map_err(|_| "the writer has stopped".to_owned())?;
    answer
        .await
        .map_err(|_| "the writer has stopped".to_owned())?
}
