//! MoneyKit's webhook signing keys, fetched from `/.well-known/jwks.json` and
//! cached. The cache is the only thing an unauthenticated caller can make us
//! fetch, so every fetch, whether the cache went stale or a `kid` is
//! unknown, passes one rate limit: a flood of made-up `kid`s costs MoneyKit
//! at most one request per `min_refetch`.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A verification key and the one algorithm its type allows.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

/// Why no key could be found for a `kid`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The published set has no usable key with this `kid`.
    UnknownKid,
    /// The set could not be fetched and no fresh copy is cached.
    Unavailable,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, VerifyKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The cached key set; one fetch at a time (a tokio mutex held across it).
pub(crate) struct Jwks {
    url: String,
    http: reqwest::Client,
    max_age: Duration,
    min_refetch: Duration,
    cache: Mutex<Cache>,
}

impl Jwks {
    pub fn new(
        url: String,
        http: reqwest::Client,
        max_age: Duration,
        min_refetch: Duration,
    ) -> Self {
        Self {
            url,
            http,
            max_age,
            min_refetch,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The key for `kid`: from the cache while it is younger than `max_age`;
    /// otherwise, or for an unknown `kid`, after one re-fetch if the rate
    /// limit allows it.
    pub async fn key(&self, kid: &str) -> Result<VerifyKey, KeyError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let fresh = cache
            .fetched_at
            .is_some_and(|at| now.duration_since(at) < self.max_age);
        if fresh && let Some(k) = cache.keys.get(kid) {
            return Ok(k.clone());
        }
        let may_fetch = cache
            .last_attempt
            .is_none_or(|at| now.duration_since(at) >= self.min_refetch);
        if may_fetch {
            cache.last_attempt = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), url = %self.url, "fetched MoneyKit webhook keys");
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %self.url, "fetching MoneyKit webhook keys failed");
                }
            }
        }
        let fresh = cache
            .fetched_at
            .is_some_and(|at| Instant::now().duration_since(at) < self.max_age);
        match cache.keys.get(kid) {
            Some(k) if fresh => Ok(k.clone()),
            _ if !fresh => Err(KeyError::Unavailable),
            _ => Err(KeyError::UnknownKid),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyKey>, String> {
        let resp = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        // A key set is a few hundred bytes; the cap keeps a broken or
        // hostile endpoint from filling memory.
        let body = crate::moneykit::body::read_capped(resp, crate::moneykit::body::MAX_BODY)
            .await
            .map_err(|e| e.to_string())?;
        let set: RawSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(parse_keys(set.keys))
    }
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Usable keys by `kid`. A key MoneyKit might add later in a form we do not
/// know (another type or curve) is skipped, not fatal for the others.
fn parse_keys(raw: Vec<serde_json::Value>) -> HashMap<String, VerifyKey> {
    let mut keys = HashMap::new();
    for value in raw {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            tracing::debug!("skipping a JWK that does not parse");
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        match verify_key(&jwk) {
            Some(k) => {
                keys.insert(kid, k);
            }
            None => tracing::debug!(kid, "skipping a JWK that cannot verify ES256 signatures"),
        }
    }
    keys
}

/// The algorithm comes from the key's type, never from the token: an EC
/// P-256 key verifies ES256 and nothing else, which is what defeats
/// `alg: none` and HS256-with-the-public-key tokens.
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a != KeyAlgorithm::ES256)
    {
        return None;
    }
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let key = DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?;
            Some(VerifyKey {
                key,
                alg: Algorithm::ES256,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every request with 200 and a chunked body that never ends.
    async fn endless_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"keys\"\r\n";
                    let _ = sock.write_all(head.as_bytes()).await;
                    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                    while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        format!("http://{addr}/.well-known/jwks.json")
    }

    #[tokio::test]
    async fn a_jwks_answer_with_an_endless_body_fails_promptly_naming_the_cap() {
        let jwks = Jwks::new(
            endless_server().await,
            reqwest::Client::new(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let out = tokio::time::timeout(Duration::from_secs(5), jwks.fetch())
            .await
            .expect("the capped read ends long before the 10 s fetch timeout");
        let err = out.err().expect("an endless key set is refused");
        assert!(err.contains("1 MiB"), "the error names the cap: {err}");
    }
}
