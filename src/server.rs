//! The daemon's HTTP server (axum): `/metrics` (Prometheus text), `/healthz`
//! (the process loop is alive; never touches the database or MoneyKit, so a
//! slow dependency cannot get the pod killed), `/readyz` (store reachable and
//! a token obtained), `/` and `/links/{id}` (the read-only fleet pages, see
//! [`fleet`]) and `/api/...` (the admin API, see [`admin_api`]).

pub mod admin_api;
pub mod fleet;
mod html;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::daemon::Heartbeat;
use crate::moneykit::MoneyKit;
use crate::store::Store;
use crate::store::health::StoreHealth;

/// How long the loop may stay silent before `/healthz` fails.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Shared handles the handlers read.
#[derive(Clone)]
pub struct AppState {
    metrics: PrometheusHandle,
    store: Arc<dyn Store>,
    client: MoneyKit,
    heartbeat: Heartbeat,
    fleet: fleet::FleetContext,
    store_health: StoreHealth,
}

impl AppState {
    /// Bundles the handles.
    pub fn new(
        metrics: PrometheusHandle,
        store: Arc<dyn Store>,
        client: MoneyKit,
        heartbeat: Heartbeat,
    ) -> Self {
        Self {
            metrics,
            store,
            client,
            heartbeat,
            fleet: fleet::FleetContext::default(),
            store_health: StoreHealth::default(),
        }
    }

    /// Shares the daemon's view of the store (see [`StoreHealth`]), so
    /// `/readyz` fails while writes fail even though reads still work.
    pub fn with_store_health(mut self, health: StoreHealth) -> Self {
        self.store_health = health;
        self
    }

    /// Adds what the fleet pages and the admin API need beyond the handles.
    pub fn with_fleet(mut self, fleet: fleet::FleetContext) -> Self {
        self.fleet = fleet;
        self
    }
}

/// The router, for tests that serve it themselves.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(fleet::routes())
        .merge(admin_api::routes())
        .with_state(state)
}

/// Serves the router plus `extra` routes (the webhook receiver) until
/// `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    extra: Router,
    cancel: CancellationToken,
) {
    let app = router(state).merge(extra);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "server failed");
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    let age = s.heartbeat.age_ms();
    if age <= STALL_LIMIT.as_millis() as i64 {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("loop silent for {age} ms\n"),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await;
    let reason = match store {
        Ok(Ok(())) => s.store_health.problem(),
        Ok(Err(e)) => Some(format!("the store does not answer: {e}")),
        Err(_) => Some("the store did not answer within 2 s".to_owned()),
    };
    let store_ok = reason.is_none();
    let token_ok = s.client.has_fresh_token().await;
    let mut body = serde_json::json!({ "config": true, "store": store_ok, "token": token_ok });
    if let Some(reason) = reason {
        body["reason"] = serde_json::Value::String(reason);
    }
    let status = if store_ok && token_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
