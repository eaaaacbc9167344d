//! The read-only fleet pages on the private listener: `GET /` (counts by
//! state, requests and 429s over the last hour and day, the POSTs due per
//! minute over the next hour, data age per product, the outbound events'
//! backlog and failures when `[events]` is set, and a searchable, paged
//! table of links) and `GET /links/{id}` (one link's `explain` view and its
//! history). Server-rendered HTML with inline CSS and SVG, so it works
//! offline with no build step; every number comes from an indexed store
//! query and the table is keyset-paged, so a million links cost what a
//! hundred do. Nothing secret is shown: only ids, states and times.

mod budget_card;
mod events_section;
mod link_page;
mod sections;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use self::link_page::link_page;
use self::sections::{
    age_section, as_of_line, counts_section, due_section, profile_age_section, requests_section,
    table_section,
};
use super::AppState;
use super::html::{escape, page};
use crate::clock::Clock;
use crate::config::BudgetConfig;
use crate::domain::LinkState;
use crate::policy::Rules;
use crate::policy::budget::standing;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::fleet::{AttemptCounts, FleetCounts, LinkSearch, ProductAge};

/// Links per page of the table.
pub const PAGE_LINKS: u32 = 50;
/// Attempts shown on a link's page.
pub const HISTORY_ROWS: u32 = 100;

/// What the fleet pages and the admin API need beside the store: the policy
/// rules (to explain), the admin token and the clock. Built by the
/// composition root (`app`).
#[derive(Clone)]
pub struct FleetContext {
    /// The rules in force, as the daemon's loop last published them (at
    /// start, then after every reload), so that a link is explained with the
    /// limits it is scheduled with (issue 15: after a SIGHUP the pages used
    /// to explain with the limits of the configuration at start).
    rules: watch::Receiver<Arc<Rules>>,
    /// Bearer token of `/api`; `None` turns the API off.
    pub admin_token: Option<Secret>,
    /// The daemon's clock.
    pub clock: Clock,
    /// How long the fleet-wide aggregates are reused; an older value is
    /// never served but recomputed first, so a million-link fleet is not
    /// re-counted on every page load and no page shows figures older than
    /// this plus one recomputation (see `summary`).
    pub summary_ttl: Duration,
    /// The last aggregates and when they were computed; the lock is held
    /// while recomputing, so concurrent page loads share one computation.
    cache: Arc<Mutex<Option<Cached>>>,
    /// `[budget]` in force, as the daemon's loop last published it: the
    /// budget card, and links explained as waiting for budget. Like
    /// `rules`, a reload's new budget reaches the pages too.
    budget: watch::Receiver<Option<BudgetConfig>>,
    /// The data age per profile, as the daemon's gauge pass left it.
    pub(crate) profile_ages: crate::profile_ages::ProfileAges,
}

/// Aggregates and the instant they were computed.
type Cached = (Instant, Arc<Summary>);

impl FleetContext {
    /// A context whose aggregates are recomputed when older than 2 s.
    pub fn new(
        rules: watch::Receiver<Arc<Rules>>,
        admin_token: Option<Secret>,
        clock: Clock,
    ) -> Self {
        Self {
            rules,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            clock,
            summary_ttl: Duration::from_secs(2),
            cache: Arc::default(),
            budget: watch::channel(None).1,
            profile_ages: Default::default(),
        }
    }

    /// One link's `explain` view with the rules in force and, with a
    /// budget, what is due now shown as waiting for it when it must.
    pub async fn status_of(
        &self,
        store: &dyn crate::store::Store,
        rec: &crate::store::LinkRecord,
        now: DateTime<Utc>,
    ) -> Result<crate::explain::LinkStatus, StoreError> {
        let budget = self.budget();
        let usage = match &budget {
            Some(b) => crate::explain::budget_usage(store, &b.budget, now).await?,
            None => Vec::new(),
        };
        let budget = budget.as_ref().map(|b| (&b.budget, &usage[..]));
        Ok(crate::explain::link_status_within(
            rec,
            &self.rules(),
            budget,
            now,
        ))
    }

    /// The same context following the `[budget]` the daemon publishes.
    pub fn with_budget(mut self, budget: watch::Receiver<Option<BudgetConfig>>) -> Self {
        self.budget = budget;
        self
    }

    /// The same context reading the daemon's per-profile data age.
    pub(crate) fn with_profile_ages(mut self, ages: crate::profile_ages::ProfileAges) -> Self {
        self.profile_ages = ages;
        self
    }

    /// The `[budget]` in force now.
    pub fn budget(&self) -> Option<BudgetConfig> {
        self.budget.borrow().clone()
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.borrow().clone()
    }
}

/// The fleet-wide numbers of the page.
#[derive(Debug)]
struct Summary {
    /// When they were computed (the clock's `now`), shown as "as of".
    as_of: DateTime<Utc>,
    counts: FleetCounts,
    last_hour: AttemptCounts,
    last_day: AttemptCounts,
    due_from: DateTime<Utc>,
    due_per_minute: Vec<u64>,
    ages: Vec<ProductAge>,
    budget: Option<budget_card::BudgetFigures>,
}

/// `/` and `/links/{id}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/links/{id}", get(link_page))
}

/// The fleet-wide numbers, at most `summary_ttl` old plus the time of one
/// recomputation (issue 14: serving the value computed at start to the
/// first visitor, however old, showed "0 POSTs" above rows seconds old).
///
/// Decision: recompute on demand, bounded, rather than on a background
/// period. With a million links the aggregates take about a second, so a
/// page load never waits for more than one computation and the store does
/// at most one per `summary_ttl` however many people watch; an unwatched
/// daemon computes nothing. Concurrent loads wait on the same computation
/// (the cache lock) instead of starting their own.
async fn summary(s: &AppState) -> Result<Arc<Summary>, StoreError> {
    let mut cache = s.fleet.cache.lock().await;
    if let Some((at, sum)) = cache.as_ref()
        && at.elapsed() < s.fleet.summary_ttl
    {
        return Ok(sum.clone());
    }
    let fresh = compute_summary(s).await?;
    *cache = Some((Instant::now(), fresh.clone()));
    Ok(fresh)
}

async fn compute_summary(s: &AppState) -> Result<Arc<Summary>, StoreError> {
    let now = s.fleet.clock.now();
    let store = &s.store;
    let due_from = now;
    let (counts, last_hour, last_day, due_per_minute, ages) = tokio::try_join!(
        store.fleet_counts(),
        store.attempt_counts_since(now - TimeDelta::hours(1)),
        store.attempt_counts_since(now - TimeDelta::days(1)),
        store.due_histogram(
            due_from,
            due_from + TimeDelta::hours(1),
            TimeDelta::minutes(1)
        ),
        store.data_age(now),
    )?;
    let budget = match &s.fleet.budget() {
        Some(config) => {
            let usage = crate::explain::budget_usage(&**store, &config.budget, now).await?;
            Some(budget_card::BudgetFigures {
                standing: standing(&config.budget, &usage, now),
                config: config.clone(),
                usage,
            })
        }
        None => None,
    };
    Ok(Arc::new(Summary {
        as_of: now,
        counts,
        last_hour,
        last_day,
        due_from,
        due_per_minute,
        ages,
        budget,
    }))
}

fn failure(s: &AppState, status: StatusCode, what: &str) -> Response {
    let body = format!("<section><h2>{}</h2></section>", escape(what));
    (
        status,
        Html(page(
            "linkfresh",
            &s.store.describe(),
            s.fleet.clock.now(),
            &body,
        )),
    )
        .into_response()
}

fn store_failure(s: &AppState, e: &StoreError) -> Response {
    tracing::error!(error = %e, "fleet page: store query failed");
    failure(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "The store could not be read; see the daemon's log.",
    )
}

/// Parses the table's filters; unknown states are reported, not ignored.
fn search_from(params: &HashMap<String, String>) -> Result<LinkSearch, String> {
    let mut search = LinkSearch {
        text: params
            .get("q")
            .map(|q| q.trim().to_owned())
            .unwrap_or_default(),
        after: params.get("after").filter(|a| !a.is_empty()).cloned(),
        limit: PAGE_LINKS + 1,
        ..LinkSearch::default()
    };
    match params.get("state").map(String::as_str).unwrap_or("") {
        "" => {}
        "removed" => search.removed = true,
        other => search.state = Some(LinkState::parse(other).map_err(|e| e.to_string())?),
    }
    Ok(search)
}

async fn index(
    State(s): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let search = match search_from(&params) {
        Ok(search) => search,
        Err(e) => return failure(&s, StatusCode::BAD_REQUEST, &e),
    };
    let sum = match summary(&s).await {
        Ok(sum) => sum,
        Err(e) => return store_failure(&s, &e),
    };
    let mut rows = match s.store.search_links(&search).await {
        Ok(rows) => rows,
        Err(e) => return store_failure(&s, &e),
    };
    let more = rows.len() > PAGE_LINKS as usize;
    rows.truncate(PAGE_LINKS as usize);
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        match s.store.load_link(&row.id).await {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {}
            Err(e) => return store_failure(&s, &e),
        }
    }
    let now = s.fleet.clock.now();
    let mut body = String::new();
    as_of_line(&mut body, &s, &sum);
    counts_section(&mut body, &sum.counts);
    if let Some(b) = &sum.budget {
        budget_card::budget_section(&mut body, b);
    }
    requests_section(&mut body, &sum);
    due_section(&mut body, &sum);
    age_section(&mut body, &sum.ages);
    profile_age_section(&mut body, &s.fleet.profile_ages.latest());
    if let Err(e) = events_section::events_section(&mut body, &*s.store, now).await {
        return store_failure(&s, &e);
    }
    table_section(&mut body, &s, &sum, &search, &records, more, now);
    Html(page("linkfresh fleet", &s.store.describe(), now, &body)).into_response()
}
