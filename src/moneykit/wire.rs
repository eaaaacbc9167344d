//! MoneyKit's JSON shapes, shared by the client (which parses them) and the
//! simulator (which produces them), so both sides speak one format.
//!
//! Parsing is tolerant on purpose: unknown fields are ignored, unknown enum
//! values land in an `Other` variant, unknown product keys are dropped, and
//! timestamps are accepted with or without a zone (zone-less means UTC, as
//! MoneyKit sends them). Serialising writes timestamps zone-less, like MoneyKit.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Product;

/// `POST /auth/token` success body (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Lifetime in seconds from issue.
    pub expires_in: u64,
}

/// The JSON error body MoneyKit sends with every 4xx (and some 5xx).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine readable code such as `link_error.bad_state`.
    #[serde(default)]
    pub error_code: String,
    /// Human readable message.
    #[serde(default)]
    pub error_message: String,
    /// Link to MoneyKit's documentation of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// The link's own error code; present on 422 `link_error.bad_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_error_code: Option<String>,
}

/// Body of `POST /links/{id}/products`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The products to refresh, at least one. Unknown names are kept as
    /// strings so the simulator can reject them like MoneyKit would.
    pub products: Vec<String>,
}

/// The state of a link as MoneyKit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// The user is still connecting.
    Connecting,
    /// Waiting for the app to exchange the link token.
    AwaitingTokenExchange,
    /// Healthy.
    Connected,
    /// Deleted; will never come back.
    Deleted,
    /// Broken; see `error_code`.
    Error,
    /// A state this build does not know.
    #[serde(other)]
    Other,
}

/// Link-level error codes (`LinkCommon.error_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the names are MoneyKit's; see MONEYKIT_API.md
pub enum LinkErrorCode {
    SystemError,
    ProviderError,
    InstitutionError,
    UserError,
    AuthExpired,
    NoAccounts,
    UserSetupRequired,
    InvalidCredentials,
    UserOauthDenied,
    UserInputIncorrect,
    Incomplete,
    /// A code this build does not know.
    #[serde(other)]
    Other,
}

/// Per-product error codes inside a link's `products` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the names are MoneyKit's; see MONEYKIT_API.md
pub enum ProductErrorCode {
    /// The product was not refreshed because it was asked for too soon.
    RateLimit,
    AuthExpired,
    NotSupported,
    Timeout,
    /// MoneyKit's own `unknown` code.
    Unknown,
    NoAccounts,
    InstitutionError,
    NoPermission,
    /// A code this build does not know.
    #[serde(other)]
    Other,
}

/// One product's state on a link; tells what MoneyKit already did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductState {
    /// When the product was last refreshed successfully.
    #[serde(default, with = "opt_time")]
    pub refreshed_at: Option<DateTime<Utc>>,
    /// When MoneyKit last tried to refresh it.
    #[serde(default, with = "opt_time")]
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, if it did.
    #[serde(default)]
    pub error_code: Option<ProductErrorCode>,
    /// MoneyKit's message for `error_code`.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Why the product is unavailable on this link, if it is.
    #[serde(default)]
    pub unavailable: Option<String>,
    /// Product settings; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// Transactions only (required there by MoneyKit's schema): whether
    /// history has been fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_history: Option<bool>,
}

/// A link (`LinkCommon`): the body of a 202 refresh and of `GET /links/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The link id.
    pub link_id: String,
    /// Institution id.
    #[serde(default)]
    pub institution_id: String,
    /// Institution display name.
    #[serde(default)]
    pub institution_name: String,
    /// Institution logo URL.
    #[serde(default)]
    pub institution_avatar: String,
    /// The link's state.
    pub state: LinkStatus,
    /// Why the link is in `error`, if it is.
    #[serde(default)]
    pub error_code: Option<LinkErrorCode>,
    /// When the link last synced.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Data provider behind the link (`moneykit`, `plaid`, ...), kept as text.
    #[serde(default)]
    pub provider: String,
    /// Tags set by the app.
    #[serde(default, deserialize_with = "null_as_default")]
    pub link_tags: Vec<String>,
    /// The link's webhook URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Per-product state; unknown product keys are dropped.
    #[serde(default, deserialize_with = "known_products")]
    pub products: BTreeMap<Product, ProductState>,
    /// Products the link can serve; unknown names are dropped.
    #[serde(default, deserialize_with = "known_product_list")]
    pub available_products: Vec<Product>,
}

impl Link {
    /// The state of one product, if MoneyKit reported it.
    pub fn product(&self, p: Product) -> Option<&ProductState> {
        self.products.get(&p)
    }
}

/// One entry of `GET /links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkListItem {
    /// The link id.
    pub link_id: String,
    /// When the link was created.
    #[serde(default, with = "opt_time")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A page of `GET /links?cursor=&limit=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPage {
    /// The links on this page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Vec<LinkListItem>,
    /// Cursor of the next page; `None` (or empty on the wire) ends the listing.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub next_cursor: Option<String>,
}

/// Parses an ISO-8601 timestamp with or without a zone; zone-less is UTC.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Some(t.and_utc());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(raw, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// Formats a timestamp the way MoneyKit does: zone-less, UTC, whole seconds
/// or microseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Serde adapter for optional MoneyKit timestamps. An unparseable value is an
/// error: a wrong `refreshed_at` must not silently become "never".
mod opt_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => parse_time(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {s:?}"))),
        }
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn known_products<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<Product, ProductState>, D::Error> {
    let raw = Option::<BTreeMap<String, Option<ProductState>>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| Some((Product::parse(&k).ok()?, v?)))
        .collect())
}

fn known_product_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Product>, D::Error> {
    let raw = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    Ok(raw.iter().filter_map(|p| Product::parse(p).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_less_and_zoned_timestamps_parse_as_the_same_utc_instant() {
        let want = parse_time("2023-02-16T09:14:11Z").unwrap();
        assert_eq!(parse_time("2023-02-16T09:14:11"), Some(want));
        assert_eq!(parse_time("2023-02-16T10:14:11+01:00"), Some(want));
        assert_eq!(parse_time("2023-02-16T09:14:11.000000"), Some(want));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn formatted_times_round_trip() {
        let t = parse_time("2023-02-16T09:14:11.250Z").unwrap();
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }
}
