//! The [`Store`] of both backends, written once as plain generic code.
//!
//! [`SqlStore<DB>`] holds the pools of one sqlx database type; `DB` is
//! `sqlx::Sqlite` or `sqlx::Postgres`, each of which implements
//! [`Dialect`]: the constants and the few functions that differ (parameter
//! style, the claim's row locks, the `intent_seq` stamp, bulk writes,
//! verify and optimize). The SQL itself is split by concern:
//!
//! - `links`: the configuration sync, upserts, loads and polls, due times;
//! - `intents` and `claims`: the write-ahead intents and the claim guard,
//!   one path for one intent or many (its decisions as plain functions in
//!   `claims`);
//! - `outcomes`: answers and patches;
//! - `outbox` and `outbox_queue`: outbound events, written with the
//!   changes that cause them, and their delivery queue;
//! - `controls`: operator controls, history, idempotency keys;
//! - `fleet`: the fleet page's aggregate queries;
//! - `statements` and `rows`: shared statement texts and row decoding.
//!
//! Why generics, and why the same `where` clause on every block: sqlx
//! proves "`i64` can be bound on this database" or "`&mut` its connection
//! runs queries" per type, and Rust only carries a trait's own supertraits
//! to its users, not such facts about other types. So each `impl` block
//! over `DB` states them (identical everywhere, to be copied as they are;
//! the [`Column`] helper folds three bounds per Rust type into one; sqlx
//! implements `Encode` for `Option<T>` per database, hence the `Option`
//! lines). A macro
//! expanding the whole store per backend did this before; it hid the
//! contract with the backends and the types of half the code.

// `SqlStore` is public (tests and tools name `SqliteStore`), while the
// traits in its `impl` blocks' bounds are the crate's own: those blocks
// only hold `pub(crate)` helpers, so the bounds hide nothing public.
#![allow(private_bounds)]

mod claims;
mod controls;
mod demand;
pub(crate) mod dialect;
mod fleet;
mod intents;
mod links;
mod outbox;
mod outbox_queue;
mod outcomes;
pub(crate) mod rows;
pub(crate) mod statements;
pub(crate) mod texts;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Pool, Type};

pub(crate) use dialect::{Column, Dialect, RowsAffected};

use crate::domain::{LinkId, ProductSet};
use crate::store::{
    AttemptId, AttemptRecord, DueUpdate, Intent, LinkPatch, LinkRecord, LinkSpec, Outcome,
    OwnPatch, PostCap, Store, StoreError, SyncReport, Timestamp,
};

/// A store on one sqlx database: [`SqliteStore`](super::sqlite::SqliteStore)
/// or [`PgStore`](super::postgres::PgStore).
pub struct SqlStore<DB: Database> {
    /// Readers (status pages, loads, polls) run here, beside the writer.
    pub(crate) pool: Pool<DB>,
    /// Where write transactions run. On SQLite one connection that every
    /// writer queues for: when two connections race for SQLite's write lock
    /// the loser sleeps in its busy handler (1 ms, then 2, 5, 10 ...), while
    /// a queue hands the connection over without sleeping. On PostgreSQL
    /// the same pool as `pool`: it runs concurrent writers itself.
    pub(crate) writer: Pool<DB>,
    /// Backend and location, without a password.
    pub(crate) location: String,
    /// SQLite's `PRAGMA max_page_count` for the writer's connections (0:
    /// SQLite's default), see `SqliteStore::set_max_page_count`; unused on
    /// PostgreSQL.
    pub(crate) max_pages: Arc<AtomicU64>,
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    bool: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i32>: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
{
    /// Opens a write transaction on the writer.
    ///
    /// When a COMMIT fails with SQLITE_FULL (a full disk) or an I/O error,
    /// SQLite rolls the transaction back by itself; sqlx's own ROLLBACK then
    /// fails and its count of open transactions stays at one, so every later
    /// `BEGIN` was refused before reaching SQLite ("begin_with at non-zero
    /// transaction depth") and the writer never recovered once space was
    /// back (issue 14). Such a connection is closed and the transaction
    /// begun on a fresh one.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        self.begin_write_with(DB::BEGIN).await
    }

    /// [`begin_write`](Self::begin_write) with the backend's `begin`
    /// statement (e.g. [`Dialect::ROUND_BEGIN`]).
    pub(crate) async fn begin_write_with(
        &self,
        begin: &'static str,
    ) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        match self.writer.begin_with(begin).await {
            Err(sqlx::Error::InvalidSavePointStatement) => {
                tracing::warn!(
                    "the store's writer connection was left inside a failed transaction; opening a new one"
                );
                let mut stuck = self.writer.acquire().await?;
                stuck.close_on_drop();
                drop(stuck);
                Ok(self.writer.begin_with(begin).await?)
            }
            begun => Ok(begun?),
        }
    }

    /// Bumps the change sequence the daemon polls (`changes_since`).
    pub(crate) async fn bump(conn: &mut DB::Connection) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar(
                "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq",
            )
            .fetch_one(&mut *conn)
            .await?,
        )
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    bool: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i32>: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
{
    #[tracing::instrument(skip_all, fields(number, revision = %revision, links = links.len()))]
    async fn sync_config_numbered(
        &self,
        number: i64,
        revision: &str,
        links: &[LinkSpec],
        now: Timestamp,
    ) -> Result<SyncReport, StoreError> {
        self.sync(number, revision, links, now).await
    }

    #[tracing::instrument(skip_all, fields(link = %spec.id))]
    async fn upsert_link(&self, spec: &LinkSpec, now: Timestamp) -> Result<(), StoreError> {
        self.upsert_one(spec, now).await
    }

    #[tracing::instrument(skip_all, fields(link = %id))]
    async fn remove_link(&self, id: &LinkId, now: Timestamp) -> Result<bool, StoreError> {
        self.remove_one(id, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn load_links(&self) -> Result<Vec<LinkRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after = String::new();
        while let Some((page, last)) = self.read_page(&after).await? {
            out.extend(page);
            after = last;
        }
        Ok(out)
    }

    async fn load_links_page(
        &self,
        after: &str,
    ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError> {
        self.read_page(after).await
    }

    async fn change_mark(&self) -> Result<i64, StoreError> {
        self.read_change_mark().await
    }

    #[tracing::instrument(skip_all, fields(link = %id))]
    async fn load_link(&self, id: &LinkId) -> Result<Option<LinkRecord>, StoreError> {
        self.read_link(id).await
    }

    #[tracing::instrument(skip_all, fields(outcomes = outcomes.len(), patches = patches.len(), intents = intents.len()))]
    async fn record_batch_capped(
        &self,
        outcomes: &[Outcome],
        patches: &[OwnPatch],
        intents: &[Intent],
        cap: Option<PostCap>,
    ) -> Result<Vec<Option<AttemptId>>, StoreError> {
        let mut tx = self.begin_write_with(DB::ROUND_BEGIN).await?;
        Self::write_outcomes(&mut tx, outcomes).await?;
        for p in patches {
            Self::patch(&mut tx, &p.link, &p.patch, p.at, None).await?;
        }
        let ids = Self::write_intents(&mut tx, intents, cap).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn claims_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError> {
        self.read_claims(seq).await
    }

    #[tracing::instrument(skip_all, fields(link = %link))]
    async fn apply_patch(
        &self,
        link: &LinkId,
        patch: &LinkPatch,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.patch_and_notify(link, patch, now).await
    }

    #[tracing::instrument(skip_all, fields(link = %id, paused))]
    async fn set_paused(
        &self,
        id: &LinkId,
        paused: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.pause(id, paused, now).await
    }

    #[tracing::instrument(skip_all, fields(link = %id, products = %products))]
    async fn request_refresh(
        &self,
        id: &LinkId,
        products: ProductSet,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.ask_refresh(id, products, now).await
    }

    #[tracing::instrument(skip_all, fields(link = %id))]
    async fn record_activity(
        &self,
        id: &LinkId,
        now: Timestamp,
        coarse: chrono::TimeDelta,
    ) -> Result<crate::store::Activity, StoreError> {
        self.activity(id, now, coarse).await
    }

    #[tracing::instrument(skip_all, fields(link = %id))]
    async fn set_tags(&self, id: &LinkId, tags: &[String]) -> Result<bool, StoreError> {
        self.tags(id, tags).await
    }

    async fn changes_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError> {
        self.read_changes(seq).await
    }

    #[tracing::instrument(skip_all, fields(link = %id))]
    async fn attempts(&self, id: &LinkId, limit: u32) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read_attempts(id, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn prune_attempts(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.prune(older_than).await
    }

    #[tracing::instrument(skip_all)]
    async fn posts_since(
        &self,
        since: Timestamp,
        bucket: chrono::TimeDelta,
        except_replica: Option<&str>,
    ) -> Result<Vec<(Timestamp, u32)>, StoreError> {
        self.read_posts_since(since, bucket, except_replica).await
    }

    #[tracing::instrument(skip_all, fields(updates = updates.len()))]
    async fn set_next_due(&self, updates: &[DueUpdate]) -> Result<(), StoreError> {
        self.write_due_times(updates).await
    }

    #[tracing::instrument(skip_all)]
    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.remember(key, expires_at, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn forget_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.forget(key).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn verify_readable(&self) -> Result<(), StoreError> {
        DB::verify_readable(&self.pool).await
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    fn ownership(&self) -> Option<&dyn crate::store::ownership::Ownership> {
        DB::ownership(self)
    }

    fn write_rounds(&self) -> usize {
        DB::WRITE_ROUNDS
    }
}
