//! What a call to MoneyKit can come back with, as typed values: rate limits,
//! parked links and transient failures are outcomes the daemon acts on, not
//! errors to bubble up.

use crate::domain::{LinkId, ProductSet};
use crate::retry_after::RetryAfter;

use super::wire::Link;

/// Why a client could not be built; a start-up (configuration) error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `base_url` is not an absolute http(s) URL.
    #[error("moneykit.base_url {url:?} is not an absolute http(s) URL: {reason}")]
    BadBaseUrl {
        /// The configured value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header value (api_version) cannot be sent.
    #[error("moneykit.api_version {0:?} cannot be sent as an HTTP header value")]
    BadApiVersion(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Why no usable access token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `/auth/token` refused the client id/secret. Fatal: retrying cannot help.
    #[error(
        "MoneyKit rejected the client credentials (HTTP {status}, {error_code}: {message}); \
         check moneykit.client_id and moneykit.client_secret"
    )]
    BadCredentials {
        /// 400 or 401.
        status: u16,
        /// MoneyKit's error code, usually `api_error.auth.unauthorized`.
        error_code: String,
        /// MoneyKit's message.
        message: String,
    },
    /// A freshly issued token was refused again (a second 401 after one
    /// renewal). Fatal: the credentials lack access or the clocks disagree.
    #[error(
        "MoneyKit refused a freshly issued access token (HTTP 401, {error_code}); not retrying"
    )]
    Rejected {
        /// The error code of the second 401.
        error_code: String,
    },
    /// The token endpoint failed transiently (5xx, timeout, connection,
    /// unreadable body); the request was not sent, try again later.
    #[error("could not obtain a MoneyKit access token: {detail}")]
    Unavailable {
        /// What went wrong.
        detail: String,
    },
}

impl AuthError {
    /// Whether the daemon must stop (true) or may retry later (false).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, AuthError::Unavailable { .. })
    }
}

/// A failed read (`GET /links/{id}`, `GET /links`): the same mapping as
/// [`RefreshOutcome`] minus the success case.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 429; honour `retry_after` when present.
    #[error("rate limited (HTTP 429)")]
    RateLimited {
        /// The parsed `Retry-After` header.
        retry_after: Option<RetryAfter>,
    },
    /// 403 `link_error.forbidden_action`.
    #[error("forbidden (HTTP 403): {message}")]
    Forbidden {
        /// MoneyKit's message.
        message: String,
    },
    /// 404: no such link.
    #[error("link not found (HTTP 404)")]
    NotFound,
    /// 410: the link was deleted.
    #[error("link deleted (HTTP 410)")]
    Deleted,
    /// 422: the link needs user action.
    #[error("link needs user action (HTTP 422, {link_error_code:?})")]
    BadState {
        /// The link's error code.
        link_error_code: Option<String>,
    },
    /// No usable token.
    #[error(transparent)]
    Auth(AuthError),
    /// 5xx.
    #[error("MoneyKit server error (HTTP {status})")]
    ServerError {
        /// The status code.
        status: u16,
    },
    /// No answer within `request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// Could not connect; the request never left.
    #[error("connection failed: {error}")]
    Connection {
        /// The transport error, with its causes.
        error: String,
    },
    /// The transport failed after connecting; the request may have arrived.
    #[error("connection interrupted: {error}")]
    Interrupted {
        /// The transport error, with its causes.
        error: String,
    },
    /// A success status whose body could not be parsed.
    #[error("unreadable response body (HTTP {status}): {error}")]
    Malformed {
        /// The status code.
        status: u16,
        /// The parse error.
        error: String,
    },
    /// Any other status.
    #[error("unexpected HTTP status {status}")]
    Unexpected {
        /// The status code.
        status: u16,
    },
}

/// The answer to `GET /links/{id}`.
pub type LinkOutcome = Result<Link, ApiError>;

/// Everything `POST /links/{id}/products` can come back with. Exhaustive, so
/// the daemon must decide what each one means for the link.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// 202: the refresh was requested.
    Accepted {
        /// The link as MoneyKit returned it; `None` when the 202 body was
        /// unreadable (the request still counts as sent).
        link: Option<super::wire::Link>,
        /// Products the 202 marked with per-product `error_code: rate_limit`:
        /// these were NOT refreshed.
        rate_limited_products: ProductSet,
    },
    /// 429: nothing was refreshed.
    RateLimited {
        /// The parsed `Retry-After` header.
        retry_after: Option<RetryAfter>,
    },
    /// 403: a requested product is not granted on this link.
    Forbidden {
        /// MoneyKit's message.
        message: String,
    },
    /// 404: no such link.
    NotFound,
    /// 410: the link was deleted.
    Deleted,
    /// 422: the link needs user action.
    BadState {
        /// The link's error code (`auth_expired`, ...).
        link_error_code: Option<String>,
    },
    /// No usable token (fatal credentials problem, or the token endpoint is
    /// down: see [`AuthError::is_fatal`]).
    Auth(AuthError),
    /// 5xx.
    ServerError {
        /// The status code.
        status: u16,
    },
    /// No answer within `request_timeout`; the request may have arrived.
    Timeout,
    /// Could not connect; the request never left.
    Connection {
        /// The transport error, with its causes.
        error: String,
    },
    /// The transport failed after connecting; the request may have arrived.
    Interrupted {
        /// The transport error, with its causes.
        error: String,
    },
    /// Any other status.
    Unexpected {
        /// The status code.
        status: u16,
    },
}

impl RefreshOutcome {
    /// Whether the request may have reached MoneyKit, so its products must be
    /// treated as requested (conservative: a timeout counts as sent).
    pub fn sent(&self) -> bool {
        match self {
            RefreshOutcome::Accepted { .. }
            | RefreshOutcome::Timeout
            | RefreshOutcome::Interrupted { .. }
            | RefreshOutcome::ServerError { .. }
            | RefreshOutcome::Unexpected { .. } => true,
            RefreshOutcome::RateLimited { .. }
            | RefreshOutcome::Forbidden { .. }
            | RefreshOutcome::NotFound
            | RefreshOutcome::Deleted
            | RefreshOutcome::BadState { .. }
            | RefreshOutcome::Auth(_)
            | RefreshOutcome::Connection { .. } => false,
        }
    }
}

impl From<ApiError> for RefreshOutcome {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::RateLimited { retry_after } => RefreshOutcome::RateLimited { retry_after },
            ApiError::Forbidden { message } => RefreshOutcome::Forbidden { message },
            ApiError::NotFound => RefreshOutcome::NotFound,
            ApiError::Deleted => RefreshOutcome::Deleted,
            ApiError::BadState { link_error_code } => RefreshOutcome::BadState { link_error_code },
            ApiError::Auth(a) => RefreshOutcome::Auth(a),
            ApiError::ServerError { status } => RefreshOutcome::ServerError { status },
            ApiError::Timeout => RefreshOutcome::Timeout,
            ApiError::Connection { error } => RefreshOutcome::Connection { error },
            ApiError::Interrupted { error } => RefreshOutcome::Interrupted { error },
            ApiError::Malformed { status, .. } | ApiError::Unexpected { status } => {
                RefreshOutcome::Unexpected { status }
            }
        }
    }
}

/// The body of a 202 to `POST /links/{requested}/products`, if it may be
/// used. A body naming another `link_id` is an anomaly (a proxy mixing up
/// answers, or a MoneyKit bug): its times and per-product codes belong to
/// that other link, so it is dropped with a warning naming both ids, and
/// the request still counts as sent (it reached MoneyKit).
pub(crate) fn body_for_link(requested: &LinkId, link: Option<Link>) -> Option<Link> {
    match link {
        Some(l) if l.link_id != requested.as_str() => {
            tracing::warn!(
                requested = %requested,
                answered = %l.link_id,
                "anomaly: a 202 names a different link than requested; its body is ignored, the refresh counts as sent"
            );
            None
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: &str) -> Link {
        serde_json::from_value(serde_json::json!({ "link_id": id, "state": "connected" })).unwrap()
    }

    #[test]
    fn a_202_naming_another_link_is_dropped_as_an_anomaly() {
        let asked = LinkId::parse("mk_asked").unwrap();
        assert_eq!(body_for_link(&asked, Some(link("mk_other"))), None);
        assert_eq!(
            body_for_link(&asked, Some(link("mk_asked"))),
            Some(link("mk_asked"))
        );
        assert_eq!(body_for_link(&asked, None), None);
    }
}
