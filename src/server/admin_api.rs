//! The admin HTTP API, for the application that owns the links: add, change,
//! remove, pause, resume and refresh links without editing the config file,
//! and read a link's `explain` view as JSON. Links added here are stored as
//! [`LinkSource::Api`], so a config reload never removes them.
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/links` `{"id","products",["every"],["cron"],["profile"]}` | 201 new / 200 changed, the link view |
//! | `GET /api/links/{id}` | 200, the link view |
//! | `DELETE /api/links/{id}` | 200 `{"link","removed":true}` |
//! | `POST /api/links/{id}/pause` / `resume` | 200, the link view |
//! | `POST /api/links/{id}/refresh` `[{"max_age","products"}]` | 200 fresh / 202 queued (see [`super::demand_api`]) |
//! | `POST /api/links/{id}/activity` | 200 `{"link","profile","last_activity_at","active_until"}` |
//!
//! Every request needs `Authorization: Bearer <[server] admin_token>`
//! (401 otherwise; tokens are compared in constant time). With no token
//! configured the API is off and answers 503 `admin_api_disabled`: a 404
//! would be mistaken for "no such link". Errors are JSON
//! `{"error": code, "message": text}`: 400 malformed body or link id,
//! 422 unknown product or bad cadence, 404 unknown link, 409 a link the
//! config file manages (change it there), 500 store failures.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::{LinkId, Product, ProductSet};
use crate::duration::{self, parse_duration_bounded};
use crate::explain::LinkStatus;
use crate::policy::cadences::{cadence_to_json, with_profile};
use crate::policy::{Cadence, CronSchedule};
use crate::store::{AttemptRecord, LinkRecord, LinkSource, LinkSpec, StoreError};

/// Attempts included in a link view.
const VIEW_ATTEMPTS: u32 = 20;

/// `/api/...`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/links", post(upsert))
        .route("/api/links/{id}", get(view).delete(remove))
        .route("/api/links/{id}/pause", post(pause))
        .route("/api/links/{id}/resume", post(resume))
        .merge(super::demand_api::routes())
}

/// An API failure: an HTTP status and a JSON body naming what went wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn not_found(id: &LinkId) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "link_not_found",
            format!("no link {id} in the store (or it was removed)"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "admin API: store failure");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            format!("the store failed: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.code, "message": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Proof that the request carried the admin token; every handler takes it.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &s.fleet.admin_token else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_api_disabled",
                "the admin API is off: set [server] admin_token or admin_token_file and restart",
            ));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(given) if tokens_match(given, expected.expose()) => Ok(Admin),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is wrong",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin token>",
            )),
        }
    }
}

/// Compares two tokens in time independent of where they differ (and of
/// their lengths): both are hashed first, then every byte is compared.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub(super) fn parse_id(raw: &str) -> Result<LinkId, ApiError> {
    LinkId::parse(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_link_id", e.to_string()))
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

pub(super) fn parse_products(names: &[String]) -> Result<ProductSet, ApiError> {
    names
        .iter()
        .map(|n| Product::parse(n))
        .collect::<Result<ProductSet, _>>()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_product",
                e.to_string(),
            )
        })
}

/// One attempt in a link view.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    /// When the POST was sent.
    pub sent_at: DateTime<Utc>,
    /// Its products.
    pub products: ProductSet,
    /// Outcome label (`None`: no answer recorded; counted as sent).
    pub outcome: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Operator detail.
    pub detail: Option<String>,
    /// When the answer was recorded.
    pub answered_at: Option<DateTime<Utc>>,
}

/// `GET /api/links/{id}`: the `explain` view plus who manages the link and
/// its recent history.
#[derive(Debug, Serialize)]
pub struct LinkView {
    /// Policy view (state, products with last requested, due, why).
    #[serde(flatten)]
    pub status: LinkStatus,
    /// `config`, `api` or `discovery`.
    pub source: &'static str,
    /// No longer refreshed.
    pub removed: bool,
    /// Newest first.
    pub recent_attempts: Vec<AttemptView>,
}

async fn link_view(s: &AppState, rec: &LinkRecord) -> Result<LinkView, ApiError> {
    let attempts: Vec<AttemptRecord> = s.store.attempts(&rec.id, VIEW_ATTEMPTS).await?;
    Ok(LinkView {
        status: s
            .fleet
            .status_of(&*s.store, rec, s.fleet.clock.now())
            .await?,
        source: rec.source.as_str(),
        removed: rec.removed,
        recent_attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                sent_at: a.intent_at,
                products: a.products,
                outcome: a.outcome,
                status: a.status,
                detail: a.detail,
                answered_at: a.finished_at,
            })
            .collect(),
    })
}

/// A live (not removed) link, or 404.
pub(super) async fn live(s: &AppState, id: &LinkId) -> Result<LinkRecord, ApiError> {
    match s.store.load_link(id).await? {
        Some(rec) if !rec.removed => Ok(rec),
        _ => Err(ApiError::not_found(id)),
    }
}

fn config_managed(id: &LinkId) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "managed_by_config",
        format!("link {id} is listed in the configuration file; change it there"),
    )
}

/// Body of `POST /api/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    id: String,
    products: Vec<String>,
    #[serde(default)]
    every: BTreeMap<String, String>,
    #[serde(default)]
    cron: BTreeMap<String, String>,
    /// A `[profiles.NAME]` (or `default`) the link follows, whatever its tags.
    profile: Option<String>,
}

fn cadence(
    s: &AppState,
    body: &LinkBody,
    products: ProductSet,
) -> Result<Option<String>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_cadence", m);
    let product = |name: &str, key: &str| -> Result<Product, ApiError> {
        let p = Product::parse(name).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_product",
                format!("{key}: {e}"),
            )
        })?;
        if !products.contains(p) {
            return Err(bad(format!(
                "{key}.{p}: {p} is not among the link's products"
            )));
        }
        Ok(p)
    };
    let mut out = BTreeMap::new();
    for (name, raw) in &body.every {
        let p = product(name, "every")?;
        let every = parse_duration_bounded(raw)
            .map(duration::to_delta)
            .map_err(|e| bad(format!("every.{p}: {raw:?}: {e}")))?;
        let limit = s.fleet.rules().limits.window(p);
        if every < limit {
            return Err(bad(format!(
                "every.{p}: {raw} is shorter than the product's limit of {}",
                humantime::format_duration(limit.to_std().unwrap_or_default())
            )));
        }
        out.insert(p, Cadence::Every(every));
    }
    for (name, raw) in &body.cron {
        let p = product(name, "cron")?;
        if out.contains_key(&p) {
            return Err(bad(format!("{p} has both every and cron; choose one")));
        }
        let c = CronSchedule::parse(raw).map_err(|e| bad(format!("cron.{p}: {e}")))?;
        out.insert(p, Cadence::Cron(c));
    }
    Ok(cadence_to_json(&out))
}

async fn upsert(_: Admin, State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let body: LinkBody = parse_json(&body)?;
    let id = parse_id(&body.id)?;
    let products = parse_products(&body.products)?;
    if products.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_products",
            "products must name at least one product",
        ));
    }
    let cadence = cadence(&s, &body, products)?;
    if let Some(name) = &body.profile {
        let rules = s.fleet.rules();
        if rules.profiles.get(name).is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_profile",
                format!(
                    "profile {name:?} is not configured; allowed: {}",
                    rules.profiles.names().join(", ")
                ),
            ));
        }
    }
    let cadence = with_profile(cadence, body.profile.as_deref());
    let existing = s.store.load_link(&id).await?;
    if let Some(rec) = &existing
        && rec.source == LinkSource::Config
        && !rec.removed
    {
        return Err(config_managed(&id));
    }
    let spec = LinkSpec {
        id: id.clone(),
        products,
        cadence,
        source: LinkSource::Api,
    };
    s.store.upsert_link(&spec, s.fleet.clock.now()).await?;
    tracing::info!(link = %id, products = %products, "admin API: link upserted");
    let rec = live(&s, &id).await?;
    let status = match existing {
        Some(old) if !old.removed => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    Ok((status, Json(link_view(&s, &rec).await?)).into_response())
}

async fn view(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let id = parse_id(&raw)?;
    let rec = s
        .store
        .load_link(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(link_view(&s, &rec).await?))
}

async fn remove(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let rec = live(&s, &id).await?;
    if rec.source == LinkSource::Config {
        return Err(config_managed(&id));
    }
    if !s.store.remove_link(&id, s.fleet.clock.now()).await? {
        return Err(ApiError::not_found(&id));
    }
    tracing::info!(link = %id, "admin API: link removed");
    Ok(Json(serde_json::json!({ "link": id, "removed": true })).into_response())
}

async fn set_paused(s: &AppState, raw: &str, paused: bool) -> Result<Json<LinkView>, ApiError> {
    let id = parse_id(raw)?;
    live(s, &id).await?;
    if !s.store.set_paused(&id, paused, s.fleet.clock.now()).await? {
        return Err(ApiError::not_found(&id));
    }
    tracing::info!(link = %id, paused, "admin API: pause changed");
    let rec = live(s, &id).await?;
    Ok(Json(link_view(s, &rec).await?))
}

async fn pause(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    set_paused(&s, &raw, true).await
}

async fn resume(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    set_paused(&s, &raw, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cret", "s3cre"));
        assert!(!tokens_match("", "s3cret"));
    }
}
