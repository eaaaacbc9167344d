//! Writing the outbox: the events a change causes, in the transaction of
//! that change (see [`crate::events`]). Called by every path that applies a
//! [`LinkPatch`] (outcomes, the daemon's own patches, webhooks) and by an
//! operator's resume; and the `data.stale` / `data.fresh` sweep.

use std::time::Duration;

use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::{LinkId, LinkState, Product};
use crate::events::kind::{Caused, EventType, caused_by, may_cause};
use crate::events::payload::{LinkView, body, new_id};
use crate::store::records::{from_bits, ms, opt_time, product};
use crate::store::{LinkPatch, StoreError, Timestamp};

/// How many stale or fresh candidates one sweep handles per product; the
/// rest wait for the next sweep.
const SWEEP_BATCH: i64 = 1000;

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
    /// Writes the events `patch` causes on `link`, before the patch is
    /// applied in the same transaction. Costs nothing for the common patch
    /// (an accepted refresh), one read when events are not configured.
    pub(crate) async fn record_events(
        conn: &mut DB::Connection,
        link: &LinkId,
        patch: &LinkPatch,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if !may_cause(patch) || !Self::outbox_on(conn).await? {
            return Ok(());
        }
        let text = format!(
            "SELECT state, products FROM links WHERE id = $1{}",
            DB::ROW_LOCK
        );
        let Some(row) = sqlx::query(AssertSqlSafe(text))
            .bind(link.as_str())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(());
        };
        let before = LinkState::parse(&row.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let products = from_bits(row.try_get(1)?);
        let schedules = sqlx::query(
            "SELECT product, last_requested_at, server_refreshed_at, parked_reason \
             FROM schedules WHERE link_id = $1 ORDER BY product",
        )
        .bind(link.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut view = LinkView {
            state: patch.state.as_ref().map_or(before, |(s, _)| *s),
            products,
            last_requested: Vec::new(),
            last_refreshed: Vec::new(),
        };
        let mut parked = Vec::new();
        for row in &schedules {
            let p = product(&row.try_get::<String, _>(0)?)?;
            let patched = patch
                .products
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, pp)| pp);
            let requested = match patched.and_then(|pp| pp.last_requested_at) {
                Some(t) => t,
                None => opt_time(row.try_get(1)?)?,
            };
            view.last_requested.push((p, requested));
            view.last_refreshed.push((p, opt_time(row.try_get(2)?)?));
            if row.try_get::<Option<String>, _>(3)?.is_some() {
                parked.push(p);
            }
        }
        for caused in caused_by(before, &parked, patch) {
            Self::insert_event(conn, link.as_str(), &caused, now, &view).await?;
        }
        Ok(())
    }

    /// Whether `[events]` is configured (the endpoint row exists).
    pub(super) async fn outbox_on(conn: &mut DB::Connection) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT id FROM event_endpoint WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?
                .is_some(),
        )
    }

    /// One outbox row, due at once.
    async fn insert_event(
        conn: &mut DB::Connection,
        link: &str,
        caused: &Caused,
        now: Timestamp,
        view: &LinkView,
    ) -> Result<(), StoreError> {
        tracing::info!(link, event = caused.kind.as_str(), product = ?caused.product, "event queued");
        sqlx::query(
            "INSERT INTO events (id, link_id, type, product, created_at, payload, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(new_id())
        .bind(link)
        .bind(caused.kind.as_str())
        .bind(caused.product.map(Product::as_str))
        .bind(ms(now))
        .bind(body(link, caused, now, view))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// [`Outbox::sweep_stale`](crate::store::Outbox::sweep_stale).
    ///
    /// The candidates are read on a reader (a scan of the product's
    /// schedule rows, no lock); only when there are some is a write
    /// transaction opened, which opens each episode only if the product is
    /// still stale (a refresh may have come in between) and closes each
    /// only once (several replicas may sweep at once).
    pub(crate) async fn sweep(
        &self,
        stale_after: &[(Product, Duration)],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let configured: Option<i32> =
            sqlx::query_scalar("SELECT id FROM event_endpoint WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        if configured.is_none() {
            return Ok(0);
        }
        let mut stale = Vec::new();
        let mut fresh = Vec::new();
        for (p, after) in stale_after {
            let cutoff = ms(now) - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            // The last refresh is MoneyKit's refreshed_at; a product never
            // refreshed counts from when linkfresh first saw the link.
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT l.id, COALESCE(s.server_refreshed_at, l.created_at) FROM links l \
                 JOIN schedules s ON s.link_id = l.id AND s.product = $1 \
                 WHERE NOT l.removed AND (l.products & $2) <> 0 \
                 AND COALESCE(s.server_refreshed_at, l.created_at) < $3 \
                 AND NOT EXISTS (SELECT 1 FROM stale_episodes e \
                                 WHERE e.link_id = l.id AND e.product = $1) \
                 ORDER BY l.id LIMIT $4",
            )
            .bind(p.as_str())
            .bind(1i32 << p.index())
            .bind(cutoff)
            .bind(SWEEP_BATCH)
            .fetch_all(&self.pool)
            .await?;
            stale.extend(
                rows.into_iter()
                    .map(|(l, last)| (l, *p, *after, cutoff, last)),
            );
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT e.link_id, COALESCE(s.server_refreshed_at, 0) FROM stale_episodes e \
                 JOIN schedules s ON s.link_id = e.link_id AND s.product = e.product \
                 WHERE e.product = $1 AND s.server_refreshed_at >= $2 \
                 ORDER BY e.link_id LIMIT $3",
            )
            .bind(p.as_str())
            .bind(cutoff)
            .bind(SWEEP_BATCH)
            .fetch_all(&self.pool)
            .await?;
            fresh.extend(rows.into_iter().map(|(l, last)| (l, *p, last)));
        }
        if stale.is_empty() && fresh.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        for (link, p, after, cutoff, last) in stale {
            let opened = sqlx::query(
                "INSERT INTO stale_episodes (link_id, product, since) \
                 SELECT l.id, $2, $3 FROM links l \
                 JOIN schedules s ON s.link_id = l.id AND s.product = $2 \
                 WHERE l.id = $1 AND COALESCE(s.server_refreshed_at, l.created_at) < $4 \
                 ON CONFLICT (link_id, product) DO NOTHING",
            )
            .bind(link.as_str())
            .bind(p.as_str())
            .bind(ms(now))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if opened == 1 {
                let reason = format!(
                    "last refresh {} is older than [events] stale_after = {}",
                    crate::events::payload::iso_ms(last),
                    humantime::format_duration(after)
                );
                Self::data_event(&mut tx, &link, p, EventType::Stale, reason, now).await?;
                written += 1;
            }
        }
        for (link, p, last) in fresh {
            let closed =
                sqlx::query("DELETE FROM stale_episodes WHERE link_id = $1 AND product = $2")
                    .bind(link.as_str())
                    .bind(p.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if closed == 1 {
                let reason = format!(
                    "refreshed again at {}",
                    crate::events::payload::iso_ms(last)
                );
                Self::data_event(&mut tx, &link, p, EventType::Fresh, reason, now).await?;
                written += 1;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    /// A `data.stale` or `data.fresh` event of one product of `link`.
    async fn data_event(
        conn: &mut DB::Connection,
        link: &str,
        p: Product,
        kind: EventType,
        reason: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT state, products FROM links WHERE id = $1")
            .bind(link)
            .fetch_one(&mut *conn)
            .await?;
        let state = LinkState::parse(&row.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut view = LinkView {
            state,
            products: from_bits(row.try_get(1)?),
            last_requested: Vec::new(),
            last_refreshed: Vec::new(),
        };
        let schedules = sqlx::query(
            "SELECT product, last_requested_at, server_refreshed_at FROM schedules \
             WHERE link_id = $1 ORDER BY product",
        )
        .bind(link)
        .fetch_all(&mut *conn)
        .await?;
        for row in &schedules {
            let q = product(&row.try_get::<String, _>(0)?)?;
            view.last_requested.push((q, opt_time(row.try_get(1)?)?));
            view.last_refreshed.push((q, opt_time(row.try_get(2)?)?));
        }
        let caused = Caused {
            kind,
            product: Some(p),
            reason: Some(reason),
            link_error_code: None,
        };
        Self::insert_event(conn, link, &caused, now, &view).await
    }
}
