//! The verified MoneyKit webhook receiver: `POST /webhooks/moneykit` (path
//! configurable with `[server] webhook_path`).
//!
//! MoneyKit tells us when a refresh completed or failed and when a link was
//! reconnected or deleted; applying that at once keeps the schedule honest
//! (a server time that is later than ours wins) and un-parks a reconnected
//! link without waiting for the slow `GET /links/{id}` check.
//!
//! A delivery is believed only after its `MoneyKit-Signature` JWT verifies
//! (see [`verify`]): ES256 with a key from MoneyKit's JWKS chosen by `kid`,
//! a body hash that matches, and `iat`/`exp`/`webhook_timestamp` within the
//! tolerance. Then its `webhook_idempotency_key` is remembered in the store
//! so a repeat is acknowledged but not applied again.
//!
//! | Delivery                             | Answer | Store            |
//! |--------------------------------------|--------|------------------|
//! | body over `max_body`                 | 413    | unchanged        |
//! | not verified (any reason)            | 400    | unchanged        |
//! | verified, key seen before            | 200    | unchanged        |
//! | verified, unknown link or event      | 200    | key remembered   |
//! | verified, applied                    | 200    | changed          |
//! | store failed                         | 503    | key forgotten, so the retry applies it |
//!
//! # Exposing it
//!
//! MoneyKit must reach this route from the internet while `/metrics` and
//! `/api` should not be reachable at all. `[server] webhook_listen` opens a
//! second listener that serves *only* this route (see [`serve`]); bind it
//! to loopback or a private address behind a TLS-terminating reverse proxy
//! or load balancer (MoneyKit requires `https://` webhook URLs), and leave
//! `[server] listen` private:
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:9464"          # metrics, health, admin API: private
//! webhook_listen = "127.0.0.1:9465"  # only POST /webhooks/moneykit; the proxy forwards here
//! webhook_path = "/webhooks/moneykit"
//! ```
//!
//! Prometheus: `linkfresh_webhooks_total{event,result}` and
//! `linkfresh_webhook_transactions_updates_total`.

mod event;
mod jwks;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::TimeDelta;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::store::Store;

use event::Envelope;

/// The header that carries the JWT.
pub const SIGNATURE_HEADER: &str = "moneykit-signature";
/// The header that identifies a delivery across its attempts (logged).
pub const DELIVERY_TOKEN_HEADER: &str = "moneykit-delivery-token";
/// The header that numbers a delivery's attempts (logged).
pub const DELIVERY_ATTEMPT_HEADER: &str = "moneykit-delivery-attempt";
/// The default route, as DESIGN.md documents it.
pub const DEFAULT_PATH: &str = crate::config::DEFAULT_WEBHOOK_PATH;

/// Where MoneyKit publishes its webhook keys, for a given API base URL.
pub fn jwks_url(base_url: &str) -> String {
    format!("{}/.well-known/jwks.json", base_url.trim_end_matches('/'))
}

/// Tunables of the receiver; the defaults follow MONEYKIT_API.md.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The route (`[server] webhook_path`).
    pub path: String,
    /// Larger bodies get 413 before anything is parsed (MoneyKit's are < 2 KiB).
    pub max_body: usize,
    /// Leeway for `iat`/`exp` and tolerance for `webhook_timestamp`.
    pub leeway: Duration,
    /// How long an idempotency key is remembered; longer than MoneyKit retries.
    pub dedupe_for: Duration,
    /// The JWKS is re-fetched at the latest after this long.
    pub jwks_max_age: Duration,
    /// At most one JWKS fetch per this interval, whatever callers send.
    pub jwks_min_refetch: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            max_body: 64 * 1024,
            leeway: Duration::from_secs(5 * 60),
            dedupe_for: Duration::from_secs(7 * 24 * 3600),
            jwks_max_age: Duration::from_secs(24 * 3600),
            jwks_min_refetch: Duration::from_secs(10),
        }
    }
}

/// The receiver's handles: store, key cache, clock and settings; cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    jwks: jwks::Jwks,
    clock: Clock,
    settings: WebhookSettings,
}

impl WebhookState {
    /// Bundles the handles; `jwks_url` is usually [`jwks_url`] of the API base URL.
    pub fn new(
        store: Arc<dyn Store>,
        jwks_url: String,
        http: reqwest::Client,
        clock: Clock,
        settings: WebhookSettings,
    ) -> Self {
        let jwks = jwks::Jwks::new(
            jwks_url,
            http,
            settings.jwks_max_age,
            settings.jwks_min_refetch,
        );
        Self {
            inner: Arc::new(Inner {
                store,
                jwks,
                clock,
                settings,
            }),
        }
    }
}

/// The webhook route alone, to merge into the daemon's router or to serve
/// on the public listener.
pub fn router(state: WebhookState) -> Router {
    let path = state.inner.settings.path.clone();
    let limit = state.inner.settings.max_body;
    Router::new()
        .route(&path, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves only the webhook route on `listener` (`[server] webhook_listen`)
/// until `cancel` fires, so the public side exposes nothing else; with the
/// same header timeout and connection limit as the main listener (see
/// [`crate::server::listener`]): this is the side the internet reaches.
pub async fn serve(listener: TcpListener, state: WebhookState, cancel: CancellationToken) {
    crate::server::listener::serve(listener, router(state), cancel).await;
}

/// A header as a short printable string: these come from anyone.
fn header_field(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(128)
                .collect()
        })
        .unwrap_or_default()
}

fn count(event: &'static str, result: &'static str) {
    metrics::counter!("linkfresh_webhooks_total", "event" => event, "result" => result)
        .increment(1);
}

async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let span = tracing::info_span!(
        "webhook",
        delivery_token = %header_field(&headers, DELIVERY_TOKEN_HEADER),
        delivery_attempt = %header_field(&headers, DELIVERY_ATTEMPT_HEADER),
    );
    handle(&state.inner, &headers, body).instrument(span).await
}

async fn handle(s: &Inner, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let result = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "unreadable"
            };
            tracing::warn!(%status, result, "webhook body refused");
            count("unverified", result);
            return (status, "body refused\n").into_response();
        }
    };
    let now = s.clock.now();
    let leeway = TimeDelta::from_std(s.settings.leeway).unwrap_or(TimeDelta::MAX);
    let Some(token) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return reject(verify::Rejection::MissingSignature);
    };
    if let Err(r) = verify::verify(&s.jwks, token.trim(), &body, now, leeway).await {
        return reject(r);
    }
    let env: Envelope = match serde_json::from_slice(&body) {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(error = %e, "verified webhook body is not a MoneyKit event");
            count("unverified", "malformed");
            return (StatusCode::BAD_REQUEST, "malformed event\n").into_response();
        }
    };
    let event = env.event_label();
    let key = env.webhook_idempotency_key.as_str();
    if key.is_empty() || key.len() > 256 {
        tracing::warn!(event, "webhook idempotency key empty or too long");
        count(event, "malformed");
        return (StatusCode::BAD_REQUEST, "malformed event\n").into_response();
    }
    if !env
        .timestamp()
        .is_some_and(|ts| event::timely(ts, now, leeway))
    {
        tracing::warn!(event, "webhook_timestamp missing or outside the tolerance");
        count(event, verify::Rejection::Stale.label());
        return (StatusCode::BAD_REQUEST, "stale\n").into_response();
    }
    let expires = now + TimeDelta::from_std(s.settings.dedupe_for).unwrap_or(TimeDelta::MAX);
    match s.store.remember_delivery(key, expires, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                event,
                idempotency_key = key,
                "duplicate webhook delivery dropped"
            );
            count(event, "duplicate");
            return (StatusCode::OK, "duplicate\n").into_response();
        }
        Err(e) => return store_failed(event, &e),
    }
    match event::apply(s.store.as_ref(), &env, now).await {
        Ok(applied) => {
            tracing::info!(
                event,
                idempotency_key = key,
                result = applied.label(),
                "webhook handled"
            );
            count(event, applied.label());
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(e) => {
            if let Err(e) = s.store.forget_delivery(key).await {
                tracing::error!(error = %e, "could not forget the idempotency key; MoneyKit's retry will be dropped");
            }
            store_failed(event, &e)
        }
    }
}

fn reject(r: verify::Rejection) -> Response {
    tracing::warn!(
        reason = r.label(),
        "webhook rejected: not verifiably from MoneyKit"
    );
    count("unverified", r.label());
    (StatusCode::BAD_REQUEST, "not verified\n").into_response()
}

fn store_failed(event: &'static str, e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, cause = ?std::error::Error::source(e), event, "webhook not applied: store failed");
    count(event, "store_error");
    (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response()
}
