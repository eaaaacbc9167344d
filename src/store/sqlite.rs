//! The SQLite backend: the default, embedded store for a single replica.
//! The SQL is shared (`store/sql/`); this module opens the file and
//! supplies SQLite's `Dialect`.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};

use super::records::{bits, ms, opt_ms};
use super::sql::statements::{
    DUE_ROWS, LINK_ROWS, SET_DUE_HEAD, SET_DUE_ROW, SET_DUE_TAIL, UPSERT_LINK_HEAD,
    UPSERT_LINK_ROW, UPSERT_LINK_TAIL, UPSERT_SCHEDULE_TAIL,
};
use super::sql::texts::cached_multi_row;
use super::sql::{Dialect, SqlStore};
use super::{DueUpdate, LinkSpec, StoreError, Timestamp};
use crate::domain::Product;

/// A SQLite database file (or `sqlite::memory:` for quick tools).
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if missing) the database at `url` and migrates it.
    ///
    /// WAL lets status readers run beside the daemon's writes. `synchronous =
    /// NORMAL` is crash-safe for linkfresh: a committed intent is in the WAL
    /// before the POST is sent, so a process crash never loses it; only a power
    /// loss can drop the last commits before a checkpoint fsync (see the
    /// module docs of [`crate::store`]). Foreign keys are off by default in
    /// SQLite, and schedules and attempts rely on them.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Rows cross from SQLite's worker thread to the runtime through a
            // channel; a deeper one halves load_links' thread hand-offs.
            .row_buffer_size(1024)
            // Checkpoints copy the WAL into the database; every 40 MB rather
            // than every 4 MB, so a page written by many commits in a row is
            // copied once.
            .pragma("wal_autocheckpoint", "10000");
        let location = format!("sqlite:{}", options.get_filename().display());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let max_pages = Arc::new(AtomicU64::new(0));
        // An in-memory database lives as long as its one connection, which
        // then both reads and writes.
        let (pool, writer) = if in_memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            (pool.clone(), pool)
        } else {
            // The writer's page cache is 16 MB rather than 2: at thousands of
            // POSTs a second its transactions touch the same index pages
            // again and again. Readers keep the default.
            let pages = max_pages.clone();
            // No idle timeout or lifetime, so sqlx runs no reaper task: its
            // reaper can spin a runtime worker at 100 % CPU forever when it
            // reads a transiently underflowed idle count (sqlx#3645, fixed
            // upstream by sqlx#4289, not in 0.9.0), which hung a test run at
            // runtime shutdown. A local file gains nothing from recycling
            // connections.
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(move |conn, _| {
                    let pages = pages.load(Ordering::Relaxed);
                    Box::pin(async move {
                        if pages > 0 {
                            sqlx::query(AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
                                .execute(conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(options.clone().pragma("cache_size", "-16384"))
                .await?;
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            (pool, writer)
        };
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        Ok(SqlStore {
            pool,
            writer,
            location,
            max_pages,
        })
    }

    /// Caps the database file at `pages` pages for every write from now on
    /// (`PRAGMA max_page_count`; SQLite keeps at least the current size), so
    /// that writes fail with SQLITE_FULL exactly as on a full disk; `0`
    /// lifts the cap. Exists for tests of the daemon's behaviour on a full
    /// disk, which cannot count on mounting a small tmpfs; it also holds
    /// for writer connections opened later.
    pub async fn set_max_page_count(&self, pages: u64) -> Result<(), StoreError> {
        self.max_pages.store(pages, Ordering::Relaxed);
        // SQLite's own limit when lifted: 4,294,967,294 pages.
        let pages = if pages == 0 { 4_294_967_294 } else { pages };
        sqlx::query(AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The database's size in pages now, for [`SqliteStore::set_max_page_count`].
    pub async fn page_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.writer)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Closes the pools so the file can be reopened or removed (tests, shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// One page of links with their schedules as a JSON document (see
/// `records::parse_page`); `json()` keeps the inner array from being quoted.
const JSON_PAGE: &str = "SELECT json_group_array(json_array(\
    l.id, l.products, l.cadence, l.source, l.state, l.reason, l.removed, l.created_at, \
    l.updated_at, l.backoff_until, l.failures, l.change_seq, \
    json((SELECT json_group_array(json_array(s.product, s.last_requested_at, \
        s.server_refreshed_at, s.server_attempted_at, s.next_due_at, s.failures, \
        s.backoff_until, s.parked_reason, s.refresh_requested)) \
        FROM schedules s WHERE s.link_id = l.id)), l.tags, l.last_activity_at)), max(l.id) \
    FROM (SELECT * FROM links WHERE removed = FALSE AND id > $1 ORDER BY id LIMIT $2) l";

/// Links whose schedule rows one statement writes (passed as one JSON text).
const SCHEDULE_LINKS_PER_STATEMENT: usize = 5_000;

#[async_trait]
impl Dialect for Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const NUMBERED: bool = false;
    const JSON_PAGE: &'static str = JSON_PAGE;
    const LOCK: &'static str = "";
    const ROW_LOCK: &'static str = "";
    const NEXT_SEQ: &'static str = "(SELECT COALESCE(MAX(intent_seq), 0) + 1 FROM links)";
    const CLOCK_MS: &'static str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
    const SHARE: &'static str = "";
    const CAP_LOCK: Option<&'static str> = None;
    const OVERLAP: i64 = 0;
    /// One: SQLite has one writer (its pool of one connection).
    const WRITE_ROUNDS: usize = 1;
    const ROUND_BEGIN: &'static str = Self::BEGIN;

    /// Multi-row `VALUES` statements of plain `?` parameters (see
    /// `rows::multi_row`), each text built once per chunk length.
    async fn write_links(
        conn: &mut SqliteConnection,
        specs: &[&LinkSpec],
        now: Timestamp,
        change_seq: i64,
    ) -> Result<(), StoreError> {
        for chunk in specs.chunks(LINK_ROWS) {
            let text = cached_multi_row(
                &[UPSERT_LINK_HEAD],
                UPSERT_LINK_ROW,
                chunk.len(),
                UPSERT_LINK_TAIL,
                false,
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for spec in chunk {
                q = q
                    .bind(spec.id.as_str())
                    .bind(bits(spec.products))
                    .bind(spec.cadence.as_deref())
                    .bind(spec.source.as_str())
                    .bind(ms(now))
                    .bind(ms(now))
                    .bind(change_seq);
            }
            q.execute(&mut *conn).await?;
        }
        // Each link's schedule rows come from its row just written, joined
        // with the products its bit mask names, in one statement per chunk:
        // binding two parameters per row made this 8.9 of the 11.7 s a
        // million-link first sync took.
        let products = Product::ALL
            .iter()
            .map(|p| format!("({}, '{}')", 1 << p.index(), p.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "INSERT INTO schedules (link_id, product) SELECT l.id, p.column2 \
             FROM json_each($1) j JOIN links l ON l.id = j.value \
             JOIN (VALUES {products}) p ON (l.products & p.column1) != 0 \
             WHERE TRUE{UPSERT_SCHEDULE_TAIL}"
        );
        for chunk in specs.chunks(SCHEDULE_LINKS_PER_STATEMENT) {
            let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
            let ids = serde_json::to_string(&ids).expect("a list of strings serializes");
            sqlx::query(AssertSqlSafe(text.as_str()))
                .bind(ids)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Multi-row `UPDATE ... FROM (VALUES ...)` statements.
    async fn write_due(
        conn: &mut SqliteConnection,
        updates: &[DueUpdate],
    ) -> Result<(), StoreError> {
        for rows in updates.chunks(DUE_ROWS) {
            let text = cached_multi_row(
                &[SET_DUE_HEAD],
                SET_DUE_ROW,
                rows.len(),
                SET_DUE_TAIL,
                false,
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, product, due) in rows {
                q = q
                    .bind(link.as_str())
                    .bind(product.as_str())
                    .bind(opt_ms(*due));
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// One process owns a SQLite file (see [`super::owner`]): `sync_config`
    /// needs no cross-process lock, and `BEGIN IMMEDIATE` serializes its
    /// writes anyway.
    async fn lock_sync(
        _pool: &SqlitePool,
    ) -> Result<Option<sqlx::Transaction<'static, Sqlite>>, StoreError> {
        Ok(None)
    }

    /// Lets SQLite refresh the statistics it finds stale.
    async fn after_bulk_write(pool: &SqlitePool) -> Result<(), StoreError> {
        sqlx::query("PRAGMA optimize").execute(pool).await?;
        Ok(())
    }

    /// `PRAGMA quick_check`: reads every page of the file once (a second or
    /// two for a million links) and reports damaged ones; SQLite's full
    /// `integrity_check` also verifies index contents and takes far longer,
    /// so it is left to the operator, whom the error points to it.
    async fn verify_readable(pool: &SqlitePool) -> Result<(), StoreError> {
        let problems: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)")
            .fetch_all(pool)
            .await?;
        if problems.iter().all(|p| p == "ok") {
            return Ok(());
        }
        Err(StoreError::Corrupt(format!(
            "the SQLite file is damaged ({})",
            problems.join("; ")
        )))
    }

    /// One daemon per file (see [`super::owner`]) owns every link.
    fn ownership(_store: &SqlStore<Sqlite>) -> Option<&dyn super::ownership::Ownership> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_store_runs_no_pool_reaper_task() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lf.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        for pool in [&store.pool, &store.writer] {
            let options = pool.options();
            assert_eq!(options.get_idle_timeout(), None);
            assert_eq!(options.get_max_lifetime(), None);
        }
    }
}
