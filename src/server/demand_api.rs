//! Demand from the owning app (issue 17): "this user is active now" and
//! "refresh on login unless the data is younger than N".
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/links/{id}/activity` | 200 `{"link","profile","last_activity_at","active_until","recorded"}` |
//! | `POST /api/links/{id}/refresh` `[{"max_age","products"}]` | 200 `{"link","fresh":true,"products":[{"product","age_seconds","refreshed_at"}]}` when every asked product is younger than `max_age` (nothing sent); else 202 `{"link","at","products":[{"product","at"}]}` |
//!
//! Both are idempotent and cheap for a busy app: an activity within a
//! tenth of the shortest `active_for` (at most a minute) of the stored one
//! writes nothing, a refresh asked again before it went out changes
//! nothing, and the windows rule whatever the number of calls. A product's
//! age is `now` minus the later of MoneyKit's `refreshed_at` and our last
//! request that counted (a 202 starts MoneyKit's refresh; a 429 does not
//! count), so a refresh asked a moment ago makes the next login's call
//! answer 200. Without `max_age` the call is the operator's refresh: always
//! queued. Either way a queued refresh wakes the daemon at once (see
//! [`crate::health::Heartbeat::changed`]), so it leaves within
//! milliseconds when the window allows; it skips riding along and
//! coalescing, which puts it ahead of scheduled work.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin_api::{Admin, ApiError, live, parse_id, parse_json, parse_products};
use crate::domain::{LinkId, LinkState, Product, ProductSet};
use crate::duration::{parse_duration_bounded, to_delta};
use crate::explain::link_status;
use crate::metrics::DEMAND_REQUESTS_TOTAL;
use crate::policy::Cadence;
use crate::policy::cadences::resolve;
use crate::store::{Activity, LinkRecord};

/// `/api/links/{id}/refresh` and `/api/links/{id}/activity`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/links/{id}/refresh", post(refresh))
        .route("/api/links/{id}/activity", post(activity))
}

fn count(result: &'static str) {
    metrics::counter!(DEMAND_REQUESTS_TOTAL, "result" => result).increment(1);
}

/// A 404 for an unknown link, counted as `unknown_link`.
async fn known(s: &AppState, id: &LinkId) -> Result<LinkRecord, ApiError> {
    live(s, id).await.inspect_err(|_| count("unknown_link"))
}

/// Answer of `POST /api/links/{id}/activity`.
#[derive(Debug, Serialize)]
struct ActivityAnswer {
    link: LinkId,
    profile: String,
    /// The stored activity time (this call's, or one moments before).
    last_activity_at: Option<DateTime<Utc>>,
    /// Until then the profile's `active` cadence applies (`None`: the
    /// profile has no demand rule).
    active_until: Option<DateTime<Utc>>,
    /// Whether this call wrote (false: an activity moments ago stands).
    recorded: bool,
}

/// How close to the stored activity a new one writes nothing: a tenth of
/// the shortest `active_for` of any profile, between 100 ms and a minute.
fn coarse(s: &AppState) -> TimeDelta {
    let rules = s.fleet.rules();
    let profiles = &rules.profiles;
    let shortest = std::iter::once(profiles.default_profile())
        .chain(profiles.named())
        .flat_map(|p| p.cadences.iter())
        .filter_map(|c| match c {
            Cadence::Demand(d) => Some(d.active_for),
            _ => None,
        })
        .min()
        .unwrap_or(TimeDelta::minutes(10));
    (shortest / 10).clamp(TimeDelta::milliseconds(100), TimeDelta::minutes(1))
}

async fn activity(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let now = s.fleet.clock.now();
    let recorded = match s.store.record_activity(&id, now, coarse(&s)).await? {
        Activity::Recorded => true,
        Activity::Recent => false,
        Activity::UnknownLink => {
            count("unknown_link");
            return Err(ApiError::not_found(&id));
        }
    };
    if recorded {
        count("activity");
        s.heartbeat.changed.notify_one();
        tracing::debug!(link = %id, "admin API: activity recorded");
    } else {
        count("activity_repeat");
    }
    let rec = known(&s, &id).await?;
    let rules = s.fleet.rules();
    let (profile, cadences) = resolve(rec.cadence.as_deref(), &rec.tags, &rules.profiles);
    let active_until = cadences
        .iter()
        .filter_map(|c| match c {
            Cadence::Demand(d) => d.active_until(rec.last_activity_at),
            _ => None,
        })
        .max();
    Ok(Json(ActivityAnswer {
        link: id,
        profile: profile.name.to_string(),
        last_activity_at: rec.last_activity_at,
        active_until,
        recorded,
    })
    .into_response())
}

/// Body of `POST /api/links/{id}/refresh` (optional; default: every
/// product, no `max_age`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    #[serde(default)]
    products: Vec<String>,
    /// e.g. `"12h"`: refresh only products older than this.
    max_age: Option<String>,
}

/// 202: when each requested product goes out.
#[derive(Debug, Serialize)]
struct RefreshAnswer {
    link: LinkId,
    /// When every requested product will have been sent (the latest below).
    at: DateTime<Utc>,
    products: Vec<ProductWhen>,
}

#[derive(Debug, Serialize)]
struct ProductWhen {
    product: Product,
    /// As soon as its window (and any backoff) allows.
    at: DateTime<Utc>,
}

/// 200: every asked product is younger than `max_age`.
#[derive(Debug, Serialize)]
struct FreshAnswer {
    link: LinkId,
    fresh: bool,
    products: Vec<ProductAge>,
}

#[derive(Debug, Serialize)]
struct ProductAge {
    product: Product,
    age_seconds: i64,
    /// The later of MoneyKit's `refreshed_at` and our last request.
    refreshed_at: DateTime<Utc>,
}

/// When a product's data was last refreshed, as far as we know.
fn refreshed_at(rec: &LinkRecord, p: Product) -> Option<DateTime<Utc>> {
    let s = rec.schedules.iter().find(|s| s.product == p)?;
    s.server_refreshed_at.max(s.last_requested_at)
}

async fn refresh(
    _: Admin,
    State(s): State<AppState>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let body: RefreshBody = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshBody::default()
    } else {
        parse_json(&body)?
    };
    let products = parse_products(&body.products)?;
    let max_age = match &body.max_age {
        None => None,
        Some(raw) => Some(parse_duration_bounded(raw).map(to_delta).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_max_age",
                format!("max_age {raw:?}: {e}; e.g. \"12h\""),
            )
        })?),
    };
    let rec = known(&s, &id).await?;
    let foreign: ProductSet = products
        .iter()
        .filter(|p| !rec.products.contains(*p))
        .collect();
    if !foreign.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "product_not_on_link",
            format!("{foreign} not among {id}'s products ({})", rec.products),
        ));
    }
    if rec.state != LinkState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "link_not_active",
            format!("link {id} is {}: resume it first", rec.state),
        ));
    }
    let now = s.fleet.clock.now();
    let asked = if products.is_empty() {
        rec.products
    } else {
        products
    };
    let mut wanted = asked;
    if let Some(max_age) = max_age {
        let ages: Vec<(Product, Option<DateTime<Utc>>)> =
            asked.iter().map(|p| (p, refreshed_at(&rec, p))).collect();
        wanted = ages
            .iter()
            .filter(|(_, at)| at.is_none_or(|at| now - at >= max_age))
            .map(|(p, _)| *p)
            .collect();
        if wanted.is_empty() {
            count("fresh");
            let products = ages
                .into_iter()
                .filter_map(|(product, at)| {
                    at.map(|at| ProductAge {
                        product,
                        age_seconds: (now - at).num_seconds().max(0),
                        refreshed_at: at,
                    })
                })
                .collect();
            let answer = FreshAnswer {
                link: id,
                fresh: true,
                products,
            };
            return Ok((StatusCode::OK, Json(answer)).into_response());
        }
    }
    count("queued");
    let already = wanted.iter().all(|p| {
        rec.schedules
            .iter()
            .any(|s| s.product == p && s.refresh_requested)
    });
    if !already {
        s.store.request_refresh(&id, wanted, now).await?;
        s.heartbeat.changed.notify_one();
    }
    let rec = live(&s, &id).await?;
    let status = link_status(&rec, &s.fleet.rules(), now);
    let when: Vec<ProductWhen> = status
        .products
        .iter()
        .filter(|p| wanted.contains(p.product))
        .map(|p| ProductWhen {
            product: p.product,
            at: p.next_due_at.unwrap_or(now).max(now),
        })
        .collect();
    let answer = RefreshAnswer {
        link: id.clone(),
        at: when.iter().map(|p| p.at).max().unwrap_or(now),
        products: when,
    };
    tracing::info!(link = %id, at = %answer.at, products = %wanted, "admin API: refresh requested");
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
