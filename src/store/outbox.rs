//! The outbox of outbound events (issue 18), as the store keeps it: rows
//! written by the same transactions as the state changes that cause them
//! (see [`crate::events`]), claimed and settled by the delivery task, and
//! listed and replayed by `linkfresh events`.

use std::time::Duration;

use async_trait::async_trait;

use super::{StoreError, Timestamp};
use crate::domain::Product;

/// The `link_id` of events that concern the fleet rather than one link
/// (`budget.exhausted`): the column is `NOT NULL` and deliveries are
/// ordered per `link_id`, and `#` is a character no link id may hold
/// ([`LinkId::parse`](crate::domain::LinkId::parse)), so these events never
/// queue with a link's.
pub const FLEET_LINK_ID: &str = "#fleet";

/// One event row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Order of writing; deliveries of one link follow it.
    pub seq: i64,
    /// The stable id sent as `webhook-id` on every try.
    pub id: String,
    /// The link concerned.
    pub link: String,
    /// The event type's wire name (`link.needs_user_action`, ...).
    pub kind: String,
    /// When the change happened.
    pub created_at: Timestamp,
    /// When its `retry_for` started: its creation, or its last replay.
    pub retry_since: Timestamp,
    /// The JSON body sent, exactly as signed.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: u32,
    /// The last failure, for operators.
    pub last_error: Option<String>,
}

/// The configured endpoint as stored: shared by every replica, so that a
/// 410 Gone seen by one stops them all, across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointState {
    /// `[events] url`.
    pub url: String,
    /// Set when the receiver answered 410 Gone: nothing is sent until the
    /// url changes or an operator runs `linkfresh events --enable`.
    pub disabled: Option<String>,
}

/// How an attempt to deliver a claimed event ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// The receiver answered 2xx.
    Delivered,
    /// Try again at this time.
    Retry(Timestamp, String),
    /// Given up (past `retry_for`): kept as `failed`, visible and replayable.
    Failed(String),
    /// Not tried (shutdown, endpoint disabled): the lease is given back.
    Release,
}

/// The outbox operations of a [`Store`](super::Store).
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Records the configured endpoint (`None`: `[events]` is not
    /// configured; no event rows are written then). A changed url clears
    /// a 410's disable. Returns the stored state.
    async fn set_event_endpoint(
        &self,
        url: Option<&str>,
    ) -> Result<Option<EndpointState>, StoreError>;

    /// The stored endpoint, if events are configured.
    async fn event_endpoint(&self) -> Result<Option<EndpointState>, StoreError>;

    /// Disables (`Some(reason)`) or re-enables (`None`) the endpoint.
    async fn disable_event_endpoint(&self, reason: Option<&str>) -> Result<bool, StoreError>;

    /// Claims up to `limit` deliverable events for `owner` until
    /// `now + lease`: each the oldest pending event of its link, due, and
    /// not leased by another replica.
    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Settles claimed events in one transaction (one commit per round,
    /// not per event); returns how many `owner` still held.
    async fn settle_events(
        &self,
        owner: &str,
        settled: &[(i64, Settle)],
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Settles one claimed event; false if `owner` no longer holds it.
    async fn settle_event(
        &self,
        seq: i64,
        owner: &str,
        how: &Settle,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let one = [(seq, how.clone())];
        Ok(self.settle_events(owner, &one, now).await? == 1)
    }

    /// Pending (or failed) events, oldest first.
    async fn list_events(&self, failed: bool, limit: u32) -> Result<Vec<EventRecord>, StoreError>;

    /// Puts a failed event back in the queue; false if no failed event has
    /// that id.
    async fn replay_event(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// The number of pending events and the oldest one's creation time.
    async fn pending_events(&self) -> Result<(u64, Option<Timestamp>), StoreError>;

    /// Opens and closes `data.stale` episodes: per product of
    /// `stale_after`, a product whose last refresh is older gets one
    /// `data.stale` event and an episode row in one transaction; a product
    /// with an episode that was refreshed since gets `data.fresh`. Returns
    /// the number of events written.
    async fn sweep_stale(
        &self,
        stale_after: &[(Product, Duration)],
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Writes the `budget.exhausted` event of the exhaustion episode this
    /// replica's budget gate saw start at `at` (`used` of `limit` POSTs in
    /// the rolling `window`, `waiting` links deferred). Nothing is written
    /// when `[events]` is not configured. Returns whether a row was
    /// written.
    ///
    /// Several replicas sharing a store each run a gate over the same
    /// count, so each may announce the same episode. The event's id is
    /// therefore not random but derived from the episode: the budget
    /// bucket (`window / 1440`, a minute of a day; at least 5 s) in which
    /// `at` falls, and the row is inserted with `ON CONFLICT DO NOTHING`,
    /// so the fleet writes one event per episode and a second call for the
    /// same episode writes nothing. Replicas see the cap fill within about
    /// a second of each other (they re-read the count each second); one
    /// that sees it just after a bucket boundary would make a new id, so
    /// the insert also writes nothing when a `budget.exhausted` was written
    /// less than a bucket before `at`. Only two replicas committing at the
    /// same moment on both sides of a boundary both write. The cost: a new
    /// episode less than a bucket after the last one's start is not
    /// reported (the warning still is). Both were judged better than a
    /// table of episodes.
    ///
    /// The event concerns no link: its `link_id` column holds
    /// [`FLEET_LINK_ID`], which no MoneyKit link id can be, so these
    /// events form their own ordered queue and never wait behind (or
    /// hold up) a link's events; the body has no `link_id`.
    async fn record_budget_exhausted(
        &self,
        at: Timestamp,
        used: u64,
        limit: u64,
        window: Duration,
        waiting: u64,
    ) -> Result<bool, StoreError>;

    /// Deletes delivered events finished before `older_than`.
    async fn prune_events(&self, older_than: Timestamp) -> Result<u64, StoreError>;
}
