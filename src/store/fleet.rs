//! Aggregate and paged queries for the fleet page, the admin API and
//! discovery. They live in their own trait ([`FleetQueries`], a supertrait
//! of [`Store`](super::Store)) so that the daemon's hot-path store stays
//! small, and every query here is answered from an index: the page must stay
//! fast with a million links and never read the fleet into memory.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::TimeDelta;
use serde::Serialize;

use super::{LinkSource, StoreError, Timestamp};
use crate::domain::{LinkId, LinkState, Product, ProductSet};

/// Rows returned by one [`FleetQueries::search_links`] call at most.
pub const MAX_SEARCH_ROWS: u32 = 500;

/// How many links are in each state, for the fleet page's headline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounts {
    /// Non-removed links per state (every state present, zeros included).
    pub by_state: BTreeMap<&'static str, u64>,
    /// Links no longer managed by anyone (history kept).
    pub removed: u64,
}

impl FleetCounts {
    /// Non-removed links.
    pub fn total(&self) -> u64 {
        self.by_state.values().sum()
    }
}

/// What the daemon sent since some time: refreshes (POSTs), how many were
/// rate limited and how many failed otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttemptCounts {
    /// POSTs whose intent was committed.
    pub sent: u64,
    /// Answered 429 (`rate_limited`).
    pub rate_limited: u64,
    /// Any other outcome than accepted or rate limited (errors and parks).
    pub errors: u64,
    /// No outcome recorded (in flight, or the process died).
    pub pending: u64,
}

/// How old one product's data is across the fleet, from `last_requested_at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductAge {
    /// The product.
    pub product: Product,
    /// Schedule rows of the product (links that have or had it).
    pub rows: u64,
    /// Rows never requested.
    pub never: u64,
    /// Median age (half the requested rows are younger).
    pub p50: Option<TimeDelta>,
    /// 90th percentile age.
    pub p90: Option<TimeDelta>,
    /// 99th percentile age.
    pub p99: Option<TimeDelta>,
    /// The oldest requested row.
    pub max: Option<TimeDelta>,
}

/// A page request for [`FleetQueries::search_links`]: keyset paging by id,
/// so page 10,000 costs what page 1 costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkSearch {
    /// Substring of the link id (case-insensitive on SQLite); empty: all.
    pub text: String,
    /// Only links in this state.
    pub state: Option<LinkState>,
    /// Removed links instead of live ones.
    pub removed: bool,
    /// Only ids after this one (the last id of the previous page).
    pub after: Option<String>,
    /// Rows wanted (capped at [`MAX_SEARCH_ROWS`]).
    pub limit: u32,
}

/// A link as the search table and discovery need it, without schedules.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSummary {
    /// The link.
    pub id: LinkId,
    /// Its products.
    pub products: ProductSet,
    /// Who manages it.
    pub source: LinkSource,
    /// Its state.
    pub state: LinkState,
    /// Why it is parked or paused.
    pub reason: Option<String>,
    /// No longer managed.
    pub removed: bool,
}

/// Fleet-wide read queries; implemented once in SQL for both backends.
#[async_trait]
pub trait FleetQueries: Send + Sync {
    /// Links per state.
    async fn fleet_counts(&self) -> Result<FleetCounts, StoreError>;

    /// Attempts whose intent is at or after `since`, by outcome class.
    async fn attempt_counts_since(&self, since: Timestamp) -> Result<AttemptCounts, StoreError>;

    /// Links with a product due in each `bucket` from `from` to `to`
    /// (`next_due_at`, as the daemon last computed it): about the POSTs due,
    /// since a link's due products share one POST.
    async fn due_histogram(
        &self,
        from: Timestamp,
        to: Timestamp,
        bucket: TimeDelta,
    ) -> Result<Vec<u64>, StoreError>;

    /// Data age per product at `now`; index walks only.
    async fn data_age(&self, now: Timestamp) -> Result<Vec<ProductAge>, StoreError>;

    /// One page of links matching `search`, in id order.
    async fn search_links(&self, search: &LinkSearch) -> Result<Vec<LinkSummary>, StoreError>;

    /// Every link (removed ones too) without schedules, paged internally;
    /// discovery diffs the listing against it.
    async fn link_summaries(&self) -> Result<Vec<LinkSummary>, StoreError>;
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Builds a search statement; parameters are numbered in the order
/// text, state, after, limit (only those present).
pub(crate) fn search_sql(s: &LinkSearch) -> String {
    let mut sql = String::from(
        "SELECT id, products, source, state, reason, removed FROM links WHERE removed = ",
    );
    sql.push_str(if s.removed { "TRUE" } else { "FALSE" });
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if s.state.is_some() {
        sql.push_str(&format!(" AND state = {}", param()));
    }
    if !s.text.is_empty() {
        sql.push_str(&format!(" AND id LIKE {} ESCAPE '\\'", param()));
    }
    if s.after.is_some() {
        sql.push_str(&format!(" AND id > {}", param()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", param()));
    sql
}

pub(crate) fn summary(
    id: String,
    products: i32,
    source: String,
    state: String,
    reason: Option<String>,
    removed: bool,
) -> Result<LinkSummary, StoreError> {
    Ok(LinkSummary {
        id: LinkId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        products: super::records::from_bits(products),
        source: LinkSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown link source {source:?}")))?,
        state: LinkState::parse(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        reason,
        removed,
    })
}

/// Expands [`FleetQueries`] for one backend (`$store` has a `pool`).
macro_rules! impl_fleet_queries {
    ($store:ident, $db:ty) => {
        mod fleet_impl {
            use async_trait::async_trait;
            use chrono::TimeDelta;
            use sqlx::{AssertSqlSafe, Row};

            use super::$store;
            use $crate::domain::{LinkState, Product};
            use $crate::store::fleet::{
                like_pattern, search_sql, summary, AttemptCounts, FleetCounts, FleetQueries,
                LinkSearch, LinkSummary, ProductAge, MAX_SEARCH_ROWS,
            };
            use $crate::store::records::ms;
            use $crate::store::{StoreError, Timestamp};

            fn to_u64(n: i64) -> u64 {
                u64::try_from(n).unwrap_or(0)
            }

            #[async_trait]
            impl FleetQueries for $store {
                async fn fleet_counts(&self) -> Result<FleetCounts, StoreError> {
                    let rows = sqlx::query(
                        "SELECT removed, state, COUNT(*) FROM links GROUP BY removed, state",
                    )
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
                            let s = LinkState::parse(&state)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            *out.by_state.entry(s.as_str()).or_default() += n;
                        }
                    }
                    Ok(out)
                }

                async fn attempt_counts_since(
                    &self,
                    since: Timestamp,
                ) -> Result<AttemptCounts, StoreError> {
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
                        let product = Product::parse(&name)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
                        let (p50, p90, p99, max) = (at(0.5).await?, at(0.9).await?, at(0.99).await?, at(1.0).await?);
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

                async fn search_links(
                    &self,
                    search: &LinkSearch,
                ) -> Result<Vec<LinkSummary>, StoreError> {
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
                            summary(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)
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
                        .bind(&after)
                        .bind($crate::store::sql::PAGE)
                        .fetch_all(&self.pool)
                        .await?;
                        for r in &rows {
                            out.push(summary(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)?);
                        }
                        match out.last() {
                            Some(last) if rows.len() as i64 == $crate::store::sql::PAGE => {
                                after = last.id.as_str().to_owned()
                            }
                            _ => return Ok(out),
                        }
                    }
                }
            }
        }
    };
}

pub(crate) use impl_fleet_queries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }

    #[test]
    fn search_statements_number_only_present_parameters() {
        let s = LinkSearch {
            text: "x".into(),
            after: Some("a".into()),
            limit: 10,
            ..LinkSearch::default()
        };
        assert_eq!(
            search_sql(&s),
            "SELECT id, products, source, state, reason, removed FROM links WHERE removed = FALSE \
             AND id LIKE $1 ESCAPE '\\' AND id > $2 ORDER BY id LIMIT $3"
        );
    }
}
