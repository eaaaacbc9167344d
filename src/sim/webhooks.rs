//! Signed webhooks, as MoneyKit sends them: an EC P-256 key published at
//! `GET /.well-known/jwks.json`, deliveries whose `MoneyKit-Signature` JWT
//! (ES256, `kid`, `iat`, `exp`, `request_body_sha256`) covers the raw body,
//! `link.product_refresh` shortly after an accepted refresh and
//! `link.state_changed` when a test changes a link's condition.
//!
//! Tests also get the tools of an attacker or a flaky network: every
//! delivery is kept ([`SimHandle::deliveries`]) and can be replayed, altered
//! or sent raw, and keys can be rotated with the old `kid` still published.
//!
//! Keys come from `aws-lc-rs`, which is already in the build as the
//! crypto provider of jsonwebtoken, rustls and sqlx: no new crypto crate
//! just to make a test key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::domain::{LinkId, Product, ProductSet};
use crate::moneykit::wire::format_time;

use super::{SimHandle, SimLinkState};

/// An ES256 signing key with its `kid`; public so tests can sign with a key
/// MoneyKit never published.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl SigningKey {
    /// A fresh random P-256 key named `kid`.
    pub fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("generating a P-256 key");
        let pkcs8 = pair.to_pkcs8v1().expect("encoding a P-256 key as PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public,
        }
    }

    /// The key id the JWT header names.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public point, uncompressed SEC1 (`04 || x || y`): what an attacker
    /// might try as an HS256 secret.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The public key as MoneyKit publishes it in its JWKS.
    pub fn jwk(&self) -> Value {
        let (x, y) = self.public[1..].split_at(32);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// A compact ES256 JWT over `claims`, with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing with ES256")
    }

    /// The claims MoneyKit puts in a signature for `body` issued at `now`.
    pub fn claims_for(body: &[u8], now: DateTime<Utc>) -> Value {
        json!({
            "iat": now.timestamp(),
            "exp": (now + TimeDelta::minutes(5)).timestamp(),
            "request_body_sha256": hex_sha256(body),
        })
    }
}

/// Lower-case hex SHA-256, as `request_body_sha256` carries it.
pub fn hex_sha256(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One webhook POST, as sent (or about to be sent) to a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Where it went.
    pub url: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The receiver's status; `None` if it could not be reached or not sent yet.
    pub status: Option<u16>,
}

impl WebhookDelivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The same delivery with one header replaced (or added): for tampering.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The same headers (and signature) over another body: for tampering.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The body as JSON (every simulator body is).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A `link.product_refresh` event body.
pub fn product_refresh_event(
    link: &LinkId,
    product: Product,
    state: &str,
    at: DateTime<Utc>,
) -> Value {
    let mut v = common("link.product_refresh", link, at);
    v["product"] = json!(product.as_str());
    v["state"] = json!(state);
    v["state_changed_at"] = json!(format_time(at));
    v["error_message"] = if state == "failed" {
        json!("Simulated refresh failure")
    } else {
        Value::Null
    };
    v
}

/// A `link.state_changed` event body (`connected`, `error`, `deleted`, ...).
pub fn state_changed_event(link: &LinkId, state: &str, at: DateTime<Utc>) -> Value {
    let mut v = common("link.state_changed", link, at);
    v["state"] = json!(state);
    v["error"] = Value::Null;
    v["error_message"] = Value::Null;
    v
}

/// A `transactions.updates_available` event body.
pub fn transactions_updates_event(link: &LinkId, at: DateTime<Utc>) -> Value {
    let mut v = common("transactions.updates_available", link, at);
    v["has_history"] = json!(true);
    v
}

/// The common keys; `webhook_timestamp` is `at` as well (the simulator
/// sends at once); set it on the returned value for a late delivery.
fn common(event: &str, link: &LinkId, at: DateTime<Utc>) -> Value {
    json!({
        "webhook_event": event,
        "webhook_major_version": 1,
        "webhook_minor_version": 0,
        "webhook_timestamp": format_time(at),
        "webhook_idempotency_key": format!("sim_whk_{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()),
        "link_id": link.as_str(),
        "link_tags": [],
    })
}

/// The simulator's webhook side: keys, sender and the delivery log.
#[derive(Clone)]
pub(crate) struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    /// Published keys, oldest first; the last one signs.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    rotations: Mutex<u32>,
    log: Mutex<Vec<WebhookDelivery>>,
    http: reqwest::Client,
    clock: Clock,
}

/// How long after an accepted refresh the `completed` webhook goes out.
const COMPLETION_DELAY: Duration = Duration::from_millis(20);
/// Keys published at once: the current one and the one before (the overlap).
const PUBLISHED: usize = 2;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Webhooks {
    pub fn new(clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: Mutex::new(vec![Arc::new(SigningKey::generate("sim-1"))]),
                rotations: Mutex::new(1),
                log: Mutex::new(Vec::new()),
                http: reqwest::Client::new(),
                clock,
            }),
        }
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = lock(&self.inner.keys).iter().map(|k| k.jwk()).collect();
        json!({ "keys": keys })
    }

    fn current(&self) -> Arc<SigningKey> {
        lock(&self.inner.keys)
            .last()
            .cloned()
            .expect("the simulator always has a key")
    }

    fn rotate(&self) -> String {
        let mut n = lock(&self.inner.rotations);
        *n += 1;
        let kid = format!("sim-{n}");
        let mut keys = lock(&self.inner.keys);
        keys.push(Arc::new(SigningKey::generate(&kid)));
        let excess = keys.len().saturating_sub(PUBLISHED);
        keys.drain(..excess);
        kid
    }

    fn retire_old(&self) {
        let mut keys = lock(&self.inner.keys);
        let excess = keys.len().saturating_sub(1);
        keys.drain(..excess);
    }

    /// A delivery of `body` to `url`, signed now by the current key.
    fn signed(&self, url: &str, body: &Value) -> WebhookDelivery {
        let body = serde_json::to_vec(body).expect("serialising a webhook body");
        let now = self.inner.clock.now();
        let jwt = self.current().sign(&SigningKey::claims_for(&body, now));
        WebhookDelivery {
            url: url.to_owned(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("moneykit-signature".into(), jwt),
                (
                    "moneykit-delivery-token".into(),
                    format!("sim_dlv_{:016x}", rand::random::<u64>()),
                ),
                ("moneykit-delivery-attempt".into(), "1".into()),
            ],
            body,
            status: None,
        }
    }

    /// Sends `d` as is, logs it with the answer's status and returns that.
    async fn send(&self, mut d: WebhookDelivery) -> Option<u16> {
        let mut req = self.inner.http.post(&d.url).body(d.body.clone());
        for (n, v) in &d.headers {
            req = req.header(n, v);
        }
        d.status = match req.timeout(Duration::from_secs(10)).send().await {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(e) => {
                tracing::debug!(error = %e, url = %d.url, "simulated webhook delivery failed");
                None
            }
        };
        let status = d.status;
        lock(&self.inner.log).push(d);
        status
    }

    /// Signs and sends in the background (from handlers that hold the lock).
    fn spawn(&self, url: String, bodies: Vec<Value>, delay: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            for body in bodies {
                let d = this.signed(&url, &body);
                this.send(d).await;
            }
        });
    }

    /// After an accepted refresh: `completed` for the products refreshed,
    /// `failed` for those the 202 reported as rate limited.
    pub fn refresh_accepted(
        &self,
        url: String,
        link: &LinkId,
        tags: &[String],
        refreshed: ProductSet,
        failed: ProductSet,
    ) {
        let at = self.inner.clock.now();
        let bodies = refreshed
            .iter()
            .map(|p| product_refresh_event(link, p, "completed", at))
            .chain(
                failed
                    .iter()
                    .map(|p| product_refresh_event(link, p, "failed", at)),
            )
            .map(|mut body| {
                body["link_tags"] = json!(tags);
                body
            })
            .collect();
        self.spawn(url, bodies, COMPLETION_DELAY);
    }

    /// After a test changed a link's condition. Like every delivery, it
    /// carries the link's tags, as MoneyKit's do.
    pub fn state_changed(&self, url: String, link: &LinkId, tags: &[String], state: SimLinkState) {
        let name = match state {
            SimLinkState::Healthy => "connected",
            SimLinkState::Deleted => "deleted",
            SimLinkState::NeedsUserAction => "error",
            SimLinkState::NotFound => return,
        };
        let mut body = state_changed_event(link, name, self.inner.clock.now());
        body["link_tags"] = json!(tags);
        self.spawn(url, vec![body], Duration::ZERO);
    }
}

impl SimHandle {
    /// `{base_url}/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base_url())
    }

    /// The `kid` that signs deliveries now.
    pub fn current_kid(&self) -> String {
        self.shared.webhooks.current().kid().to_owned()
    }

    /// Starts signing with a new key; the previous `kid` stays published
    /// (until the next rotation or [`SimHandle::retire_old_keys`]). Returns the new `kid`.
    pub fn rotate_key(&self) -> String {
        self.shared.webhooks.rotate()
    }

    /// Ends the rotation overlap: only the current key stays published.
    pub fn retire_old_keys(&self) {
        self.shared.webhooks.retire_old();
    }

    /// Every delivery sent so far, in order, with the receiver's status.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.shared.webhooks.inner.log).clone()
    }

    /// Sends delivery `n` again byte for byte (a retry or a replay); its status.
    pub async fn replay(&self, n: usize) -> Option<u16> {
        let d = self.deliveries().get(n)?.clone();
        self.shared.webhooks.send(d).await
    }

    /// A delivery of `body` to `url` signed now by the current key, not yet
    /// sent: alter it, then [`SimHandle::send`] it.
    pub fn signed_delivery(&self, url: &str, body: &Value) -> WebhookDelivery {
        self.shared.webhooks.signed(url, body)
    }

    /// Sends a delivery as is and logs it; the receiver's status.
    pub async fn send(&self, d: WebhookDelivery) -> Option<u16> {
        self.shared.webhooks.send(d).await
    }

    /// Signs `body` now and sends it to `url`; the receiver's status.
    pub async fn deliver(&self, url: &str, body: &Value) -> Option<u16> {
        let d = self.signed_delivery(url, body);
        self.send(d).await
    }

    /// Sends arbitrary headers and body to `url` (forged deliveries).
    pub async fn send_raw(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<u16> {
        let d = WebhookDelivery {
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
            status: None,
        };
        self.send(d).await
    }

    /// Signs `claims` with the current key (for hand-made tokens).
    pub fn sign_claims(&self, claims: &Value) -> String {
        self.shared.webhooks.current().sign(claims)
    }

    /// The current key's public point (SEC1 uncompressed), for forgery tests.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        self.shared.webhooks.current().public_key_bytes().to_vec()
    }
}
