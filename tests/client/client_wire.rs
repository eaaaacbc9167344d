//! Wire parsing: MoneyKit's bodies as they come, with zone-less times,
//! unknown fields and unknown enum values.

use linkfresh::domain::Product;
use linkfresh::moneykit::wire::{
    ErrorBody, Link, LinkErrorCode, LinkPage, LinkStatus, ProductErrorCode, parse_time,
};

#[test]
fn a_link_with_zone_less_times_unknown_fields_and_unknown_enums_parses() {
    let raw = r#"{
        "link_id": "mk_eqkWN34UEoa2NxyALG8pcV",
        "institution_id": "chase", "institution_name": "Chase", "institution_avatar": "x",
        "state": "hibernating",
        "error_code": "brand_new_error",
        "provider": "teller",
        "link_tags": null,
        "products": {
            "accounts": {"refreshed_at": "2023-02-16T09:14:11", "last_attempted_at": "2023-02-16T09:14:11+00:00",
                         "error_code": null, "shiny_new_field": 1},
            "transactions": {"refreshed_at": null, "error_code": "rate_limit", "has_history": false},
            "identity": {"error_code": "quantum_flux"},
            "crypto": {"refreshed_at": "2023-02-16T09:14:11"}
        },
        "available_products": ["accounts", "crypto"],
        "something_else": {"nested": true}
    }"#;
    let link: Link = serde_json::from_str(raw).unwrap();
    assert_eq!(link.state, LinkStatus::Other);
    assert_eq!(link.error_code, Some(LinkErrorCode::Other));
    let acc = link.product(Product::Accounts).unwrap();
    assert_eq!(acc.refreshed_at, parse_time("2023-02-16T09:14:11Z"));
    assert_eq!(acc.last_attempted_at, acc.refreshed_at);
    assert_eq!(
        link.product(Product::Transactions).unwrap().error_code,
        Some(ProductErrorCode::RateLimit)
    );
    assert_eq!(
        link.product(Product::Identity).unwrap().error_code,
        Some(ProductErrorCode::Other)
    );
    assert_eq!(link.products.len(), 3, "the unknown product is dropped");
    assert_eq!(link.available_products, [Product::Accounts]);
}

#[test]
fn a_link_round_trips_through_the_simulators_serialisation() {
    let raw = r#"{"link_id":"mk_a","state":"connected","products":{"accounts":{"refreshed_at":"2023-02-16T09:14:11.500"}}}"#;
    let link: Link = serde_json::from_str(raw).unwrap();
    let again: Link = serde_json::from_str(&serde_json::to_string(&link).unwrap()).unwrap();
    assert_eq!(link, again);
    assert!(
        serde_json::to_string(&link)
            .unwrap()
            .contains("\"2023-02-16T09:14:11.500000\"")
    );
}

#[test]
fn error_bodies_keep_the_link_error_code_and_ignore_extras() {
    let raw = r#"{"error_code":"link_error.bad_state","error_message":"m","link_error_code":"auth_expired","trace":"x"}"#;
    let e: ErrorBody = serde_json::from_str(raw).unwrap();
    assert_eq!(e.link_error_code.as_deref(), Some("auth_expired"));
}

#[test]
fn an_empty_next_cursor_ends_the_listing() {
    let page: LinkPage = serde_json::from_str(
        r#"{"links":[{"link_id":"mk_a","created_at":"2023-01-01T00:00:00"}],"next_cursor":""}"#,
    )
    .unwrap();
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.links.len(), 1);
    let page: LinkPage = serde_json::from_str(r#"{"links":[]}"#).unwrap();
    assert_eq!(page.next_cursor, None);
}

#[test]
fn a_garbled_timestamp_is_an_error_not_never() {
    let raw = r#"{"link_id":"mk_a","state":"connected","products":{"accounts":{"refreshed_at":"last tuesday"}}}"#;
    assert!(serde_json::from_str::<Link>(raw).is_err());
}
