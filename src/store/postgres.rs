//! The PostgreSQL backend, for several replicas sharing one database. The
//! SQL is shared (`store/sql/`); this module connects and supplies
//! PostgreSQL's `Dialect`.

use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, Postgres};

use super::ownership::Ownership;
use super::postgres_bulk as bulk;
use super::records::{bits, ms, opt_ms};
use super::sql::dialect::{AttemptRow, ScheduleRow};
use super::sql::statements::{UPSERT_LINK_TAIL, UPSERT_SCHEDULE_TAIL};
use super::sql::{Dialect, SqlStore};
use super::{DueUpdate, LinkSpec, Outcome, StoreError, Timestamp};

/// Rows per `UNNEST` statement: large, since parameters do not grow with it.
const UNNEST_ROWS: usize = 10_000;

/// A PostgreSQL database reached over the network.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `url` and applies the PostgreSQL migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        let location = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        // No idle timeout or lifetime, so sqlx runs no reaper task, as for
        // SQLite (see `sqlite.rs`: sqlx#3645 can spin a worker forever).
        // A connection the server dropped is caught by the check sqlx runs
        // before handing one out (`test_before_acquire`, on by default).
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(SqlStore {
            writer: pool.clone(),
            pool,
            location,
            max_pages: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Closes the pool (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One page of links with their schedules as a JSON document (see
/// `records::parse_page`).
pub(super) const JSON_PAGE: &str = "SELECT COALESCE(json_agg(json_build_array(\
    l.id, l.products, l.cadence, l.source, l.state, l.reason, l.removed, l.created_at, \
    l.updated_at, l.backoff_until, l.failures, l.change_seq, \
    (SELECT COALESCE(json_agg(json_build_array(s.product, s.last_requested_at, \
        s.server_refreshed_at, s.server_attempted_at, s.next_due_at, s.failures, \
        s.backoff_until, s.parked_reason, s.refresh_requested)), '[]'::json) \
        FROM schedules s WHERE s.link_id = l.id), l.tags, l.last_activity_at) ORDER BY l.id), '[]'::json)::text, max(l.id) \
    FROM (SELECT * FROM links WHERE removed = FALSE AND id > $1 ORDER BY id LIMIT $2) l";

#[async_trait]
impl Dialect for Postgres {
    const BEGIN: &'static str = "BEGIN";
    const NUMBERED: bool = true;
    const JSON_PAGE: &'static str = JSON_PAGE;
    const LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    const ROW_LOCK: &'static str = " FOR UPDATE";
    const NEXT_SEQ: &'static str = "nextval('link_intent_seq')";
    const CLOCK_MS: &'static str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";
    const SHARE: &'static str = " FOR SHARE";
    const CAP_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7810468520506738020)");
    const OVERLAP: i64 = 1024;

    /// Two: one replica's rounds were bound by their latency (about a dozen
    /// statement round trips and the commit, the machine 41 % idle, issue
    /// 16); a second round on another connection overlaps them.
    const WRITE_ROUNDS: usize = 2;

    /// A round's statements are planned for their own parameters, never
    /// from a plan the session cached earlier. They join a batch (`UNNEST`
    /// of arrays) to tables, and `attempts` grows all day: a replica
    /// started on an empty database cached, after five executions, a
    /// generic plan for the outcomes' update made when `attempts` held a
    /// few hundred rows (a hash join over a scan of the whole table) and
    /// kept it as the table grew: 5 ms a round at 55,000 rows, most of one
    /// replica's database time (`tests/store/hot_path_pg.rs`). A custom plan
    /// knows the batch's length and the table's size and looks rows up by
    /// key (one replica: 3,877 -> 5,361 POST/s, 0.284 -> 0.210 CPU-s per
    /// 1,000, `linkfresh-bench scaleout`). Only rounds: for the sync's
    /// 20,000-row upserts custom plans cost 0.25 s a chunk (a million
    /// links started 15 s later with the setting on the whole session).
    /// Autovacuum's `ANALYZE` would replace the stale plan in the end, but
    /// not on a server that runs without it. Sent with the `BEGIN` as one
    /// simple query: one round trip less per round.
    const ROUND_BEGIN: &'static str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

    /// Upserts links and their schedule rows from column arrays (`UNNEST`): one
    /// parameter per column instead of thousands per statement, which PostgreSQL
    /// plans and binds ten times faster.
    async fn write_links(
        conn: &mut PgConnection,
        specs: &[&LinkSpec],
        now: Timestamp,
        change_seq: i64,
    ) -> Result<(), StoreError> {
        // Built once: the texts do not depend on the chunk.
        static UPSERT_LINKS: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO links (id, products, cadence, source, state, removed, created_at, \
                 updated_at, failures, change_seq) \
                 SELECT u.id, u.products, u.cadence, u.source, 'active', FALSE, $5, $5, 0, $6 \
                 FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[]) \
                 AS u(id, products, cadence, source){UPSERT_LINK_TAIL}"
            )
        });
        static UPSERT_SCHEDULES: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO schedules (link_id, product) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]){UPSERT_SCHEDULE_TAIL}"
            )
        });
        for chunk in specs.chunks(UNNEST_ROWS) {
            let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
            let products: Vec<i32> = chunk.iter().map(|s| bits(s.products)).collect();
            let cadences: Vec<Option<&str>> = chunk.iter().map(|s| s.cadence.as_deref()).collect();
            let sources: Vec<&str> = chunk.iter().map(|s| s.source.as_str()).collect();
            sqlx::query(AssertSqlSafe(UPSERT_LINKS.as_str()))
                .bind(ids)
                .bind(products)
                .bind(cadences)
                .bind(sources)
                .bind(ms(now))
                .bind(change_seq)
                .execute(&mut *conn)
                .await?;
            let (links, products): (Vec<&str>, Vec<&str>) = chunk
                .iter()
                .flat_map(|s| s.products.iter().map(move |p| (s.id.as_str(), p.as_str())))
                .unzip();
            sqlx::query(AssertSqlSafe(UPSERT_SCHEDULES.as_str()))
                .bind(links)
                .bind(products)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Writes due times from column arrays (`UPDATE ... FROM UNNEST`),
    /// skipping rows that already hold the time: the daemon re-sends a
    /// link's due times whenever it looks at the link again (another
    /// replica's claim read back, a refused claim), mostly unchanged, and
    /// an UPDATE that changes nothing still writes a row version and its
    /// index entries.
    async fn write_due(conn: &mut PgConnection, updates: &[DueUpdate]) -> Result<(), StoreError> {
        for rows in updates.chunks(UNNEST_ROWS) {
            let links: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let products: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let due: Vec<Option<i64>> = rows.iter().map(|r| opt_ms(r.2)).collect();
            sqlx::query(
                "UPDATE schedules SET next_due_at = u.due \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(link_id, product, due) \
                 WHERE schedules.link_id = u.link_id AND schedules.product = u.product \
                 AND schedules.next_due_at IS DISTINCT FROM u.due",
            )
            .bind(links)
            .bind(products)
            .bind(due)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Serializes `sync_config` across replicas: a transaction-scoped
    /// advisory lock, held by the returned transaction until it commits or
    /// is dropped (rolled back), so a crashed replica never leaves it
    /// behind. Concurrent upserts of the same rows would be correct without
    /// it, but each would rewrite every link; with it, the replicas after
    /// the first find the revision synced and skip.
    async fn lock_sync(
        pool: &PgPool,
    ) -> Result<Option<sqlx::Transaction<'static, Postgres>>, StoreError> {
        let mut tx = pool.begin().await?;
        // Held idle while other connections write the sync, maybe minutes.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SYNC_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(Some(tx))
    }

    /// Fresh statistics, or the planner (still believing the tables empty)
    /// pages through links with a full scan and sort per page, which made
    /// `load_links` quadratic (measured: 0.6 s per page at 200k links).
    async fn after_bulk_write(pool: &PgPool) -> Result<(), StoreError> {
        sqlx::query("ANALYZE links, schedules")
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn select_any(
        conn: &mut PgConnection,
        head: &str,
        tail: &str,
        ids: &[&str],
    ) -> Result<Option<Vec<sqlx::postgres::PgRow>>, StoreError> {
        bulk::select_any(conn, head, tail, ids).await.map(Some)
    }

    async fn finish_attempts(
        conn: &mut PgConnection,
        run: &[Outcome],
    ) -> Result<Option<Vec<(i64, Option<String>)>>, StoreError> {
        bulk::finish_attempts(conn, run).await.map(Some)
    }

    async fn patch_links(
        conn: &mut PgConnection,
        run: &[Outcome],
    ) -> Result<Option<Vec<String>>, StoreError> {
        bulk::patch_links(conn, run).await.map(Some)
    }

    async fn patch_schedules(
        conn: &mut PgConnection,
        rows: &[ScheduleRow<'_>],
    ) -> Result<Option<()>, StoreError> {
        bulk::patch_schedules(conn, rows).await.map(Some)
    }

    async fn insert_attempts(
        conn: &mut PgConnection,
        rows: &[AttemptRow<'_>],
    ) -> Result<Option<Vec<(i64, String)>>, StoreError> {
        bulk::insert_attempts(conn, rows).await.map(Some)
    }

    async fn take_leases(
        conn: &mut PgConnection,
        rows: &[(&str, &str, i64)],
    ) -> Result<Option<()>, StoreError> {
        bulk::take_leases(conn, rows).await.map(Some)
    }

    async fn release_leases(
        conn: &mut PgConnection,
        rows: &[(&str, &str)],
    ) -> Result<Option<()>, StoreError> {
        bulk::release_leases(conn, rows).await.map(Some)
    }

    async fn move_times(
        conn: &mut PgConnection,
        rows: &[(&str, &str, i64)],
    ) -> Result<Option<()>, StoreError> {
        bulk::move_times(conn, rows).await.map(Some)
    }

    /// PostgreSQL checks its own pages (checksums, `amcheck`); nothing to
    /// read ahead of the daemon here.
    async fn verify_readable(_pool: &PgPool) -> Result<(), StoreError> {
        Ok(())
    }

    fn ownership(store: &PgStore) -> Option<&dyn Ownership> {
        Some(store)
    }
}

/// How long the server lets a session of ours sit inside a transaction
/// without a statement before it ends the session, releasing its locks. A
/// replica paused (SIGSTOP, a frozen VM) in the middle of an intent
/// transaction holds its partitions' rows; without this the others could
/// neither take those partitions nor, waiting on them, renew their own.
/// Our transactions send their statements back to back (milliseconds
/// apart), so only a stopped process reaches it; the paused replica's
/// transaction then fails, and its POSTs are not sent.
pub const IDLE_IN_TRANSACTION: &str = "5s";

/// Key of the advisory lock that serializes `sync_config` ("lfsync").
const SYNC_LOCK: i64 = 0x6c66_7379_6e63;
