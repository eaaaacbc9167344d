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

/// Fleet-wide read queries; implemented once in SQL for both backends
/// (`store/sql/fleet.rs`).
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
