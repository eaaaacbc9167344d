//! The body of an event: Standard Webhooks' recommended envelope
//! (`type`, `timestamp`, `data`), with the link id, the product, the
//! reason and linkfresh's view of the link in `data`. Built once, when the
//! event is written, and stored as sent: every retry signs the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::kind::{Caused, EventType};
use crate::domain::{LinkState, Product, ProductSet};

/// linkfresh's view of a link when the event happened.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    /// The link's state after the change.
    pub state: LinkState,
    /// The products linkfresh keeps fresh.
    pub products: ProductSet,
    /// Per product, the send time of the last request that counted.
    pub last_requested: Vec<(Product, Option<DateTime<Utc>>)>,
    /// Per product, MoneyKit's last `refreshed_at`.
    pub last_refreshed: Vec<(Product, Option<DateTime<Utc>>)>,
}

/// A new event's stable id: `evt_` and 128 random bits in hex. It is the
/// `webhook-id` of every try, so receivers can drop duplicates.
pub fn new_id() -> String {
    format!("evt_{:032x}", rand::random::<u128>())
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stored time (unix milliseconds) as RFC 3339, for reasons in words.
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), iso)
}

fn per_product(v: &[(Product, Option<DateTime<Utc>>)]) -> Value {
    let mut m = Map::new();
    for (p, t) in v {
        m.insert(
            p.as_str().to_owned(),
            t.map_or(Value::Null, |t| iso(t).into()),
        );
    }
    Value::Object(m)
}

/// The JSON body of event `caused` of `link` at `at`.
pub fn body(link: &str, caused: &Caused, at: DateTime<Utc>, view: &LinkView) -> String {
    let mut data = json!({
        "link_id": link,
        "product": caused.product.map(Product::as_str),
        "reason": caused.reason,
        "link": {
            "state": view.state.as_str(),
            "products": view.products.iter().map(Product::as_str).collect::<Vec<_>>(),
            "last_requested_at": per_product(&view.last_requested),
            "last_refreshed_at": per_product(&view.last_refreshed),
        },
    });
    if caused.kind == EventType::NeedsUserAction {
        data["link_error_code"] = caused.link_error_code.clone().into();
    }
    json!({ "type": caused.kind.as_str(), "timestamp": iso(at), "data": data }).to_string()
}

/// The body of a `budget.exhausted` event at `at`: the same envelope, with
/// the standing of the budget in `data` and no link.
pub fn budget_exhausted_body(
    at: DateTime<Utc>,
    used: u64,
    limit: u64,
    window_seconds: u64,
    waiting: u64,
) -> String {
    json!({
        "type": EventType::BudgetExhausted.as_str(),
        "timestamp": iso(at),
        "data": {
            "reason": format!(
                "{used} of {limit} POSTs in the last {window_seconds} s: \
                 no more until the oldest leave the window"
            ),
            "used": used,
            "limit": limit,
            "window_seconds": window_seconds,
            "waiting": waiting,
        },
    })
    .to_string()
}

/// Replicas re-read the budget's count each second, so they see an episode
/// start within about that of each other: an episode bucket is never
/// narrower than a few of those.
const MIN_EPISODE_BUCKET_MS: i64 = 5_000;

/// The id of the `budget.exhausted` event of the episode that started at
/// `at` under a `window_ms` window, and the width of its bucket in
/// milliseconds: the start of its budget bucket (`window / 1440`, as the
/// budget counts, at least 5 s), so every replica that sees the episode
/// gives it the same id (see
/// [`Outbox::record_budget_exhausted`](crate::store::Outbox::record_budget_exhausted)).
pub fn budget_episode_id(at: DateTime<Utc>, window_ms: i64) -> (String, i64) {
    let width = (window_ms / 1440).max(MIN_EPISODE_BUCKET_MS);
    let start = at.timestamp_millis().div_euclid(width) * width;
    (format!("evt_budget_exhausted_{start}"), width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needs_user_action_body_names_the_link_the_code_and_the_view() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let caused = Caused {
            kind: EventType::NeedsUserAction,
            product: None,
            reason: Some("needs_user_action: auth_expired".into()),
            link_error_code: Some("auth_expired".into()),
        };
        let view = LinkView {
            state: LinkState::NeedsUserAction,
            products: ProductSet::parse_list("accounts").unwrap(),
            last_requested: vec![(Product::ALL[0], Some(at))],
            last_refreshed: vec![(Product::ALL[0], None)],
        };
        let v: Value = serde_json::from_str(&body("mk_a", &caused, at, &view)).unwrap();
        assert_eq!(v["type"], "link.needs_user_action");
        assert_eq!(v["data"]["link_id"], "mk_a");
        assert_eq!(v["data"]["link_error_code"], "auth_expired");
        assert_eq!(v["data"]["link"]["state"], "needs_user_action");
        assert_eq!(
            v["data"]["link"]["last_requested_at"][Product::ALL[0].as_str()],
            iso(at)
        );
        assert!(new_id().starts_with("evt_") && new_id() != new_id());
    }

    #[test]
    fn a_budget_episode_has_one_id_per_bucket_and_a_body_without_a_link() {
        let day = 86_400_000;
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let later = at + chrono::TimeDelta::seconds(59);
        assert_eq!(budget_episode_id(at, day), budget_episode_id(later, day));
        assert_eq!(budget_episode_id(at, day).1, 60_000);
        assert_eq!(budget_episode_id(at, 60_000).1, 5_000, "at least 5 s");
        assert_ne!(
            budget_episode_id(at, day),
            budget_episode_id(at + chrono::TimeDelta::seconds(60), day)
        );
        let v: Value = serde_json::from_str(&budget_exhausted_body(at, 10, 10, 86_400, 3)).unwrap();
        assert_eq!(v["type"], "budget.exhausted");
        assert_eq!(v["timestamp"], iso(at));
        assert_eq!(v["data"]["used"], 10);
        assert_eq!(v["data"]["limit"], 10);
        assert_eq!(v["data"]["window_seconds"], 86_400);
        assert_eq!(v["data"]["waiting"], 3);
        assert!(v["data"]["reason"].is_string());
        assert!(v["data"].get("link_id").is_none());
    }
}
