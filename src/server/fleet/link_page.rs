//! `GET /links/{id}`: one link's page, its `explain` view (with the rules in
//! force now) and its history.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::{HISTORY_ROWS, failure, store_failure};
use crate::domain::LinkId;
use crate::server::AppState;
use crate::server::html::{escape, page, time};

/// Renders the page of the link named in the path.
pub(super) async fn link_page(State(s): State<AppState>, Path(raw): Path<String>) -> Response {
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
    let status = match s.fleet.status_of(&*s.store, &rec, now).await {
        Ok(status) => status,
        Err(e) => return store_failure(&s, &e),
    };
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
