//! Checks a delivery's `MoneyKit-Signature` JWT against the raw body, as
//! MONEYKIT_API.md (Webhooks) prescribes. Pure apart from the key lookup:
//! `now` is passed in, so the time checks follow the daemon's clock.

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::jwks::{Jwks, KeyError};

/// Why a delivery was not accepted as MoneyKit's; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No `MoneyKit-Signature` header, or not ASCII.
    MissingSignature,
    /// The JWT header does not parse, names an unknown `alg` (`none`), or has no `kid`.
    BadHeader,
    /// No published key has this `kid`, even after a re-fetch.
    UnknownKid,
    /// The key set could not be fetched.
    KeysUnavailable,
    /// Wrong algorithm for the key, bad signature, or malformed claims.
    BadSignature,
    /// `request_body_sha256` does not match the body.
    BodyMismatch,
    /// `iat`/`exp` (or the body's `webhook_timestamp`) outside the tolerance.
    Stale,
}

impl Rejection {
    /// The `result` label of `linkfresh_webhooks_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::BadHeader => "bad_header",
            Self::UnknownKid => "unknown_kid",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::BodyMismatch => "body_mismatch",
            Self::Stale => "stale",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    request_body_sha256: String,
    iat: i64,
    exp: Option<i64>,
}

/// Verifies `token` for `body` at `now`, allowing `leeway` either way.
///
/// `iat` is required and must lie within `leeway` of `now` (this bounds how
/// long a captured delivery can be replayed); `exp`, when present, must not
/// be more than `leeway` in the past. jsonwebtoken's own time checks are off
/// because they read the system clock.
pub(crate) async fn verify(
    jwks: &Jwks,
    token: &str,
    body: &[u8],
    now: DateTime<Utc>,
    leeway: TimeDelta,
) -> Result<(), Rejection> {
    let header = decode_header(token).map_err(|_| Rejection::BadHeader)?;
    let kid = header.kid.as_deref().ok_or(Rejection::BadHeader)?;
    let key = jwks.key(kid).await.map_err(|e| match e {
        KeyError::UnknownKid => Rejection::UnknownKid,
        KeyError::Unavailable => Rejection::KeysUnavailable,
    })?;
    if header.alg != key.alg {
        return Err(Rejection::BadSignature);
    }
    let mut validation = Validation::new(key.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = decode::<Claims>(token, &key.key, &validation)
        .map_err(|_| Rejection::BadSignature)?
        .claims;
    let digest = hex(&Sha256::digest(body));
    if !claims.request_body_sha256.eq_ignore_ascii_case(&digest) {
        return Err(Rejection::BodyMismatch);
    }
    let now_s = now.timestamp();
    let leeway_s = leeway.num_seconds();
    if claims.iat.saturating_sub(now_s).saturating_abs() > leeway_s {
        return Err(Rejection::Stale);
    }
    if claims
        .exp
        .is_some_and(|exp| exp.saturating_add(leeway_s) < now_s)
    {
        return Err(Rejection::Stale);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
