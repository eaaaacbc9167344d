//! The read-only fleet pages on the private listener: `GET /` (counts by
//! state, requests and 429s over the last hour and day, the POSTs due per
//! minute over the next hour, data age per product and a searchable, paged
//! table of links) and `GET /links/{id}` (one link's `explain` view and its
//! history). Server-rendered HTML with inline CSS and SVG, so it works
//! offline with no build step; every number comes from an indexed store
//! query and the table is keyset-paged, so a million links cost what a
//! hundred do. Nothing secret is shown: only ids, states and times.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::AppState;
use super::html::{age, bar_chart, escape, page, time, url_encode};
use crate::clock::Clock;
use crate::domain::{LinkId, LinkState};
use crate::explain::link_status;
use crate::policy::Rules;
use crate::secret::Secret;
use crate::store::fleet::{AttemptCounts, FleetCounts, LinkSearch, ProductAge};
use crate::store::{LinkRecord, StoreError};

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
        }
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
    Ok(Arc::new(Summary {
        as_of: now,
        counts,
        last_hour,
        last_day,
        due_from,
        due_per_minute,
        ages,
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
    requests_section(&mut body, &sum);
    due_section(&mut body, &sum);
    age_section(&mut body, &sum.ages);
    table_section(&mut body, &s, &search, &records, more, now);
    Html(page("linkfresh fleet", &s.store.describe(), now, &body)).into_response()
}

fn counts_section(body: &mut String, c: &FleetCounts) {
    let _ = write!(
        body,
        "<section><h2>Links</h2><div class=\"cards\" id=\"counts\">\
         <div class=\"card\"><a href=\"/\"><b data-count=\"total\">{}</b>total</a></div>",
        c.total()
    );
    for state in LinkState::ALL.map(LinkState::as_str) {
        let n = c.by_state.get(state).copied().unwrap_or(0);
        let _ = write!(
            body,
            "<div class=\"card\"><a href=\"/?state={state}\"><b class=\"s-{state}\" data-count=\"{state}\">{n}</b>{state}</a></div>"
        );
    }
    let _ = write!(
        body,
        "<div class=\"card\"><a href=\"/?state=removed\"><b data-count=\"removed\">{}</b>removed</a></div></div></section>",
        c.removed
    );
}

/// When the cards below were computed; the table is read per request.
fn as_of_line(body: &mut String, s: &AppState, sum: &Summary) {
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"as-of\">Figures as of <time datetime=\"{}\">{}</time> UTC \
         (recomputed when older than {} s); the links table is current.</p>",
        sum.as_of.format("%Y-%m-%dT%H:%M:%SZ"),
        sum.as_of.format("%H:%M:%S"),
        s.fleet.summary_ttl.as_secs_f64()
    );
}

fn requests_section(body: &mut String, sum: &Summary) {
    body.push_str(
        "<section><h2>Refreshes sent</h2><table id=\"requests\"><tr><th></th>\
         <th class=\"n\">POSTs</th><th class=\"n\">429s</th><th class=\"n\">errors</th>\
         <th class=\"n\">no answer yet</th></tr>",
    );
    for (label, c) in [("last hour", sum.last_hour), ("last day", sum.last_day)] {
        let _ = write!(
            body,
            "<tr><th>{label}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            c.sent, c.rate_limited, c.errors, c.pending
        );
    }
    body.push_str("</table></section>");
}

fn due_section(body: &mut String, sum: &Summary) {
    let total: u64 = sum.due_per_minute.iter().sum();
    let peak = sum.due_per_minute.iter().copied().max().unwrap_or(0);
    let from = sum.due_from;
    let chart = bar_chart(&sum.due_per_minute, 1100, 160, 10, |i| {
        (from + TimeDelta::minutes(i as i64))
            .format("%H:%M")
            .to_string()
    });
    let _ = write!(
        body,
        "<section><h2>POSTs due in the next hour, per minute</h2>\
         <p class=\"muted\" id=\"due-summary\">{total} links due; busiest minute {peak}. \
         Times are UTC; each bar counts links with a product due in that minute.</p>{chart}</section>"
    );
}

fn age_section(body: &mut String, ages: &[ProductAge]) {
    body.push_str(
        "<section><h2>Data age per product (since last requested)</h2><table id=\"ages\"><tr>\
         <th>product</th><th class=\"n\">links</th><th class=\"n\">never requested</th>\
         <th class=\"n\">median</th><th class=\"n\">p90</th><th class=\"n\">p99</th><th class=\"n\">oldest</th></tr>",
    );
    for a in ages {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            a.product,
            a.rows,
            a.never,
            age(a.p50),
            age(a.p90),
            age(a.p99),
            age(a.max)
        );
    }
    if ages.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">no products yet</td></tr>");
    }
    body.push_str("</table></section>");
}

fn table_section(
    body: &mut String,
    s: &AppState,
    search: &LinkSearch,
    records: &[LinkRecord],
    more: bool,
    now: DateTime<Utc>,
) {
    let selected = if search.removed {
        "removed"
    } else {
        search.state.map(|s| s.as_str()).unwrap_or("")
    };
    let _ = write!(
        body,
        "<section><h2>Links</h2><form method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"link id contains…\" size=\"40\">\
         <select name=\"state\"><option value=\"\">live links, any state</option>",
        escape(&search.text)
    );
    for state in LinkState::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(std::iter::once("removed"))
    {
        let sel = if state == selected { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{state}\"{sel}>{state}</option>");
    }
    body.push_str(
        "</select><button type=\"submit\">Search</button></form><table id=\"links\"><tr><th>link</th><th>state</th>\
         <th>source</th><th>product</th><th>last requested</th><th>next due</th><th>why</th></tr>",
    );
    let rules = s.fleet.rules();
    for rec in records {
        let status = link_status(rec, &rules, now);
        let span = status.products.len().max(1);
        let _ = write!(
            body,
            "<tr class=\"link\"><td rowspan=\"{span}\"><a href=\"/links/{}\">{}</a></td>\
             <td rowspan=\"{span}\" class=\"s-{}\">{}</td><td rowspan=\"{span}\">{}</td>",
            url_encode(rec.id.as_str()),
            escape(rec.id.as_str()),
            rec.state,
            rec.state,
            rec.source
        );
        if status.products.is_empty() {
            body.push_str("<td colspan=\"4\" class=\"muted\">no products</td></tr>");
        }
        for (i, p) in status.products.iter().enumerate() {
            if i > 0 {
                body.push_str("<tr>");
            }
            let _ = write!(
                body,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.product,
                time(p.last_requested_at),
                time(p.next_due_at),
                escape(&p.why_text)
            );
        }
    }
    if records.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">no links match</td></tr>");
    }
    body.push_str("</table>");
    if let (true, Some(last)) = (more, records.last()) {
        let _ = write!(
            body,
            "<p><a id=\"next\" href=\"/?q={}&amp;state={}&amp;after={}\">next {PAGE_LINKS} →</a></p>",
            url_encode(&search.text),
            url_encode(selected),
            url_encode(last.id.as_str())
        );
    }
    body.push_str("</section>");
}

async fn link_page(State(s): State<AppState>, Path(raw): Path<String>) -> Response {
    let id = match LinkId::parse(&raw) {
        Ok(id) => id,
        Err(e) => return failure(&s, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let rec = match s.store.load_link(&id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            return failure(
                &s,
                StatusCode::NOT_FOUND,
                &format!("No link {id} in the store."),
            );
        }
        Err(e) => return store_failure(&s, &e),
    };
    let attempts = match s.store.attempts(&id, HISTORY_ROWS).await {
        Ok(a) => a,
        Err(e) => return store_failure(&s, &e),
    };
    let now = s.fleet.clock.now();
    let status = link_status(&rec, &s.fleet.rules(), now);
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>Link <code id=\"link-id\">{}</code></h2><p>state <b class=\"s-{}\" id=\"state\">{}</b>{} · \
         managed by <b>{}</b> · first seen {} · last changed {}</p>",
        escape(rec.id.as_str()),
        rec.state,
        rec.state,
        rec.reason
            .as_deref()
            .map(|r| format!(" ({})", escape(r)))
            .unwrap_or_default(),
        rec.source,
        time(Some(rec.created_at)),
        time(Some(rec.updated_at)),
    );
    if rec.removed {
        body.push_str("<p><b>Removed</b>: no longer refreshed (history kept).</p>");
    }
    if let Some(b) = rec.backoff_until.filter(|b| *b > now) {
        let _ = write!(
            body,
            "<p>Link backoff until {} after {} consecutive failures.</p>",
            time(Some(b)),
            rec.failures
        );
    }
    body.push_str(
        "</section><section><h2>Explain</h2><table id=\"explain\"><tr><th>product</th><th>last requested</th>\
         <th>server seen</th><th>window ends</th><th>next due</th><th>why</th></tr>",
    );
    for p in &status.products {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td></tr>",
            p.product,
            time(p.last_requested_at),
            time(p.server_seen_at),
            time(p.window_end),
            time(p.next_due_at),
            escape(&p.why_text)
        );
    }
    body.push_str(
        "</table></section><section><h2>History</h2><table id=\"history\"><tr><th>sent</th><th>products</th>\
         <th>outcome</th><th class=\"n\">status</th><th>answered</th><th>detail</th></tr>",
    );
    for a in &attempts {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            time(Some(a.intent_at)),
            a.products.to_list(),
            escape(
                a.outcome
                    .as_deref()
                    .unwrap_or("no outcome (counted as sent)")
            ),
            a.status.map(|s| s.to_string()).unwrap_or_default(),
            time(a.finished_at),
            escape(a.detail.as_deref().unwrap_or("")),
        );
    }
    if attempts.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"muted\">no requests yet</td></tr>");
    }
    body.push_str("</table></section>");
    Html(page(
        &format!("linkfresh link {id}"),
        &s.store.describe(),
        now,
        &body,
    ))
    .into_response()
}
