//! Reading and settling the outbox: the delivery task's claims (the oldest
//! pending event of each link, leased so that one replica delivers it),
//! their outcomes, the endpoint's 410 switch, and `linkfresh events`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::Product;
use crate::events::kind::EventType;
use crate::events::payload::{budget_episode_id, budget_exhausted_body};
use crate::store::outbox::{EndpointState, EventRecord, FLEET_LINK_ID, Outbox, Settle};
use crate::store::records::{count, ms, opt_time, time};
use crate::store::{StoreError, Timestamp};

/// The columns [`event`] decodes, in order.
const EVENT_COLUMNS: &str = "seq, id, link_id, type, created_at, payload, status, attempts, \
     last_error, COALESCE(retry_since, created_at)";

fn event<R: Row>(row: &R) -> Result<EventRecord, StoreError>
where
    usize: ColumnIndex<R>,
    i64: Column<R::Database>,
    i32: Column<R::Database>,
    String: Column<R::Database>,
    Option<String>: Column<R::Database>,
{
    Ok(EventRecord {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        link: row.try_get(2)?,
        kind: row.try_get(3)?,
        created_at: time(row.try_get(4)?)?,
        payload: row.try_get(5)?,
        status: row.try_get(6)?,
        attempts: count(row.try_get(7)?),
        last_error: row.try_get(8)?,
        retry_since: time(row.try_get(9)?)?,
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl<DB> Outbox for SqlStore<DB>
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
    async fn set_event_endpoint(
        &self,
        url: Option<&str>,
    ) -> Result<Option<EndpointState>, StoreError> {
        let mut tx = self.begin_write().await?;
        match url {
            None => {
                sqlx::query("DELETE FROM event_endpoint WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
            }
            Some(url) => {
                // A changed url is a fixed receiver: a 410's disable ends.
                sqlx::query(
                    "INSERT INTO event_endpoint (id, url) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET url = excluded.url, \
                     disabled_at = CASE WHEN event_endpoint.url = excluded.url \
                                   THEN event_endpoint.disabled_at END, \
                     disabled_reason = CASE WHEN event_endpoint.url = excluded.url \
                                       THEN event_endpoint.disabled_reason END",
                )
                .bind(url)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.event_endpoint().await
    }

    async fn event_endpoint(&self) -> Result<Option<EndpointState>, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT url, disabled_reason FROM event_endpoint WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(url, disabled)| EndpointState { url, disabled }))
    }

    async fn disable_event_endpoint(&self, reason: Option<&str>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE event_endpoint SET disabled_reason = $1, \
             disabled_at = CASE WHEN $1 IS NULL THEN NULL ELSE $2 END WHERE id = 1",
        )
        .bind(reason)
        .bind(ms(chrono::Utc::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // Most rounds find nothing due: ask a reader first, so an idle
        // outbox never takes the write lock (SQLite's one writer is the
        // daemon's group commit).
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM events WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) LIMIT 1",
        )
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        // Only each link's oldest pending event: the next one waits until
        // it is delivered or failed, so a link's events arrive in order.
        let text = format!(
            "SELECT e.seq FROM events e WHERE e.status = 'pending' \
             AND e.next_attempt_at <= $1 AND (e.lease_until IS NULL OR e.lease_until < $1) \
             AND NOT EXISTS (SELECT 1 FROM events p WHERE p.status = 'pending' \
                             AND p.link_id = e.link_id AND p.seq < e.seq) \
             ORDER BY e.seq LIMIT $2{}",
            DB::LOCK
        );
        let seqs: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(text))
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let text = format!(
                "UPDATE events SET lease_owner = $2, lease_until = $3 WHERE seq = $1 \
                 RETURNING {EVENT_COLUMNS}"
            );
            let row = sqlx::query(AssertSqlSafe(text))
                .bind(seq)
                .bind(owner)
                .bind(ms(now) + millis(lease))
                .fetch_one(&mut *tx)
                .await?;
            out.push(event(&row)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn settle_events(
        &self,
        owner: &str,
        settled: &[(i64, Settle)],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        if settled.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut held = 0;
        for (seq, how) in settled {
            let (status, next, error, tried): (&str, Option<i64>, Option<&str>, i32) = match how {
                Settle::Delivered => ("delivered", None, None, 1),
                Settle::Retry(at, e) => ("pending", Some(ms(*at)), Some(e), 1),
                Settle::Failed(e) => ("failed", None, Some(e), 1),
                Settle::Release => ("pending", None, None, 0),
            };
            held += sqlx::query(
                "UPDATE events SET status = $3, attempts = attempts + $4, \
                 next_attempt_at = COALESCE($5, next_attempt_at), \
                 last_error = COALESCE($6, last_error), \
                 finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $7 END, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE seq = $1 AND lease_owner = $2",
            )
            .bind(*seq)
            .bind(owner)
            .bind(status)
            .bind(tried)
            .bind(next)
            .bind(error)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(held)
    }

    async fn list_events(&self, failed: bool, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let text =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE status = $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(text))
            .bind(if failed { "failed" } else { "pending" })
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event).collect()
    }

    async fn replay_event(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = $2, \
             retry_since = $2, finished_at = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn pending_events(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
        let (n, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM events WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok((u64::try_from(n).unwrap_or(0), opt_time(oldest)?))
    }

    async fn sweep_stale(
        &self,
        stale_after: &[(Product, Duration)],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.sweep(stale_after, now).await
    }

    async fn record_budget_exhausted(
        &self,
        at: Timestamp,
        used: u64,
        limit: u64,
        window: Duration,
        waiting: u64,
    ) -> Result<bool, StoreError> {
        let window_ms = millis(window);
        let mut tx = self.begin_write().await?;
        if !Self::outbox_on(&mut tx).await? {
            return Ok(false);
        }
        let (id, width) = budget_episode_id(at, window_ms);
        // The id makes a repeat in the same bucket a no-op; NOT EXISTS also
        // drops a repeat from a replica that saw the episode start just
        // after a bucket boundary (see the trait's doc comment).
        let n = sqlx::query(
            "INSERT INTO events (id, link_id, type, product, created_at, payload, next_attempt_at) \
             SELECT $1, $2, $3, NULL, $4, $5, $4 WHERE NOT EXISTS \
             (SELECT 1 FROM events WHERE link_id = $2 AND type = $3 AND created_at > $6) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(FLEET_LINK_ID)
        .bind(EventType::BudgetExhausted.as_str())
        .bind(ms(at))
        .bind(budget_exhausted_body(
            at,
            used,
            limit,
            window.as_secs(),
            waiting,
        ))
        .bind(ms(at) - width)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if n == 1 {
            tracing::info!(event = "budget.exhausted", id, "event queued");
        }
        Ok(n == 1)
    }

    async fn prune_events(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM events WHERE status = 'delivered' AND finished_at < $1")
            .bind(ms(older_than))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
