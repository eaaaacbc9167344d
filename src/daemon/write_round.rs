//! One round of the [writer](super::writer): the outcomes, patches and
//! intents queued together, committed in one transaction on a task of its
//! own, so that on a store with more than one write connection the writer
//! gathers (and may start) the next round meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::domain::LinkId;
use crate::store::health::StoreHealth;
use crate::store::{AttemptId, Intent, Outcome, OwnPatch, PostCap, Store};

/// Where a round answers a batch of intents: one attempt id per intent
/// (`None`: claim refused) once they are committed.
pub type IntentsReply = oneshot::Sender<Result<Vec<Option<AttemptId>>, String>>;

/// At shutdown, failed writes are retried until the pause between tries
/// reaches this (50 ms doubling: about 1.5 s in all), then given up.
const SHUTDOWN_RETRY_LIMIT: Duration = Duration::from_secs(1);

/// What one round commits, owned: it moves to the task that commits it.
#[derive(Debug, Default)]
pub(super) struct Round {
    outcomes: Vec<Outcome>,
    patches: Vec<OwnPatch>,
    intents: Vec<(Vec<Intent>, IntentsReply)>,
    /// Every link the round writes, kept as writes join: two rounds that
    /// share none commute, so they may commit at once.
    links: HashSet<LinkId>,
}

impl Round {
    /// Adds the answer to a POST.
    pub(super) fn add_outcome(&mut self, outcome: Outcome) {
        self.links.insert(outcome.link.clone());
        self.outcomes.push(outcome);
    }

    /// Adds a change outside a POST.
    pub(super) fn add_patch(&mut self, patch: OwnPatch) {
        self.links.insert(patch.link.clone());
        self.patches.push(patch);
    }

    /// Adds a batch of intents, answered on `reply` once committed.
    pub(super) fn add_intents(&mut self, batch: Vec<Intent>, reply: IntentsReply) {
        self.links.extend(batch.iter().map(|i| i.link.clone()));
        self.intents.push((batch, reply));
    }

    /// The outcomes queued so far, in order (a due time may join one).
    pub(super) fn outcomes_mut(&mut self) -> &mut [Outcome] {
        &mut self.outcomes
    }

    /// Queued writes (an intents batch counts once, as the dispatcher sent it).
    pub(super) fn len(&self) -> usize {
        self.outcomes.len() + self.patches.len() + self.intents.len()
    }

    /// Rows the round writes: what a round's fixed cost is spread over.
    pub(super) fn rows(&self) -> usize {
        let intents: usize = self.intents.iter().map(|(b, _)| b.len()).sum();
        self.outcomes.len() + self.patches.len() + intents
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The links the round writes.
    pub(super) fn links(&self) -> &HashSet<LinkId> {
        &self.links
    }

    /// Hands over the round's link set, for the writer to keep while the
    /// round commits.
    pub(super) fn take_links(&mut self) -> HashSet<LinkId> {
        std::mem::take(&mut self.links)
    }

    /// Commits the round and answers its intents. With intents, one
    /// transaction under `cap`: on failure the intents are refused (their
    /// POSTs are not sent) and the outcomes and patches are written again
    /// on their own, retried until they land: losing an outcome would only
    /// make the state more conservative, but losing a 429's restore or a
    /// park would cost requests. Once `closing()` is true (the writer's
    /// queue has closed: shutdown), retries end within about 1.5 s, inside the
    /// bounded drain (SIGTERM on a full disk took 16 s).
    pub(super) async fn commit(
        mut self,
        store: Arc<dyn Store>,
        health: StoreHealth,
        cap: Option<PostCap>,
        closing: impl Fn() -> bool,
    ) {
        if !self.intents.is_empty() {
            self.commit_with_intents(&*store, &health, cap).await;
        }
        if !self.outcomes.is_empty() || !self.patches.is_empty() {
            self.record(&*store, &health, &closing).await;
        }
    }

    /// Commits everything in one transaction; on success the round is
    /// left empty, on failure only its outcomes and patches are left.
    async fn commit_with_intents(
        &mut self,
        store: &dyn Store,
        health: &StoreHealth,
        cap: Option<PostCap>,
    ) {
        let sizes: Vec<usize> = self.intents.iter().map(|(batch, _)| batch.len()).collect();
        let all: Vec<Intent> = self
            .intents
            .iter_mut()
            .flat_map(|(batch, _)| std::mem::take(batch))
            .collect();
        match store
            .record_batch_capped(&self.outcomes, &self.patches, &all, cap)
            .await
        {
            Ok(ids) => {
                health.recovered();
                self.outcomes.clear();
                self.patches.clear();
                let mut ids = ids.into_iter();
                for (n, (_, reply)) in sizes.into_iter().zip(self.intents.drain(..)) {
                    let _ = reply.send(Ok(ids.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, intents = all.len(), outcomes = self.outcomes.len(), patches = self.patches.len(), "could not commit a round of intents and outcomes");
                health.failed(format!("the store cannot commit: {e}"));
                for (_, reply) in self.intents.drain(..) {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Writes the outcomes and patches, retrying a failure.
    async fn record(
        &mut self,
        store: &dyn Store,
        health: &StoreHealth,
        closing: impl Fn() -> bool,
    ) {
        let mut delay = Duration::from_millis(50);
        loop {
            match store.record_batch(&self.outcomes, &self.patches, &[]).await {
                Ok(_) => {
                    health.recovered();
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, outcomes = self.outcomes.len(), patches = self.patches.len(), "could not record outcomes; retrying");
                    health.failed(format!("the store cannot commit: {e}"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if closing() && delay >= SHUTDOWN_RETRY_LIMIT {
                        tracing::error!(
                            batch = self.outcomes.len(),
                            "giving up on outcomes at shutdown; their intents count them as sent"
                        );
                        break;
                    }
                }
            }
        }
        self.outcomes.clear();
        self.patches.clear();
    }
}
