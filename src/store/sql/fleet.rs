//! The fleet page's queries ([`FleetQueries`]) on both backends; every one
//! is answered from an index (see [`crate::store::fleet`]).

use async_trait::async_trait;
use chrono::TimeDelta;
use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::statements::PAGE;
use super::{Column, Dialect, SqlStore};
use crate::domain::{LinkState, Product};
use crate::store::fleet::{
    AttemptCounts, FleetCounts, FleetQueries, LinkSearch, LinkSummary, MAX_SEARCH_ROWS, ProductAge,
    like_pattern, search_sql, summary,
};
use crate::store::records::ms;
use crate::store::{StoreError, Timestamp};

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl<DB> FleetQueries for SqlStore<DB>
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
    async fn fleet_counts(&self) -> Result<FleetCounts, StoreError> {
        let rows =
            sqlx::query("SELECT removed, state, COUNT(*) FROM links GROUP BY removed, state")
                .fetch_all(&self.pool)
                .await?;
        let mut out = FleetCounts::default();
        for s in LinkState::ALL {
            out.by_state.insert(s.as_str(), 0);
        }
        for row in &rows {
            let removed: bool = row.try_get(0)?;
            let state: String = row.try_get(1)?;
            let n = to_u64(row.try_get(2)?);
            if removed {
                out.removed += n;
            } else {
                let s = LinkState::parse(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                *out.by_state.entry(s.as_str()).or_default() += n;
            }
        }
        Ok(out)
    }

    async fn attempt_counts_since(&self, since: Timestamp) -> Result<AttemptCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) FROM attempts WHERE intent_at >= $1 GROUP BY outcome",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        let mut out = AttemptCounts::default();
        for row in &rows {
            let outcome: Option<String> = row.try_get(0)?;
            let n = to_u64(row.try_get(1)?);
            out.sent += n;
            match outcome.as_deref() {
                None => out.pending += n,
                Some("accepted" | "accepted_unreadable") => {}
                Some("rate_limited") => out.rate_limited += n,
                Some(_) => out.errors += n,
            }
        }
        Ok(out)
    }

    async fn due_histogram(
        &self,
        from: Timestamp,
        to: Timestamp,
        bucket: TimeDelta,
    ) -> Result<Vec<u64>, StoreError> {
        let width = bucket.num_milliseconds().max(1);
        let buckets = ((ms(to) - ms(from)).max(0) + width - 1) / width;
        // A due time before `from` is due now: the daemon is
        // about to send it, or has and its next due time is not
        // written yet (due times are flushed about a second
        // after they are computed). It counts in the first
        // bucket; left out, every link sat out of the chart
        // from its due time until that flush, which with short
        // windows (or a backlog) emptied it. Removed links
        // have their due times cleared, so none is counted
        // forever.
        let rows = sqlx::query(
            "SELECT CASE WHEN next_due_at < $1 THEN 0 ELSE (next_due_at - $1) / $3 END AS b, \
                 COUNT(DISTINCT link_id) FROM schedules \
                 WHERE next_due_at IS NOT NULL AND next_due_at < $2 GROUP BY b",
        )
        .bind(ms(from))
        .bind(ms(to))
        .bind(width)
        .fetch_all(&self.pool)
        .await?;
        let mut out = vec![0u64; usize::try_from(buckets).unwrap_or(0)];
        for row in &rows {
            let b: i64 = row.try_get(0)?;
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
                *slot = to_u64(row.try_get(1)?);
            }
        }
        Ok(out)
    }

    async fn data_age(&self, now: Timestamp) -> Result<Vec<ProductAge>, StoreError> {
        let rows = sqlx::query(
            "SELECT product, COUNT(*), COUNT(last_requested_at) FROM schedules GROUP BY product",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let name: String = row.try_get(0)?;
            let product = Product::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let total = to_u64(row.try_get(1)?);
            let requested: i64 = row.try_get(2)?;
            // Age percentile q is the (1 - q) quantile of the
            // request times: the oldest rows are the oldest data.
            let at = |q: f64| {
                let offset = ((requested as f64) * (1.0 - q)).floor() as i64;
                let offset = offset.clamp(0, (requested - 1).max(0));
                let name = name.clone();
                async move {
                    if requested == 0 {
                        return Ok::<_, StoreError>(None);
                    }
                    let t: Option<i64> = sqlx::query_scalar(
                        "SELECT last_requested_at FROM schedules WHERE product = $1 \
                             AND last_requested_at IS NOT NULL \
                             ORDER BY last_requested_at LIMIT 1 OFFSET $2",
                    )
                    .bind(name)
                    .bind(offset)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(t.map(|t| TimeDelta::milliseconds((ms(now) - t).max(0))))
                }
            };
            let (p50, p90, p99, max) = (
                at(0.5).await?,
                at(0.9).await?,
                at(0.99).await?,
                at(1.0).await?,
            );
            out.push(ProductAge {
                product,
                rows: total,
                never: total.saturating_sub(to_u64(requested)),
                p50,
                p90,
                p99,
                max,
            });
        }
        out.sort_by_key(|a| a.product.index());
        Ok(out)
    }

    async fn search_links(&self, search: &LinkSearch) -> Result<Vec<LinkSummary>, StoreError> {
        let text = search_sql(search);
        let mut q = sqlx::query(AssertSqlSafe(text));
        if let Some(state) = search.state {
            q = q.bind(state.as_str());
        }
        if !search.text.is_empty() {
            q = q.bind(like_pattern(&search.text));
        }
        if let Some(after) = &search.after {
            q = q.bind(after.clone());
        }
        q = q.bind(i64::from(search.limit.clamp(1, MAX_SEARCH_ROWS)));
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                summary(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                )
            })
            .collect()
    }

    async fn link_summaries(&self) -> Result<Vec<LinkSummary>, StoreError> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, products, source, state, reason, removed FROM links \
                     WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.as_str())
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(summary(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                )?);
            }
            match out.last() {
                Some(last) if rows.len() as i64 == PAGE => after = last.id.as_str().to_owned(),
                _ => return Ok(out),
            }
        }
    }
}
