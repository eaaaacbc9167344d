//! The PostgreSQL backend, for several replicas sharing one database.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;

/// A PostgreSQL database reached over the network.
pub struct PgStore {
    pool: PgPool,
    location: String,
}

impl PgStore {
    /// Connects to `url` and applies the PostgreSQL migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let location = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool, location })
    }

    /// Closes the pool (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One page of links with their schedules as a JSON document (see
/// `records::parse_page`).
const JSON_PAGE: &str = "SELECT COALESCE(json_agg(json_build_array(\
    l.id, l.products, l.cadence, l.source, l.state, l.reason, l.removed, l.created_at, \
    l.updated_at, l.backoff_until, l.failures, l.change_seq, \
    (SELECT COALESCE(json_agg(json_build_array(s.product, s.last_requested_at, \
        s.server_refreshed_at, s.server_attempted_at, s.next_due_at, s.failures, \
        s.backoff_until, s.parked_reason, s.refresh_requested)), '[]'::json) \
        FROM schedules s WHERE s.link_id = l.id)) ORDER BY l.id), '[]'::json)::text, max(l.id) \
    FROM (SELECT * FROM links WHERE removed = FALSE AND id > $1 ORDER BY id LIMIT $2) l";

super::sql::impl_sql_store!(
    PgStore,
    sqlx::Postgres,
    begin = "BEGIN",
    numbered = true,
    json_page = super::JSON_PAGE
);
