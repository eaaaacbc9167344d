//! What `scaleout` reads from the PostgreSQL server: fresh databases, the
//! backend processes serving one (for their CPU time), its transaction
//! count and, where the extension is loaded, `pg_stat_statements`; and CPU
//! time summed over processes that come and go.

use std::collections::HashMap;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::*;

/// The server named by `--pg-url`, through its own database (the admin
/// connection never touches the databases it measures).
#[derive(Clone)]
pub(crate) struct PgServer {
    url: String,
    admin: PgPool,
}

/// Replaces the database (path) of a PostgreSQL URL, keeping the user,
/// host and query (`sslmode=...`) exactly as given.
pub(crate) fn with_database(url: &str, name: &str) -> Result<String> {
    let mut u = reqwest::Url::parse(url).with_context(|| format!("--pg-url {url}"))?;
    u.set_path(&format!("/{name}"));
    Ok(u.to_string())
}

/// The URL without its password, for the report.
pub(crate) fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

impl PgServer {
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}", shown_url(url)))?;
        Ok(Self {
            url: url.to_owned(),
            admin,
        })
    }

    /// Creates database `name` (dropping a leftover of that name) and
    /// returns its URL.
    pub(crate) async fn fresh_db(&self, name: &str) -> Result<String> {
        self.drop_db(name).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&self.admin)
            .await?;
        with_database(&self.url, name)
    }

    pub(crate) async fn drop_db(&self, name: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
    }

    /// The backends serving database `db` and whether each uses TLS.
    pub(crate) async fn backends(&self, db: &str) -> Result<Vec<(u32, bool)>> {
        let rows: Vec<(i32, Option<bool>)> = sqlx::query_as(
            "SELECT a.pid, s.ssl FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind(db)
        .fetch_all(&self.admin)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(pid, ssl)| (pid.unsigned_abs(), ssl.unwrap_or(false)))
            .collect())
    }

    /// Committed plus rolled-back transactions of database `db` so far.
    pub(crate) async fn xacts(&self, db: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(xact_commit + xact_rollback), 0)::int8 \
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_one(&self.admin)
        .await?;
        Ok(n)
    }

    /// The server's settings that change these figures.
    pub(crate) async fn settings(&self) -> Result<Value> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting FROM pg_settings WHERE name IN \
             ('ssl', 'autovacuum', 'synchronous_commit', 'fsync', 'shared_preload_libraries', \
              'server_version')",
        )
        .fetch_all(&self.admin)
        .await?;
        Ok(json!(rows.into_iter().collect::<BTreeMap<_, _>>()))
    }
}

/// `pg_stat_statements` of one database, when the server preloads it.
pub(crate) struct Statements {
    pool: PgPool,
}

/// One statement's figures over a phase.
#[derive(Debug, Clone)]
pub(crate) struct StatementRow {
    pub(crate) calls: i64,
    pub(crate) ms: f64,
    pub(crate) rows: i64,
    pub(crate) query: String,
}

impl Statements {
    /// Creates the extension in database `url` and resets its entries;
    /// `Err` (with the server's reason) where it is not preloaded.
    pub(crate) async fn enable(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pool)
            .await?;
        let s = Self { pool };
        s.reset().await?;
        Ok(s)
    }

    /// Forgets this database's entries only (other databases keep theirs).
    pub(crate) async fn reset(&self) -> Result<()> {
        sqlx::query(
            "SELECT pg_stat_statements_reset(0, \
             (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every statement of this database since the reset, most total time first.
    pub(crate) async fn read(&self) -> Result<Vec<StatementRow>> {
        let rows: Vec<(i64, f64, i64, String)> = sqlx::query_as(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(calls, ms, rows, query)| StatementRow {
                calls,
                ms,
                rows,
                query,
            })
            .collect())
    }

    /// The backend of this reader, left out of the CPU figures.
    pub(crate) async fn pid(&self) -> Result<u32> {
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&self.pool)
            .await?;
        Ok(pid.unsigned_abs())
    }

    pub(crate) async fn close(self) {
        self.pool.close().await;
    }
}

/// CPU seconds of a changing set of processes over a window: a process seen
/// at the start counts from its time then, one that appears later from
/// zero (it started inside the window), one that exits keeps its last
/// sample (so sample often: a backend's last second is lost).
#[derive(Default)]
pub(crate) struct CpuWindow {
    first: HashMap<u32, f64>,
    last: HashMap<u32, f64>,
}

impl CpuWindow {
    /// The processes at the start of the window.
    pub(crate) fn start(pids: &[u32]) -> Self {
        let mut w = Self::default();
        for &pid in pids {
            let t = cpu_seconds(pid);
            w.first.insert(pid, t);
            w.last.insert(pid, t);
        }
        w
    }

    /// Samples `pids` now.
    pub(crate) fn sample(&mut self, pids: &[u32]) {
        for &pid in pids {
            let t = cpu_seconds(pid);
            if t <= 0.0 && self.last.contains_key(&pid) {
                continue; // exited since listed
            }
            self.first.entry(pid).or_insert(0.0);
            self.last.insert(pid, t);
        }
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.last
            .iter()
            .map(|(pid, t)| t - self.first.get(pid).copied().unwrap_or(0.0))
            .sum()
    }
}
