//! The replicas of a fleet sharing a PostgreSQL database: `GET /replicas`
//! (a page: each replica, its partitions, heartbeat and lease ages) and
//! `GET /api/replicas` (the same as JSON, behind the admin token like the
//! rest of `/api`). On SQLite both say that one daemon owns every link.

use std::fmt::Write as _;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::admin_api::Admin;
use super::html::{escape, page};
use crate::store::ownership::{FleetView, ranges};

/// `/replicas` and `/api/replicas`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/replicas", get(replicas_page))
        .route("/api/replicas", get(replicas_json))
}

/// The view, `None` on a store without partitioned ownership (SQLite).
async fn view(s: &AppState) -> Result<Option<FleetView>, Response> {
    let Some(ownership) = s.store.ownership() else {
        return Ok(None);
    };
    ownership.view().await.map(Some).map_err(|e| {
        tracing::error!(error = %e, "replicas page: store query failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store could not be read; see the daemon's log",
        )
            .into_response()
    })
}

/// Milliseconds as the page shows an age: `1.2s`, `-3.0s` when past.
fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

async fn replicas_page(State(s): State<AppState>) -> Response {
    let now = s.fleet.clock.now();
    let mut body = String::from("<section><h2>Replicas</h2>");
    match view(&s).await {
        Err(r) => return r,
        Ok(None) => body.push_str(
            "<p>One daemon on a SQLite file owns every link; partitioned ownership is for several replicas on PostgreSQL.</p>",
        ),
        Ok(Some(v)) => {
            let _ = write!(
                body,
                "<p id=\"partitions\">{} partitions; unheld: {}</p><table id=\"replicas\"><thead><tr>\
                 <th>replica</th><th>partitions</th><th>held</th><th>heartbeat age</th>\
                 <th>lease left</th><th>up</th><th>rebalances</th></tr></thead><tbody>",
                v.partitions,
                escape(&ranges(&v.unheld))
            );
            for r in &v.replicas {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td data-held=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.id),
                    r.partitions.len(),
                    r.partitions.len(),
                    escape(&ranges(&r.partitions)),
                    secs(r.heartbeat_age_ms),
                    secs(r.lease_left_ms),
                    secs(r.age_ms),
                    r.rebalances
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body.push_str("</section>");
    Html(page("linkfresh replicas", &s.store.describe(), now, &body)).into_response()
}

async fn replicas_json(_: Admin, State(s): State<AppState>) -> Response {
    match view(&s).await {
        Err(r) => r,
        Ok(v) => Json(serde_json::json!({
            "partitioned": v.is_some(),
            "fleet": v,
        }))
        .into_response(),
    }
}
