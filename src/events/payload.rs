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
}
