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
            .foreign_keys(true);
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

super::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, begin = "BEGIN IMMEDIATE");

super::fleet::impl_fleet_queries!(SqliteStore, sqlx::Sqlite);
