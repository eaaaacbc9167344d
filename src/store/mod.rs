//! The durable store: links, their per-product schedules, the history of
//! requests (attempts) and the operator's controls, behind one [`Store`] trait
//! with a SQLite backend (the default, one replica) and a PostgreSQL backend
//! (several replicas). [`connect`] picks the backend from the URL scheme and
//! runs that backend's embedded migrations.
//!
//! Times are `DateTime<Utc>` in Rust and BIGINT unix milliseconds in both
//! databases, so window arithmetic is plain integer arithmetic in SQL.
//!
//! # Why a crash never causes a refresh too early
//!
//! MoneyKit must never see a product of a link refreshed inside its window, and
//! the daemon may die at any instruction. The store makes that safe with a
//! write-ahead *intent*:
//!
//! 1. Before a POST leaves the process, [`Store::record_batch`] commits, in one
//!    transaction, an attempt row per POST and moves every included product's
//!    `last_requested_at` to the send time (keeping the previous values in the
//!    attempt row).
//! 2. Only after that commit returns is the request sent.
//! 3. A later [`Store::record_batch`] fills in the answer. A 429 (the server
//!    did *not* count the request) puts the saved previous times back.
//!
//! A crash between 1 and 3 leaves an intent without an outcome; on restart the
//! product already looks requested at the send time, which is the
//! conservative reading: at worst one refresh is skipped, never doubled. A
//! crash before 1 commits loses nothing because nothing was sent.
//!
//! On SQLite this holds with `synchronous=NORMAL` in WAL mode. A commit
//! appends to the WAL with a `write()` before it returns, so it survives a
//! *process* crash (kill -9, panic, OOM) at once; only the fsync is deferred
//! to checkpoints. A power loss or kernel panic may roll back the last few
//! commits, but never corrupts the database (WAL frames are checksummed), and
//! the requests those intents covered were most likely never answered: the
//! machine that lost power also lost their connections. The exposure is a
//! handful of requests once per power loss, against one fsync per commit on
//! every batch with `synchronous=FULL`; intents are group-committed
//! (one transaction per batch) so that either choice stays cheap.
//!
//! On PostgreSQL two rounds may commit at once
//! ([`Store::write_rounds`]); the writer never lets two rounds that write one
//! link overlap, so each link's intent, outcome and next intent still land in
//! that order.
//!
//! # Several replicas
//!
//! See [`ownership`]: partitions under leases with fencing epochs, the
//! claim guard kept as the last line of defence, and the failure analysis
//! (pause, clock skew, split brain, database failover).
//!
//! # Where the code is
//!
//! This module holds the types and the [`Store`] trait; [`fleet`] the fleet
//! page's queries; `sql` the SQL both backends share, as plain generic code
//! over a small `Dialect` trait (what differs: parameter style, row locks,
//! the `intent_seq` stamp, bulk writes, verify/optimize), split by concern
//! (links, intents and claims, outcomes, operator controls, fleet queries);
//! [`sqlite`] and [`postgres`] each open their database and implement the
//! dialect; `records` encodes values and rows alike for both.

mod attempts;
pub mod fleet;
pub(crate) mod health;
pub mod outbox;
pub(crate) mod owner;
pub mod ownership;
mod pg_ownership;
mod records;
mod sql;

pub(crate) mod postgres;
mod postgres_bulk;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{LinkId, LinkState, Product, ProductSet};

pub use attempts::{
    AttemptRecord, Claim, Intent, LinkPatch, Outcome, OwnPatch, PostCap, ProductPatch,
};
pub use fleet::FleetQueries;
pub use outbox::Outbox;
pub use records::LinkSource;

/// A moment as the store keeps it (UTC, millisecond precision).
pub type Timestamp = DateTime<Utc>;

/// The id of one request's history row; ties an outcome to its intent.
pub type AttemptId = i64;

/// Everything that can go wrong talking to the store; rate limits and parked
/// links are data, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement, or could not be reached.
    /// The message carries SQLite's or PostgreSQL's own text ("database or
    /// disk is full"): "database error" alone left operators guessing.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded schema migrations could not be applied.
    #[error("applying the database migrations failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a backend linkfresh does not have.
    #[error("unsupported database url scheme {0:?}; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedScheme(String),
    /// A stored value could not be read back (edited by hand, or a newer schema).
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// `[database] partitions` differs from the count the database was
    /// split into by the first replica: a replica hashing links into
    /// another count would schedule links others own.
    #[error(
        "[database] partitions = {configured}, but this database is split into {stored} partitions (fixed by the first replica); set [database] partitions = {stored}"
    )]
    PartitionsMismatch {
        /// The replica's setting.
        configured: u32,
        /// The database's.
        stored: u32,
    },
}

/// What the caller wants a link to be: config, admin API or discovery say this.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// The MoneyKit link.
    pub id: LinkId,
    /// Products to keep fresh.
    pub products: ProductSet,
    /// The caller's cadence settings as opaque JSON; compared, never parsed.
    pub cadence: Option<String>,
    /// Who manages the link, so config sync never removes an API-managed one.
    pub source: LinkSource,
}

/// A link as stored, with its per-product schedules: what the daemon loads
/// at start and what status pages show.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    /// The MoneyKit link.
    pub id: LinkId,
    /// Products currently wanted.
    pub products: ProductSet,
    /// Opaque cadence JSON from the spec.
    pub cadence: Option<String>,
    /// Who manages the link.
    pub source: LinkSource,
    /// Lifecycle state (active, paused, parked).
    pub state: LinkState,
    /// Why the link is parked or paused, for operators.
    pub reason: Option<String>,
    /// No longer configured: not scheduled, history kept.
    pub removed: bool,
    /// When linkfresh first saw the link.
    pub created_at: Timestamp,
    /// Last change to the link row.
    pub updated_at: Timestamp,
    /// Link-wide backoff (429, 5xx) until this time.
    pub backoff_until: Option<Timestamp>,
    /// Consecutive link-wide failures, for exponential backoff.
    pub failures: u32,
    /// Global change sequence of the last operator change, for `changes_since`.
    pub change_seq: i64,
    /// MoneyKit's `link_tags`, as reconciliation and discovery last saw
    /// them; they select the link's profile (see [`crate::policy::profile`]).
    pub tags: Vec<String>,
    /// The owning app's last "this user is active" call
    /// ([`Store::record_activity`]).
    pub last_activity_at: Option<Timestamp>,
    /// One entry per product in `products`, in wire order.
    pub schedules: Vec<ProductRecord>,
}

/// The stored schedule of one product of one link: the facts the policy
/// needs to decide when it may be requested again.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    /// Which product.
    pub product: Product,
    /// Send time of the last request that counted (see crate docs).
    pub last_requested_at: Option<Timestamp>,
    /// Latest `refreshed_at` MoneyKit reported; never moves backwards.
    pub server_refreshed_at: Option<Timestamp>,
    /// Latest `last_attempted_at` MoneyKit reported; never moves backwards.
    pub server_attempted_at: Option<Timestamp>,
    /// When the daemon last computed it to be due, for status pages.
    pub next_due_at: Option<Timestamp>,
    /// Consecutive failures of this product.
    pub failures: u32,
    /// Product-level backoff until this time.
    pub backoff_until: Option<Timestamp>,
    /// Set when MoneyKit forbade this product (403); it is skipped.
    pub parked_reason: Option<String>,
    /// An operator asked for a refresh as soon as the window allows.
    pub refresh_requested: bool,
}

/// What [`Store::record_activity`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Stored: the daemon will apply the active cadence.
    Recorded,
    /// An activity within the coarse interval is already stored: nothing
    /// written (the call is idempotent).
    Recent,
    /// No such link (or removed).
    UnknownLink,
}

/// What `sync_config` did, for the start-up log line and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Links newly scheduled: never seen, or back after being removed.
    pub added: u64,
    /// Config-managed links no longer in the config (history kept).
    pub removed: u64,
    /// Links whose products, cadence or source changed.
    pub changed: u64,
    /// Links already stored exactly so.
    pub unchanged: u64,
    /// The revision was already synced; nothing was read or written.
    pub skipped_same_revision: bool,
    /// Nothing was written because the store holds the link set of a
    /// newer config (its revision number, see
    /// [`sync_config_numbered`](Store::sync_config_numbered)).
    pub behind: Option<i64>,
}

/// One product's new due time, as computed by the policy.
pub type DueUpdate = (LinkId, Product, Option<Timestamp>);

/// The persistence boundary of linkfresh; one implementation per database so
/// the daemon, CLI and server never care which one runs.
#[async_trait]
pub trait Store: FleetQueries + Outbox + Send + Sync + 'static {
    /// Makes the stored links match the configuration (idempotent; skipped when
    /// `revision` was already synced). Only `Config`-managed links are removed.
    /// A config without a revision number: [`sync_config_numbered`](Store::sync_config_numbered) with 0.
    async fn sync_config(
        &self,
        revision: &str,
        links: &[LinkSpec],
        now: Timestamp,
    ) -> Result<SyncReport, StoreError> {
        self.sync_config_numbered(0, revision, links, now).await
    }

    /// [`sync_config`](Store::sync_config) of a config whose top-level
    /// `revision` key is `number`: refused (nothing written,
    /// [`SyncReport::behind`] set) when the store holds the link set of a
    /// higher number, so that during a rolling update a replica still on
    /// the old config never overwrites what the new one synced. Equal
    /// numbers (a config that never sets one: 0) sync as before.
    async fn sync_config_numbered(
        &self,
        number: i64,
        revision: &str,
        links: &[LinkSpec],
        now: Timestamp,
    ) -> Result<SyncReport, StoreError>;

    /// Adds or changes one link (admin API, discovery); bumps the change sequence.
    async fn upsert_link(&self, spec: &LinkSpec, now: Timestamp) -> Result<(), StoreError>;

    /// Marks a link removed (history kept); false if unknown or already removed.
    async fn remove_link(&self, id: &LinkId, now: Timestamp) -> Result<bool, StoreError>;

    /// Every non-removed link with its schedules, for the daemon's reload.
    async fn load_links(&self) -> Result<Vec<LinkRecord>, StoreError>;

    /// One page of [`load_links`](Store::load_links): the non-removed links
    /// whose id sorts after `after` (`""` for the first page), in id order,
    /// and the last id of the page; `None` past the end. The daemon streams
    /// these into its table at start, so a million links never sit in memory
    /// twice and the first POST leaves after the first page, not the last.
    async fn load_links_page(
        &self,
        after: &str,
    ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError>;

    /// The change sequence's current value (see
    /// [`changes_since`](Store::changes_since)): read before a paged load,
    /// so that changes committed while it runs are polled afterwards.
    async fn change_mark(&self) -> Result<i64, StoreError>;

    /// One link, removed or not, for `explain` and the admin API.
    async fn load_link(&self, id: &LinkId) -> Result<Option<LinkRecord>, StoreError>;

    /// Commits the intents of POSTs about to be sent, in one transaction; one
    /// entry per intent, `None` where its [`Claim`] was refused (another
    /// replica requested the link since, holds its lease, or is writing its
    /// row right now): that POST must not be sent. A convenience for tools
    /// and tests: [`record_batch`](Store::record_batch) with intents only.
    async fn record_intents(
        &self,
        intents: &[Intent],
    ) -> Result<Vec<Option<AttemptId>>, StoreError> {
        self.record_batch(&[], &[], intents).await
    }

    /// Records answers and applies their patches, in one transaction; releases
    /// the lease each claimed attempt took. A convenience for tools and
    /// tests: [`record_batch`](Store::record_batch) with outcomes only.
    async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        self.record_batch(outcomes, &[], &[]).await.map(|_| ())
    }

    /// [`record_outcomes`](Store::record_outcomes) then
    /// [`record_intents`](Store::record_intents), in one transaction: the
    /// daemon's group commit. One commit instead of two per round halves the
    /// pages written (a link's schedule row is often touched by both) and
    /// the fixed cost of a transaction, which bound the durable POST rate.
    /// Outcomes go first, then the daemon's own patches (a link's
    /// reconciliation before its first intent): a link's new intent always
    /// follows what was learned before it. A patch of an unknown link is
    /// skipped.
    async fn record_batch(
        &self,
        outcomes: &[Outcome],
        patches: &[OwnPatch],
        intents: &[Intent],
    ) -> Result<Vec<Option<AttemptId>>, StoreError> {
        self.record_batch_capped(outcomes, patches, intents, None)
            .await
    }

    /// [`record_batch`](Store::record_batch) under a fleet-wide [`PostCap`]
    /// (`[budget]`): an intent past the cap is refused like a refused claim
    /// (`None`), and is not claimed.
    async fn record_batch_capped(
        &self,
        outcomes: &[Outcome],
        patches: &[OwnPatch],
        intents: &[Intent],
        cap: Option<PostCap>,
    ) -> Result<Vec<Option<AttemptId>>, StoreError>;

    /// Links whose requests other replicas claimed or finished after `seq`,
    /// and the new high-water mark to pass next time: polled every second by
    /// replicas sharing a database so that each learns of the others' sends
    /// without a refused claim per link and window. Best effort (see the
    /// module docs): a missed row only costs one refused claim. Pass
    /// `i64::MAX` to learn the current mark without reading any link.
    async fn claims_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError>;

    /// Applies a patch outside a request (webhooks, reconciliation); bumps the
    /// change sequence so the daemon notices. False if the link is unknown.
    async fn apply_patch(
        &self,
        link: &LinkId,
        patch: &LinkPatch,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Operator pause/resume; resume also un-parks a parked link and its
    /// products. False if the link is unknown.
    async fn set_paused(
        &self,
        id: &LinkId,
        paused: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Operator asks for a refresh as soon as the windows allow; an empty set
    /// means every product of the link. False if the link is unknown.
    async fn request_refresh(
        &self,
        id: &LinkId,
        products: ProductSet,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The owning app says the link's user is active now: stores `now` as
    /// the link's last activity (durably; the daemon learns of it through
    /// [`changes_since`](Store::changes_since)), unless the stored one is
    /// within `coarse` of it, so that a busy app calling many times a second
    /// costs one read per call and one write per `coarse`.
    async fn record_activity(
        &self,
        id: &LinkId,
        now: Timestamp,
        coarse: chrono::TimeDelta,
    ) -> Result<Activity, StoreError>;

    /// Stores MoneyKit's `link_tags` of a link (they select its profile);
    /// bumps the change sequence when they differ from the stored ones (the
    /// same tags again write nothing). False if the link is unknown.
    async fn set_tags(&self, id: &LinkId, tags: &[String]) -> Result<bool, StoreError>;

    /// Links changed by operators/API after `seq`, and the new high-water mark
    /// to pass next time; polled by the daemon about once a second.
    async fn changes_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError>;

    /// A link's most recent attempts, newest first.
    async fn attempts(&self, id: &LinkId, limit: u32) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Deletes attempts whose intent is older than `older_than`; bounded retention.
    async fn prune_attempts(&self, older_than: Timestamp) -> Result<u64, StoreError>;

    /// The POSTs whose intents were committed after `since`, counted per
    /// `bucket` of time and stamped with the bucket's latest intent, oldest
    /// first: what the budget counts (every replica's, across restarts).
    /// Stamped late, never early, so a bucket leaves a rolling window no
    /// sooner than its last POST does. `except_replica` leaves out the
    /// intents that replica claimed: a replica counts its own in memory,
    /// exactly, and the others' from here.
    async fn posts_since(
        &self,
        since: Timestamp,
        bucket: chrono::TimeDelta,
        except_replica: Option<&str>,
    ) -> Result<Vec<(Timestamp, u32)>, StoreError>;

    /// Writes the policy's computed due times, batched, for status/fleet queries.
    async fn set_next_due(&self, updates: &[DueUpdate]) -> Result<(), StoreError>;

    /// Remembers a webhook's idempotency key until `expires_at`, so a retried
    /// or replayed delivery is acknowledged without being applied twice; true
    /// the first time (or once an earlier entry expired). Prunes a bounded
    /// batch of expired keys as it goes.
    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Forgets a remembered idempotency key, so a delivery whose effects could
    /// not be written is applied when MoneyKit retries it.
    async fn forget_delivery(&self, key: &str) -> Result<(), StoreError>;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads the whole store once at start and fails when it is damaged
    /// (SQLite: `PRAGMA quick_check`), so that `run` stops with advice
    /// instead of scheduling from a file it cannot read (issue 14).
    async fn verify_readable(&self) -> Result<(), StoreError>;

    /// Backend and location for logs and `status`, never with a password.
    fn describe(&self) -> String;

    /// Partitioned ownership among replicas: PostgreSQL only; SQLite's one
    /// daemon owns every link.
    fn ownership(&self) -> Option<&dyn ownership::Ownership> {
        None
    }

    /// How many rounds of [`record_batch`](Store::record_batch) the
    /// daemon's writer may commit at once, each on its own connection and
    /// never two that touch one link (so each link's writes still land in
    /// the order they were queued): 1 where the backend has one writer.
    fn write_rounds(&self) -> usize {
        1
    }
}

/// Opens the store named by `url` (`sqlite://...` or `postgres://...`),
/// creating a SQLite file if missing, and applies the embedded migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PgStore::connect(url).await?)),
        other => Err(StoreError::UnsupportedScheme(other.to_owned())),
    }
}
