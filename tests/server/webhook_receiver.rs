//! The webhook receiver over real HTTP, against the simulator's signed
//! deliveries and JWKS: what is applied, and every way a delivery is refused.

use crate::webhook_common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use linkfresh::domain::{LinkState, Product};
use linkfresh::sim::{
    SigningKey, SimLink, SimLinkState, hex_sha256, product_refresh_event, state_changed_event,
    transactions_updates_event,
};
use linkfresh::webhook::WebhookSettings;
use serde_json::json;

use webhook_common::{LINK, Rig, ago, id, now, rig, rig_with};

fn completed(at_secs_ago: i64) -> serde_json::Value {
    product_refresh_event(&id(LINK), Product::Accounts, "completed", ago(at_secs_ago))
}

/// Sends `body` with a hand-made `MoneyKit-Signature`.
async fn send_with_token(r: &Rig, body: &serde_json::Value, token: &str) -> Option<u16> {
    let body = serde_json::to_vec(body).unwrap();
    r.sim
        .send_raw(
            &r.url,
            &[
                ("content-type", "application/json"),
                ("moneykit-signature", token),
            ],
            &body,
        )
        .await
}

/// Asserts a forged delivery is refused with `status` and changes nothing.
async fn assert_refused(r: &Rig, status: Option<u16>, want: u16) {
    let before = r.snapshot().await;
    assert_eq!(status, Some(want));
    assert_eq!(
        r.refreshed_at(Product::Accounts).await,
        None,
        "nothing was applied"
    );
    assert_eq!(r.snapshot().await, before);
}

/// Issue 17: every delivery carries the link's tags, which select its
/// profile; a user changing tier shows there first.
#[tokio::test]
async fn a_delivery_stores_the_links_tags_and_the_same_tags_again_change_nothing() {
    let r = rig().await;
    let mut body = completed(60);
    body["link_tags"] = json!(["plan:premium"]);
    assert_eq!(r.sim.deliver(&r.url, &body).await, Some(200));
    assert_eq!(r.link().await.tags, vec!["plan:premium".to_owned()]);
    let before = r.snapshot().await;
    let mut again = completed(30);
    again["link_tags"] = json!(["plan:premium"]);
    assert_eq!(r.sim.deliver(&r.url, &again).await, Some(200));
    let after = r.snapshot().await;
    assert_eq!(
        after[0].change_seq,
        before[0].change_seq + 1,
        "only the refresh time moved"
    );
    assert_eq!(after[0].tags, before[0].tags);
}

#[tokio::test]
async fn a_valid_product_refresh_webhook_moves_the_products_server_refreshed_at() {
    let r = rig().await;
    let status = r.sim.deliver(&r.url, &completed(60)).await;
    assert_eq!(status, Some(200));
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(60)));
    assert_eq!(r.refreshed_at(Product::Transactions).await, None);
}

#[tokio::test]
async fn a_failed_product_refresh_records_only_the_attempt_time() {
    let r = rig().await;
    let body = product_refresh_event(&id(LINK), Product::Transactions, "failed", ago(30));
    assert_eq!(r.sim.deliver(&r.url, &body).await, Some(200));
    let link = r.link().await;
    let tx = link
        .schedules
        .iter()
        .find(|s| s.product == Product::Transactions)
        .unwrap();
    assert_eq!(tx.server_attempted_at, Some(ago(30)));
    assert_eq!(tx.server_refreshed_at, None);
}

#[tokio::test]
async fn a_tampered_body_is_rejected_and_changes_nothing() {
    let r = rig().await;
    let signed = r.sim.signed_delivery(&r.url, &completed(600));
    let tampered = signed.with_body(serde_json::to_vec(&completed(1)).unwrap());
    let status = r.sim.send(tampered).await;
    assert_refused(&r, status, 400).await;
}

#[tokio::test]
async fn a_token_signed_by_a_key_moneykit_never_published_is_rejected() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    // Same kid as the published key, different key.
    let impostor = SigningKey::generate(&r.sim.current_kid());
    let token = impostor.sign(&SigningKey::claims_for(&bytes, now()));
    let status = send_with_token(&r, &body, &token).await;
    assert_refused(&r, status, 400).await;
}

#[tokio::test]
async fn an_unknown_kid_with_no_such_published_key_is_rejected() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    let stranger = SigningKey::generate("not-a-moneykit-kid");
    let token = stranger.sign(&SigningKey::claims_for(&bytes, now()));
    let status = send_with_token(&r, &body, &token).await;
    assert_refused(&r, status, 400).await;
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    let t = now();
    let claims = json!({
        "iat": (t - TimeDelta::minutes(16)).timestamp(),
        "exp": (t - TimeDelta::minutes(11)).timestamp(),
        "request_body_sha256": hex_sha256(&bytes),
    });
    let token = r.sim.sign_claims(&claims);
    let status = send_with_token(&r, &body, &token).await;
    assert_refused(&r, status, 400).await;
}

#[tokio::test]
async fn a_fresh_token_over_a_stale_webhook_timestamp_is_rejected() {
    let r = rig().await;
    let mut body = completed(60);
    body["webhook_timestamp"] = json!(linkfresh::moneykit::wire::format_time(ago(11 * 60)));
    let status = r.sim.deliver(&r.url, &body).await;
    assert_refused(&r, status, 400).await;
}

#[tokio::test]
async fn a_token_with_alg_none_is_rejected() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    let header = json!({ "alg": "none", "typ": "JWT", "kid": r.sim.current_kid() });
    let claims = SigningKey::claims_for(&bytes, now());
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    for token in [
        format!("{}.{}.", b64(&header), b64(&claims)),
        format!("{}.{}", b64(&header), b64(&claims)),
    ] {
        let status = send_with_token(&r, &body, &token).await;
        assert_refused(&r, status, 400).await;
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_rejected() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    let claims = SigningKey::claims_for(&bytes, now());
    let jwks = reqwest::get(r.sim.jwks_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwk =
        serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&jwks).unwrap()["keys"][0])
            .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(r.sim.current_kid());
    for secret in [r.sim.public_key_bytes(), jwk, jwks.into_bytes()] {
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        let status = send_with_token(&r, &body, &token).await;
        assert_refused(&r, status, 400).await;
    }
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_changes_nothing() {
    let r = rig().await;
    let mut body = completed(60);
    body["padding"] = json!("x".repeat(70 * 1024));
    let status = r.sim.deliver(&r.url, &body).await;
    assert_refused(&r, status, 413).await;
}

#[tokio::test]
async fn a_replayed_idempotency_key_is_acknowledged_but_not_applied_again() {
    let r = rig().await;
    assert_eq!(r.sim.deliver(&r.url, &completed(230)).await, Some(200));
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(230)));
    // The same bytes again (a retry or a captured replay).
    assert_eq!(r.sim.replay(0).await, Some(200));
    // A freshly signed delivery reusing the key, carrying a later time: dropped.
    let mut again = completed(10);
    again["webhook_idempotency_key"] =
        r.sim.deliveries()[0].json()["webhook_idempotency_key"].clone();
    let before = r.snapshot().await;
    assert_eq!(r.sim.deliver(&r.url, &again).await, Some(200));
    assert_eq!(r.snapshot().await, before);
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(230)));
    // A new key with the same content is applied. The time is taken once:
    // `ago` read twice could straddle a second boundary.
    let at = ago(10);
    let fresh = product_refresh_event(&id(LINK), Product::Accounts, "completed", at);
    assert_eq!(r.sim.deliver(&r.url, &fresh).await, Some(200));
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(at));
}

#[tokio::test]
async fn after_a_key_rotation_the_old_kid_is_still_accepted_during_the_overlap() {
    let r = rig_with(WebhookSettings {
        jwks_min_refetch: Duration::ZERO,
        ..WebhookSettings::default()
    })
    .await;
    assert_eq!(r.sim.deliver(&r.url, &completed(230)).await, Some(200));
    let old_kid = r.sim.current_kid();
    let signed_by_old = r.sim.signed_delivery(&r.url, &completed(100));
    let new_kid = r.sim.rotate_key();
    assert_ne!(old_kid, new_kid);
    assert_eq!(
        r.sim.deliver(&r.url, &completed(200)).await,
        Some(200),
        "new kid"
    );
    assert_eq!(
        signed_by_old
            .header("moneykit-signature")
            .map(|t| t.is_empty()),
        Some(false)
    );
    assert_eq!(
        r.sim.send(signed_by_old).await,
        Some(200),
        "old kid during the overlap"
    );
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(100)));
    assert_eq!(
        r.jwks_requests(),
        2,
        "one fetch at start, one for the new kid"
    );
}

#[tokio::test]
async fn a_parked_link_resumes_on_a_connected_webhook() {
    let r = rig().await;
    r.park(LinkState::NeedsUserAction).await;
    let link = SimLink {
        webhook: Some(r.url.clone()),
        ..SimLink::healthy(id(LINK)).with_state(SimLinkState::NeedsUserAction)
    };
    r.sim.set_link(link);
    r.sim.set_link_fault(&id(LINK), SimLinkState::Healthy);
    r.wait_for("the link to be active again", |l| {
        l.state == LinkState::Active
    })
    .await;
    assert_eq!(r.link().await.reason, None);
    // The simulator logs a delivery when the answer is back, a moment after
    // the receiver committed the new state: wait for the log too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while r.sim.deliveries().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = r.sim.deliveries();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json()["webhook_event"], "link.state_changed");
    assert_eq!(sent[0].status, Some(200));
}

#[tokio::test]
async fn a_connected_webhook_does_not_resume_a_link_an_operator_paused() {
    let r = rig().await;
    r.park(LinkState::Paused).await;
    let body = state_changed_event(&id(LINK), "connected", now());
    assert_eq!(r.sim.deliver(&r.url, &body).await, Some(200));
    assert_eq!(r.link().await.state, LinkState::Paused);
}

#[tokio::test]
async fn a_deleted_webhook_parks_the_link() {
    let r = rig().await;
    let body = state_changed_event(&id(LINK), "deleted", now());
    assert_eq!(r.sim.deliver(&r.url, &body).await, Some(200));
    assert_eq!(r.link().await.state, LinkState::Deleted);
}

#[tokio::test]
async fn out_of_order_product_refreshes_never_move_refreshed_at_backwards() {
    let r = rig().await;
    // One `now` for the whole test: `ago` read twice across a second
    // boundary named two different seconds.
    let start = now();
    let ago = |secs: i64| start - chrono::TimeDelta::seconds(secs);
    let event = |state: &str, at| product_refresh_event(&id(LINK), Product::Accounts, state, at);
    assert_eq!(
        r.sim.deliver(&r.url, &event("completed", ago(10))).await,
        Some(200)
    );
    assert_eq!(
        r.sim.deliver(&r.url, &event("completed", ago(120))).await,
        Some(200)
    );
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(10)));
    let failed_late = event("failed", ago(5));
    let failed_early = event("failed", ago(200));
    assert_eq!(r.sim.deliver(&r.url, &failed_late).await, Some(200));
    assert_eq!(r.sim.deliver(&r.url, &failed_early).await, Some(200));
    let link = r.link().await;
    let acc = link
        .schedules
        .iter()
        .find(|s| s.product == Product::Accounts)
        .unwrap();
    assert_eq!(acc.server_attempted_at, Some(ago(5)));
    assert_eq!(acc.server_refreshed_at, Some(ago(10)));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval() {
    let r = rig().await;
    let body = completed(60);
    let bytes = serde_json::to_vec(&body).unwrap();
    for n in 0..50 {
        let token = SigningKey::generate(&format!("flood-{n}"))
            .sign(&SigningKey::claims_for(&bytes, now()));
        assert_eq!(send_with_token(&r, &body, &token).await, Some(400));
    }
    assert_eq!(r.jwks_requests(), 1, "only the first unknown kid may fetch");
    // Genuine deliveries still verify from the cache.
    assert_eq!(r.sim.deliver(&r.url, &completed(30)).await, Some(200));
    assert_eq!(r.jwks_requests(), 1);
    assert_eq!(r.refreshed_at(Product::Accounts).await, Some(ago(30)));
}

#[tokio::test]
async fn webhooks_for_unknown_links_and_other_events_are_acknowledged_and_ignored() {
    let r = rig().await;
    let before = r.snapshot().await;
    let stranger = product_refresh_event(
        &id("mk_someone_else"),
        Product::Accounts,
        "completed",
        ago(5),
    );
    assert_eq!(r.sim.deliver(&r.url, &stranger).await, Some(200));
    let updates = transactions_updates_event(&id(LINK), now());
    assert_eq!(r.sim.deliver(&r.url, &updates).await, Some(200));
    assert_eq!(r.snapshot().await, before);
}

#[tokio::test]
async fn the_simulator_reports_an_accepted_refresh_by_a_signed_webhook() {
    let r = rig().await;
    let link = SimLink {
        webhook: Some(r.url.clone()),
        ..SimLink::healthy(id(LINK))
    };
    r.sim.set_link(link);
    let cfg = linkfresh::sim::SimConfig::default();
    let client = linkfresh::moneykit::MoneyKit::new(linkfresh::moneykit::ClientConfig {
        base_url: r.sim.base_url(),
        client_id: cfg.client_id.clone(),
        client_secret: linkfresh::secret::Secret::new(cfg.client_secret.clone()),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(5),
        scope: None,
    })
    .unwrap();
    let outcome = client
        .refresh(
            &id(LINK),
            linkfresh::domain::ProductSet::parse_list("transactions").unwrap(),
        )
        .await;
    assert!(
        matches!(
            outcome,
            linkfresh::moneykit::RefreshOutcome::Accepted { .. }
        ),
        "{outcome:?}"
    );
    r.wait_for("transactions refreshed_at from the webhook", |l| {
        l.schedules
            .iter()
            .any(|s| s.product == Product::Transactions && s.server_refreshed_at.is_some())
    })
    .await;
    // The simulator logs a delivery once the receiver has answered, which is
    // after the receiver's commit: the store can show it first.
    assert!(
        crate::daemon::wait_until(Duration::from_secs(5), || !r.sim.deliveries().is_empty()).await,
        "the simulator logged no delivery"
    );
    let sent = r.sim.deliveries();
    assert_eq!(sent[0].json()["state"], "completed");
    assert!(sent[0].header("moneykit-delivery-token").is_some());
    assert_eq!(sent[0].header("moneykit-delivery-attempt"), Some("1"));
}
