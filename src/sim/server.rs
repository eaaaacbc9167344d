//! The simulator's HTTP surface: MoneyKit's endpoints as MONEYKIT_API.md
//! describes them, plus `GET /_sim/stats`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::TimeDelta;
use serde::Deserialize;

use crate::clock::Clock;
use crate::domain::{LinkId, Product, ProductSet};
use crate::moneykit::wire::{ErrorBody, LinkListItem, LinkPage, TokenResponse};

use super::config::RetryAfterFormat;
use super::state::{RefreshDecision, State};

/// State shared by every handler and the in-process handle.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub webhooks: super::webhooks::Webhooks,
    pub clock: Clock,
}

type Sh = Arc<Shared>;

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn router(shared: Sh) -> Router {
    Router::new()
        .route("/auth/token", post(token))
        .route("/links", get(list_links))
        .route("/links/{id}", get(get_link))
        .route("/links/{id}/products", post(refresh))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/_sim/stats", get(stats))
        .route("/_sim/freshness", get(freshness))
        .route("/_sim/busiest", get(busiest))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error_code: code.to_owned(),
        error_message: message.to_owned(),
        documentation_url: Some("https://docs.moneykit.com/".into()),
        link_error_code: None,
    };
    (status, Json(body)).into_response()
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error.service_unavailable",
        "Service temporarily unavailable (simulated)",
    )
}

/// Counts the answer and hands it back.
fn done(st: &mut State, endpoint: &str, resp: Response) -> Response {
    st.record(endpoint, resp.status().as_u16());
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks shared by every MoneyKit endpoint: version header, outages,
/// then (for everything but `/auth/token`) the bearer token.
// A Response is what the handler returns anyway; boxing it buys nothing here.
#[allow(clippy::result_large_err)]
fn gate(sh: &Shared, st: &mut State, headers: &HeaderMap, authed: bool) -> Result<(), Response> {
    let now = sh.clock.now();
    if !headers.contains_key("moneykit-version") {
        st.stats.missing_version_header += 1;
    }
    if st.in_outage(now) {
        return Err(unavailable());
    }
    if authed {
        st.check_token(bearer(headers), now).map_err(|code| {
            let msg = if code.ends_with("expired_access_token") {
                "Access token expired"
            } else {
                "Invalid or missing access token"
            };
            error(StatusCode::UNAUTHORIZED, code, msg)
        })?;
    }
    Ok(())
}

/// Minimal base64 (standard alphabet) for HTTP Basic credentials.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(base64_decode(rest)?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(
    AxState(sh): AxState<Sh>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let mut st = sh.lock();
    if let Err(resp) = gate(&sh, &mut st, &headers, false) {
        return done(&mut st, "token", resp);
    }
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        let resp = error(
            StatusCode::BAD_REQUEST,
            "api_error.auth.unauthorized",
            "grant_type must be client_credentials",
        );
        return done(&mut st, "token", resp);
    }
    let creds = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => basic_credentials(&headers),
    };
    let ok =
        creds.is_some_and(|(id, secret)| id == st.cfg.client_id && secret == st.cfg.client_secret);
    if !ok {
        let resp = error(
            StatusCode::UNAUTHORIZED,
            "api_error.auth.unauthorized",
            "Invalid client credentials",
        );
        return done(&mut st, "token", resp);
    }
    let (access_token, expires_in) = st.issue_token(sh.clock.now());
    let body = TokenResponse {
        access_token,
        token_type: "bearer".into(),
        expires_in,
    };
    done(
        &mut st,
        "token",
        (StatusCode::CREATED, Json(body)).into_response(),
    )
}

#[allow(clippy::result_large_err)]
fn parse_id(raw: &str) -> Result<LinkId, Response> {
    LinkId::parse(raw).map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            "link_error.not_found",
            "Link not found",
        )
    })
}

async fn slow(sh: &Shared) {
    let delay = sh.lock().cfg.faults.slow_response;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

async fn refresh(
    AxState(sh): AxState<Sh>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let resp = refresh_inner(&sh, &raw_id, &headers, &body);
    slow(&sh).await;
    resp
}

fn refresh_inner(sh: &Shared, raw_id: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut st = sh.lock();
    let now = sh.clock.now();
    if let Err(resp) = gate(sh, &mut st, headers, true) {
        return done(&mut st, "refresh", resp);
    }
    if rand::random::<f64>() < st.cfg.faults.error_rate_503 {
        return done(&mut st, "refresh", unavailable());
    }
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(resp) => return done(&mut st, "refresh", resp),
    };
    #[derive(Deserialize)]
    struct Body {
        products: Vec<String>,
    }
    let asked: Option<ProductSet> = serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.products.iter().map(|p| Product::parse(p).ok()).collect());
    let asked = match asked {
        Some(a) if !a.is_empty() => a,
        _ => {
            let resp = error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "api_error.request.validation",
                "products must be a non-empty list of known products",
            );
            return done(&mut st, "refresh", resp);
        }
    };
    let force_429 = rand::random::<f64>() < st.cfg.faults.rate_429;
    let decision = if rand::random::<f64>() < st.cfg.faults.bad_state_rate {
        RefreshDecision::BadState("item_locked".into())
    } else {
        st.refresh(&id, asked, now, force_429)
    };
    let resp = match decision {
        RefreshDecision::NotFound => error(
            StatusCode::NOT_FOUND,
            "link_error.not_found",
            "Link not found",
        ),
        RefreshDecision::Deleted => error(
            StatusCode::GONE,
            "link_error.deleted",
            "Link has been deleted",
        ),
        RefreshDecision::BadState(code) => {
            let body = ErrorBody {
                error_code: "link_error.bad_state".into(),
                error_message: "Link is in an error state; the user must reconnect".into(),
                documentation_url: None,
                link_error_code: Some(code),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        RefreshDecision::Forbidden(products) => error(
            StatusCode::FORBIDDEN,
            "link_error.forbidden_action",
            &format!("Permission not granted for: {products}"),
        ),
        RefreshDecision::WindowLimited(secs) => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "api_error.rate_limit_exceeded",
                "Too many requests; try again later",
            );
            let header = if secs > 0 {
                Some(secs.to_string())
            } else if let Some(d) = st.cfg.faults.retry_after {
                let until = now + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
                st.note_retry_after(&id, until);
                Some(match st.cfg.faults.retry_after_format {
                    RetryAfterFormat::Seconds => d.as_secs().to_string(),
                    RetryAfterFormat::HttpDate => httpdate::fmt_http_date(until.into()),
                })
            } else {
                None
            };
            if let Some(v) = header.and_then(|h| HeaderValue::from_str(&h).ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        RefreshDecision::Accepted(link) => {
            if let Some(url) = link.webhook.clone() {
                let failed = st.links[&id].cfg.rate_limited_products;
                let refreshed = asked.iter().filter(|p| !failed.contains(*p)).collect();
                let failed = asked.iter().filter(|p| failed.contains(*p)).collect();
                let tags = &st.links[&id].cfg.tags;
                sh.webhooks
                    .refresh_accepted(url, &id, tags, refreshed, failed);
            }
            if rand::random::<f64>() < st.cfg.faults.malformed_202_rate {
                let mut resp = (StatusCode::ACCEPTED, r#"{"link_id": "trunc"#).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            } else {
                (StatusCode::ACCEPTED, Json(link)).into_response()
            }
        }
    };
    done(&mut st, "refresh", resp)
}

async fn get_link(
    AxState(sh): AxState<Sh>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let resp = {
        let mut st = sh.lock();
        let now = sh.clock.now();
        let resp = match gate(&sh, &mut st, &headers, true) {
            Err(resp) => resp,
            Ok(()) if rand::random::<f64>() < st.cfg.faults.error_rate_503 => unavailable(),
            Ok(()) => match parse_id(&raw_id) {
                Err(resp) => resp,
                Ok(id) => match st.link_mut(&id, now) {
                    None => error(
                        StatusCode::NOT_FOUND,
                        "link_error.not_found",
                        "Link not found",
                    ),
                    Some(l) => match l.cfg.state {
                        super::SimLinkState::NotFound => error(
                            StatusCode::NOT_FOUND,
                            "link_error.not_found",
                            "Link not found",
                        ),
                        super::SimLinkState::Deleted => error(
                            StatusCode::GONE,
                            "link_error.deleted",
                            "Link has been deleted",
                        ),
                        _ => (StatusCode::OK, Json(l.view())).into_response(),
                    },
                },
            },
        };
        done(&mut st, "get_link", resp)
    };
    slow(&sh).await;
    resp
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_links(
    AxState(sh): AxState<Sh>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let resp = {
        let mut st = sh.lock();
        let resp = match gate(&sh, &mut st, &headers, true) {
            Err(resp) => resp,
            Ok(()) if rand::random::<f64>() < st.cfg.faults.error_rate_503 => unavailable(),
            Ok(()) => {
                let start = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
                    None => Some(0),
                    Some(c) => c.strip_prefix("c").and_then(|n| n.parse::<usize>().ok()),
                };
                let limit_ok = q.limit.is_none_or(|l| (500..=5000).contains(&l));
                match start {
                    _ if !limit_ok => error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "api_error.request.validation",
                        "limit must be between 500 and 5000",
                    ),
                    None => error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "api_error.request.validation",
                        "invalid cursor",
                    ),
                    Some(start) => {
                        (StatusCode::OK, Json(page(&st, start, q.limit))).into_response()
                    }
                }
            }
        };
        done(&mut st, "list_links", resp)
    };
    slow(&sh).await;
    resp
}

/// One page of the listing from position `start`; links that "do not
/// exist" (not_found) or were deleted are skipped. MoneyKit accepts a
/// `limit` of 500 to 5000 (checked by the caller); the default is 1000.
fn page(st: &State, start: usize, limit: Option<usize>) -> LinkPage {
    let limit = limit.unwrap_or(1000).clamp(1, 5000);
    let mut links = Vec::with_capacity(limit.min(st.order.len()));
    let mut pos = start;
    while pos < st.order.len() && links.len() < limit {
        let l = &st.links[&st.order[pos]];
        pos += 1;
        if matches!(
            l.cfg.state,
            super::SimLinkState::NotFound | super::SimLinkState::Deleted
        ) {
            continue;
        }
        links.push(LinkListItem {
            link_id: l.cfg.id.to_string(),
            created_at: Some(l.created_at),
        });
    }
    LinkPage {
        links,
        next_cursor: (pos < st.order.len()).then(|| format!("c{pos}")),
    }
}

async fn jwks(AxState(sh): AxState<Sh>, headers: HeaderMap) -> Response {
    let mut st = sh.lock();
    let resp = match gate(&sh, &mut st, &headers, false) {
        Err(resp) => resp,
        Ok(()) => Json(sh.webhooks.jwks()).into_response(),
    };
    done(&mut st, "jwks", resp)
}

async fn freshness(AxState(sh): AxState<Sh>) -> Response {
    let now = sh.clock.now();
    Json(sh.lock().freshness(now)).into_response()
}

async fn stats(AxState(sh): AxState<Sh>) -> Response {
    Json(sh.lock().stats.clone()).into_response()
}

/// `GET /_sim/busiest?window_ms=N`: the refresh POSTs so far and the most
/// in any rolling window of N ms (what a budget of that window must keep
/// within), for the benchmarks.
async fn busiest(AxState(sh): AxState<Sh>, Query(q): Query<HashMap<String, i64>>) -> Response {
    let window = TimeDelta::milliseconds(q.get("window_ms").copied().unwrap_or(86_400_000).max(1));
    let st = sh.lock();
    Json(serde_json::json!({
        "window_ms": window.num_milliseconds(),
        "posts": st.post_times.len(),
        "busiest": super::busiest_window(&st.post_times, window),
    }))
    .into_response()
}
