//! The MoneyKit HTTP client: auth, refresh, link reads and listing, each
//! answer mapped onto a typed outcome and counted in metrics.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::domain::{LinkId, ProductSet};
use crate::retry_after::RetryAfter;
use crate::secret::Secret;

use super::auth::TokenCache;
use super::body::{BodyError, MAX_BODY, MAX_PAGE_BODY, read_capped};
use super::outcome::{
    ApiError, AuthError, ClientError, LinkOutcome, RefreshOutcome, body_for_link,
};
use super::wire::{ErrorBody, Link, LinkPage, ProductErrorCode, RefreshRequest, TokenResponse};

/// Everything the client needs to talk to MoneyKit; built from `[moneykit]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.moneykit.com` or a simulator URL.
    pub base_url: String,
    /// The application's client id.
    pub client_id: String,
    /// The application's client secret; never logged.
    pub client_secret: Secret,
    /// Sent as `MoneyKit-Version`.
    pub api_version: String,
    /// Whole-request timeout (connect, send, answer).
    pub request_timeout: Duration,
    /// Optional OAuth scope for the token.
    pub scope: Option<String>,
}

/// A cheap-to-clone handle on one connection pool and one token cache,
/// shared by every task of the daemon.
#[derive(Clone)]
pub struct MoneyKit {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    cfg: ClientConfig,
    tokens: TokenCache,
}

/// The endpoint label of `linkfresh_requests_total`.
#[derive(Clone, Copy)]
enum Endpoint {
    Token,
    Refresh,
    GetLink,
    ListLinks,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::GetLink => "get_link",
            Endpoint::ListLinks => "list_links",
        }
    }
}

fn count(endpoint: Endpoint, status: String) {
    metrics::counter!(
        "linkfresh_requests_total",
        "endpoint" => endpoint.label(),
        "status" => status
    )
    .increment(1);
}

/// Renders an error with its whole cause chain, for logs and outcomes.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Maps a transport error and counts it.
fn transport(endpoint: Endpoint, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        count(endpoint, "timeout".into());
        ApiError::Timeout
    } else {
        count(endpoint, "connection_error".into());
        if e.is_connect() {
            ApiError::Connection { error: chain(e) }
        } else {
            ApiError::Interrupted { error: chain(e) }
        }
    }
}

/// A raw answer: status, `Retry-After` and body.
struct Answer {
    status: StatusCode,
    retry_after: Option<RetryAfter>,
    body: Vec<u8>,
    /// Set when the body was over the cap and left unread (`body` is empty):
    /// the status still counts, the body reads as malformed.
    oversized: Option<String>,
}

impl Answer {
    fn error_body(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if let Some(why) = &self.oversized {
            return Err(ApiError::Malformed {
                status: self.status.as_u16(),
                error: why.clone(),
            });
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Malformed {
            status: self.status.as_u16(),
            error: e.to_string(),
        })
    }

    /// The shared mapping of a non-success status.
    fn error(&self) -> ApiError {
        let status = self.status.as_u16();
        match status {
            429 => ApiError::RateLimited {
                retry_after: self.retry_after,
            },
            403 => ApiError::Forbidden {
                message: self.error_body().error_message,
            },
            404 => ApiError::NotFound,
            410 => ApiError::Deleted,
            422 => ApiError::BadState {
                link_error_code: self.error_body().link_error_code,
            },
            500..=599 => ApiError::ServerError { status },
            _ => ApiError::Unexpected { status },
        }
    }
}

impl MoneyKit {
    /// Builds the client (connection pool, default headers); no I/O.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let mut base = Url::parse(cfg.base_url.trim()).map_err(|e| ClientError::BadBaseUrl {
            url: cfg.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::BadBaseUrl {
                url: cfg.base_url.clone(),
                reason: "the scheme must be http or https".into(),
            });
        }
        base.set_query(None);
        base.set_fragment(None);
        let mut headers = HeaderMap::new();
        headers.insert(
            "MoneyKit-Version",
            HeaderValue::from_str(&cfg.api_version)
                .map_err(|_| ClientError::BadApiVersion(cfg.api_version.clone()))?,
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("linkfresh/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                cfg,
                tokens: TokenCache::default(),
            }),
        })
    }

    /// The base URL joined with path segments (each one escaped).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Obtains a token now unless a fresh one is cached; for start-up and
    /// readiness. `AuthError::BadCredentials` means: stop, fix the config.
    #[tracing::instrument(skip_all)]
    pub async fn ensure_token(&self) -> Result<(), AuthError> {
        self.token(None).await.map(|_| ())
    }

    /// Whether a token is cached and fresh (for `/readyz`), without I/O.
    pub async fn has_fresh_token(&self) -> bool {
        self.inner.tokens.is_fresh().await
    }

    async fn token(&self, stale: Option<u64>) -> Result<super::auth::Token, AuthError> {
        self.inner.tokens.get(stale, || self.fetch_token()).await
    }

    /// `POST /auth/token`; only ever called under the cache's lock.
    #[tracing::instrument(skip_all)]
    async fn fetch_token(&self) -> Result<(Secret, Duration), AuthError> {
        let cfg = &self.inner.cfg;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.expose()),
        ];
        if let Some(scope) = &cfg.scope {
            form.push(("scope", scope.as_str()));
        }
        let sent = self
            .inner
            .http
            .post(self.url(&["auth", "token"]))
            .form(&form)
            .send()
            .await;
        let answer = match read(Endpoint::Token, sent).await {
            Ok(a) => a,
            Err(e) => {
                return Err(AuthError::Unavailable {
                    detail: e.to_string(),
                });
            }
        };
        match answer.status.as_u16() {
            200 | 201 => {
                let t: TokenResponse = answer.parse().map_err(|e| AuthError::Unavailable {
                    detail: e.to_string(),
                })?;
                metrics::counter!("linkfresh_token_refreshes_total").increment(1);
                tracing::info!(
                    expires_in = t.expires_in,
                    "obtained a MoneyKit access token"
                );
                Ok((
                    Secret::new(t.access_token),
                    Duration::from_secs(t.expires_in),
                ))
            }
            status @ (400 | 401) => {
                let body = answer.error_body();
                let err = AuthError::BadCredentials {
                    status,
                    error_code: body.error_code,
                    message: body.error_message,
                };
                tracing::error!(error = %err, "token request refused");
                Err(err)
            }
            status => Err(AuthError::Unavailable {
                detail: format!("token endpoint answered HTTP {status}"),
            }),
        }
    }

    /// Sends one authorised request; on a 401 renews the token once (single
    /// flight) and sends it once more.
    async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        url: Url,
        body: Option<&RefreshRequest>,
    ) -> Result<Answer, ApiError> {
        let mut stale = None;
        for attempt in 0..2 {
            let token = self.token(stale).await.map_err(ApiError::Auth)?;
            let mut req = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.value.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let answer = read(endpoint, req.send().await).await?;
            if answer.status != StatusCode::UNAUTHORIZED {
                return Ok(answer);
            }
            let code = answer.error_body().error_code;
            if attempt == 1 {
                return Err(ApiError::Auth(AuthError::Rejected { error_code: code }));
            }
            tracing::info!(error_code = %code, "access token refused; renewing once");
            stale = Some(token.generation);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Asks MoneyKit to refresh `products` of `link` (`POST /links/{id}/products`).
    #[tracing::instrument(skip_all, fields(link = %link, products = %products))]
    pub async fn refresh(&self, link: &LinkId, products: ProductSet) -> RefreshOutcome {
        let body = RefreshRequest {
            products: products.iter().map(|p| p.as_str().to_owned()).collect(),
        };
        let url = self.url(&["links", link.as_str(), "products"]);
        let answer = match self
            .call(Endpoint::Refresh, Method::POST, url, Some(&body))
            .await
        {
            Ok(a) => a,
            Err(e) => return e.into(),
        };
        if answer.status != StatusCode::ACCEPTED && answer.status.is_success() {
            // Any other 2xx: requested, body shape unknown.
            return accepted(body_for_link(link, answer.parse().ok()), products);
        }
        if answer.status == StatusCode::ACCEPTED {
            return match answer.parse::<Link>() {
                Ok(l) => accepted(body_for_link(link, Some(l)), products),
                Err(e) => {
                    tracing::warn!(error = %e, "202 with an unreadable body; counting it as sent");
                    accepted(None, products)
                }
            };
        }
        let outcome: RefreshOutcome = answer.error().into();
        tracing::debug!(?outcome, "refresh not accepted");
        outcome
    }

    /// Reads a link's state (`GET /links/{id}`): what MoneyKit already did.
    #[tracing::instrument(skip_all, fields(link = %link))]
    pub async fn get_link(&self, link: &LinkId) -> LinkOutcome {
        let url = self.url(&["links", link.as_str()]);
        let answer = self.call(Endpoint::GetLink, Method::GET, url, None).await?;
        if answer.status.is_success() {
            answer.parse()
        } else {
            Err(answer.error())
        }
    }

    /// One page of the application's links (`GET /links`), for discovery.
    /// MoneyKit accepts a `limit` of 500 to 5000; other values are clamped.
    #[tracing::instrument(skip_all, fields(cursor = cursor.unwrap_or("")))]
    pub async fn list_links(&self, cursor: Option<&str>, limit: u32) -> Result<LinkPage, ApiError> {
        let mut url = self.url(&["links"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(c) = cursor.filter(|c| !c.is_empty()) {
                q.append_pair("cursor", c);
            }
            q.append_pair("limit", &limit.clamp(500, 5000).to_string());
        }
        let answer = self
            .call(Endpoint::ListLinks, Method::GET, url, None)
            .await?;
        if answer.status.is_success() {
            answer.parse()
        } else {
            Err(answer.error())
        }
    }
}

/// Builds `Accepted`, reading per-product `rate_limit` codes; only products
/// that were asked for count.
fn accepted(link: Option<Link>, asked: ProductSet) -> RefreshOutcome {
    let rate_limited_products = link
        .as_ref()
        .map(|l| {
            l.products
                .iter()
                .filter(|(p, s)| {
                    asked.contains(**p) && s.error_code == Some(ProductErrorCode::RateLimit)
                })
                .map(|(p, _)| *p)
                .collect::<ProductSet>()
        })
        .unwrap_or_default();
    if !rate_limited_products.is_empty() {
        tracing::warn!(products = %rate_limited_products, "accepted, but some products were rate limited");
    }
    RefreshOutcome::Accepted {
        link,
        rate_limited_products,
    }
}

/// Reads status, `Retry-After` and the body (at most [`MAX_BODY`], or
/// [`MAX_PAGE_BODY`] for a page of links), counting the request. A body over
/// the cap is not an error of the request: the status stands (a 202 was
/// still accepted) and the body reads as malformed.
async fn read(
    endpoint: Endpoint,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Answer, ApiError> {
    let resp = sent.map_err(|e| transport(endpoint, &e))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(RetryAfter::parse);
    let cap = match endpoint {
        Endpoint::ListLinks => MAX_PAGE_BODY,
        Endpoint::Token | Endpoint::Refresh | Endpoint::GetLink => MAX_BODY,
    };
    let (body, oversized) = match read_capped(resp, cap).await {
        Ok(body) => (body, None),
        Err(BodyError::Transport(e)) => return Err(transport(endpoint, &e)),
        Err(e @ BodyError::Other(_)) => {
            count(endpoint, "connection_error".into());
            return Err(ApiError::Interrupted {
                error: e.to_string(),
            });
        }
        Err(e @ BodyError::TooLarge(_)) => {
            tracing::warn!(endpoint = endpoint.label(), status = status.as_u16(), error = %e, "MoneyKit answer body over the cap; not read");
            (Vec::new(), Some(e.to_string()))
        }
    };
    count(endpoint, status.as_u16().to_string());
    Ok(Answer {
        status,
        retry_after,
        body,
        oversized,
    })
}
