//! The SQLite backend: the default, embedded store for a single replica.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;

/// A SQLite database file (or `sqlite::memory:` for quick tools).
pub struct SqliteStore {
    pool: SqlitePool,
    location: String,
}

impl SqliteStore {
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
            .row_buffer_size(1024);
        let location = format!("sqlite:{}", options.get_filename().display());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An in-memory database lives as long as its one connection.
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        }
        .connect_with(options)
        .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, location })
    }

    /// Closes the pool so the file can be reopened or removed (tests, shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
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
        FROM schedules s WHERE s.link_id = l.id)))), max(l.id) \
    FROM (SELECT * FROM links WHERE removed = FALSE AND id > $1 ORDER BY id LIMIT $2) l";

super::sql::impl_sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    begin = "BEGIN IMMEDIATE",
    numbered = false,
    json_page = super::JSON_PAGE
);
