//! What differs between SQLite and PostgreSQL, as one trait implemented by
//! sqlx's own database types (`sqlx::Sqlite` in `store/sqlite.rs`,
//! `sqlx::Postgres` in `store/postgres.rs`).
//!
//! The shared SQL is generic over `DB: Dialect` (see [`super::SqlStore`]).
//! sqlx proves "this value can be bound, that column read" per type and per
//! database, and Rust does not carry such facts from a trait to its users,
//! so every generic block names them once in a `where` clause (the same
//! lines everywhere, see [`super`]) rather than per function.

use async_trait::async_trait;
use sqlx::{Database, Decode, Encode, Pool, Type};

use crate::domain::Product;
use crate::store::ownership::Ownership;
use crate::store::{DueUpdate, LinkSpec, Outcome, ProductPatch, StoreError, Timestamp};

/// An attempt row as the intent path inserts it: link, products bitmask,
/// intent time, previous request times (encoded), claiming replica.
pub(crate) type AttemptRow<'a> = (&'a str, i32, i64, String, Option<&'a str>);

/// A schedule row an outcome patches: link, the patch, product.
pub(crate) type ScheduleRow<'a> = (&'a str, &'a ProductPatch, Product);

/// The handful of things the two backends do differently; everything else
/// is the shared SQL of [`super`].
#[async_trait]
pub(crate) trait Dialect: Database<QueryResult: RowsAffected> {
    /// The statement that opens a write transaction. SQLite takes the write
    /// lock up front (`BEGIN IMMEDIATE`), so concurrent writers wait on
    /// `busy_timeout` instead of failing when a read turns into a write.
    const BEGIN: &'static str;

    /// Whether multi-row statements number their parameters (`$1, $2`,
    /// PostgreSQL) or keep anonymous `?`s, which SQLite binds in O(1) (see
    /// [`multi_row`](super::rows::multi_row)).
    const NUMBERED: bool;

    /// One page of links with their schedules as a JSON document (see
    /// [`parse_page`](crate::store::records::parse_page)): `$1` the last id
    /// of the previous page, `$2` the page size; returns the document and
    /// the page's last id.
    const JSON_PAGE: &'static str;

    /// Appended to a claim's reads of the link and its schedule rows:
    /// PostgreSQL's ` FOR UPDATE SKIP LOCKED` (a claim never waits on a row
    /// lock); empty on SQLite, whose `BEGIN IMMEDIATE` already excludes
    /// other writers.
    const LOCK: &'static str;

    /// Appended to the outbox's read of a link's state before a change:
    /// PostgreSQL's ` FOR UPDATE` (a concurrent change of the same link
    /// waits, then sees the new state, so one transition makes one event);
    /// empty on SQLite, whose single writer already serializes them.
    const ROW_LOCK: &'static str;

    /// The database's clock now (not at the transaction's start), in unix
    /// milliseconds: partition leases are judged by it (see
    /// [`claims::fence_allows`](super::claims::fence_allows)).
    const CLOCK_MS: &'static str;

    /// Appended to the read of the partitions that fence a batch of
    /// claims: PostgreSQL's ` FOR SHARE`, so that an acquisition by another
    /// replica waits for this commit; empty on SQLite.
    const SHARE: &'static str;

    /// The SQL expression of the next `links.intent_seq`.
    const NEXT_SEQ: &'static str;

    /// Serializes the count of a capped batch (see [`crate::store::PostCap`])
    /// with every other process's until commit: PostgreSQL's transaction
    /// advisory lock; `None` on SQLite, whose write transactions already
    /// exclude each other (`BEGIN IMMEDIATE`).
    const CAP_LOCK: Option<&'static str>;

    /// How far below its high-water mark `claims_since` re-reads: stamps
    /// that may commit out of order (PostgreSQL's sequence).
    const OVERLAP: i64;

    /// How many rounds of the write path may commit at once (see
    /// [`crate::store::Store::write_rounds`]).
    const WRITE_ROUNDS: usize;

    /// The `BEGIN` of each round of the write path (`record_batch`), with
    /// the session settings that round wants and other writes do not.
    const ROUND_BEGIN: &'static str;

    /// Upserts links and their schedule rows in this backend's cheapest bulk
    /// form, with the shared texts of [`super::statements`] (upsert tails).
    async fn write_links(
        conn: &mut Self::Connection,
        specs: &[&LinkSpec],
        now: Timestamp,
        change_seq: i64,
    ) -> Result<(), StoreError>;

    /// Writes the policy's due times in this backend's cheapest bulk form.
    async fn write_due(
        conn: &mut Self::Connection,
        updates: &[DueUpdate],
    ) -> Result<(), StoreError>;

    /// Serializes `sync_config` across processes where that matters: the
    /// returned transaction holds the lock until committed or dropped.
    async fn lock_sync(
        pool: &Pool<Self>,
    ) -> Result<Option<sqlx::Transaction<'static, Self>>, StoreError>;

    /// After a large sync: refresh the planner's statistics.
    async fn after_bulk_write(pool: &Pool<Self>) -> Result<(), StoreError>;

    /// Reads the store once at start and fails when it is damaged.
    async fn verify_readable(pool: &Pool<Self>) -> Result<(), StoreError>;

    /// Partitioned ownership, where the backend has it (PostgreSQL).
    fn ownership(store: &super::SqlStore<Self>) -> Option<&dyn Ownership>;

    // The write path's bulk statements (one per batch, with a fixed text)
    // where the backend has a cheaper form than the shared multi-row
    // `VALUES` chunks; `None`: it has not, and the shared form runs.
    // PostgreSQL binds column arrays (`UNNEST`): one statement and one
    // cached plan per batch, where `VALUES` lists of every length were
    // planned anew, chunk by chunk.

    /// `SELECT ... WHERE {head} IN ids {tail}` in one statement.
    async fn select_any(
        _conn: &mut Self::Connection,
        _head: &str,
        _tail: &str,
        _ids: &[&str],
    ) -> Result<Option<Vec<Self::Row>>, StoreError> {
        Ok(None)
    }

    /// Finishes the attempts of a run of outcomes; `(id, replica)` of each found.
    async fn finish_attempts(
        _conn: &mut Self::Connection,
        _run: &[Outcome],
    ) -> Result<Option<Vec<(i64, Option<String>)>>, StoreError> {
        Ok(None)
    }

    /// Applies the link part of a run's patches; the ids of the links found.
    async fn patch_links(
        _conn: &mut Self::Connection,
        _run: &[Outcome],
    ) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }

    /// Ensures and patches the schedule rows of a run's patches.
    async fn patch_schedules(
        _conn: &mut Self::Connection,
        _rows: &[ScheduleRow<'_>],
    ) -> Result<Option<()>, StoreError> {
        Ok(None)
    }

    /// Inserts attempt rows; `(id, link)` of each.
    async fn insert_attempts(
        _conn: &mut Self::Connection,
        _rows: &[AttemptRow<'_>],
    ) -> Result<Option<Vec<(i64, String)>>, StoreError> {
        Ok(None)
    }

    /// Takes the leases of accepted claims, `(link, owner, until)`.
    async fn take_leases(
        _conn: &mut Self::Connection,
        _rows: &[(&str, &str, i64)],
    ) -> Result<Option<()>, StoreError> {
        Ok(None)
    }

    /// Gives back leases, `(link, replica)`, where that replica holds them.
    async fn release_leases(
        _conn: &mut Self::Connection,
        _rows: &[(&str, &str)],
    ) -> Result<Option<()>, StoreError> {
        Ok(None)
    }

    /// Moves `last_requested_at` of `(link, product, at)` rows (upserts).
    async fn move_times(
        _conn: &mut Self::Connection,
        _rows: &[(&str, &str, i64)],
    ) -> Result<Option<()>, StoreError> {
        Ok(None)
    }
}

/// A Rust type the shared SQL binds and reads on database `DB`; one bound
/// instead of three per type in the `where` clauses.
pub(crate) trait Column<DB: Database>:
    Type<DB> + for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Send
{
}

impl<DB: Database, T> Column<DB> for T where
    T: Type<DB> + for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Send
{
}

/// How many rows a statement changed: each backend's result type has the
/// method, but not as a trait sqlx's generic code can name.
pub(crate) trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}
