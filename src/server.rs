//! The daemon's HTTP server (axum): `/metrics` (Prometheus text), `/healthz`
//! (the process loop is alive; never touches the database or MoneyKit, so a
//! slow dependency cannot get the pod killed), `/readyz` (store reachable and
//! a token obtained), `/` and `/links/{id}` (the read-only fleet pages, see
//! [`fleet`]) and `/api/...` (the admin API, see [`admin_api`]).

pub(crate) mod admin_api;
pub(crate) mod demand_api;
pub mod fleet;
mod html;
pub(crate) mod listener;
pub(crate) mod replicas;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Heartbeat;
use crate::moneykit::MoneyKit;
use crate::store::Store;
use crate::store::health::StoreHealth;

/// The largest request body the main listener reads (the admin API takes one
/// link's JSON, well under 1 KiB); axum's default is 2 MB. The webhook route
/// keeps its own, smaller limit.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

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
    /// Bundles the handles; `fleet` is what the fleet pages and the admin
    /// API need beyond them.
    pub fn new(
        metrics: PrometheusHandle,
        store: Arc<dyn Store>,
        client: MoneyKit,
        heartbeat: Heartbeat,
        fleet: fleet::FleetContext,
    ) -> Self {
        Self {
            metrics,
            store,
            client,
            heartbeat,
            fleet,
            store_health: StoreHealth::default(),
        }
    }

    /// Shares the daemon's view of the store (see [`StoreHealth`]), so
    /// `/readyz` fails while writes fail even though reads still work.
    pub fn with_store_health(mut self, health: StoreHealth) -> Self {
        self.store_health = health;
        self
    }
}

/// The router, for tests that serve it themselves.
pub fn router(state: AppState) -> Router {
    routes().with_state(state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(fleet::routes())
        .merge(replicas::routes())
        .merge(admin_api::routes())
}

/// Whether a `POST` route at `path` (the webhook receiver) can join this
/// router. axum reports an overlapping or malformed route only by
/// panicking while the router is built, which used to happen inside the
/// server task after start: the loop kept sending with no health, metrics,
/// admin API or webhooks. `app::Application::build` calls this first, so the
/// mistake is a configuration error before anything is sent; catching the
/// panic is the only way to ask axum.
pub(crate) fn check_extra_post_route(path: &str) -> Result<(), String> {
    let probe = || {
        let _ = routes().merge(Router::<AppState>::new().route(path, post(|| async {})));
    };
    std::panic::catch_unwind(probe).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the route cannot be added".to_owned())
    })
}

/// Serves the router plus `extra` routes (the webhook receiver) until
/// `cancel` fires, with the limits of [`listener`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    extra: Router,
    cancel: CancellationToken,
) {
    let app = router(state)
        .merge(extra)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY));
    listener::serve(listener, app, cancel).await;
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
