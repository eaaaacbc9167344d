//! `[events]`: where linkfresh sends its outbound events (issue 18), how
//! they are signed, and when a product's data counts as stale. Optional:
//! without the table no event is written or sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::domain::Product;
use crate::duration;
use crate::secret::Secret;

/// `[events]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub url: Option<String>,
    pub secret: Option<Secret>,
    pub secret_file: Option<String>,
    pub stale_after: BTreeMap<String, String>,
    pub retry_for: Option<String>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
    pub timeout: Option<String>,
}

/// `[events]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// The app's endpoint (http or https).
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_` + base64), read from
    /// `secret` or `secret_file` when the config is loaded.
    pub secret: Secret,
    /// Per product: a last refresh older than this opens a `data.stale`
    /// episode.
    pub stale_after: Vec<(Product, Duration)>,
    /// How long an event is retried before it is marked failed (default 3d).
    pub retry_for: Duration,
    /// First pause between tries (default 5s); doubles with jitter.
    pub backoff_base: Duration,
    /// Longest pause between tries (default 1h).
    pub backoff_max: Duration,
    /// Per delivery: connect plus answer (default 10s).
    pub timeout: Duration,
}

/// Checks `[events]`; `dir` resolves a relative `secret_file`.
pub(super) fn check(
    file: &str,
    dir: &Path,
    raw: Option<RawEvents>,
) -> Result<Option<EventsConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |key: &str, value: &str, problem: &str| ConfigError::Invalid {
        file: file.to_owned(),
        key: format!("[events] {key}"),
        value: format!("{value:?}"),
        problem: problem.to_owned(),
    };
    let url = raw.url.ok_or_else(|| ConfigError::Missing {
        file: file.to_owned(),
        key: "[events] url".into(),
        help: "give the app's endpoint, e.g. url = \"https://app.example/hooks/linkfresh\", or remove [events]".into(),
    })?;
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(invalid(
                "url",
                &crate::secret::redact_url(&url),
                "not an http(s) URL; e.g. https://app.example/hooks/linkfresh",
            ));
        }
    }
    let (secret, key) = match (raw.secret.filter(|s| !s.is_empty()), raw.secret_file) {
        (Some(_), Some(f)) => {
            return Err(invalid(
                "secret_file",
                &f,
                "both secret and secret_file are set; set only one",
            ));
        }
        (Some(s), None) => (s, "secret"),
        (None, Some(f)) => {
            let p = Path::new(&f);
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "secret_file",
                    &path.display().to_string(),
                    &format!("cannot be read: {e}"),
                )
            })?;
            (
                Secret::new(text.trim_end_matches(['\r', '\n'])),
                "secret_file",
            )
        }
        (None, None) => {
            return Err(ConfigError::Missing {
                file: file.to_owned(),
                key: "[events] secret".into(),
                help: "set secret = \"whsec_...\" or secret_file = PATH (a Standard Webhooks secret: whsec_ and base64)".into(),
            });
        }
    };
    if !secret.expose().starts_with("whsec_")
        || standardwebhooks::Webhook::new(secret.expose()).is_err()
    {
        return Err(invalid(
            key,
            "[redacted]",
            "not a Standard Webhooks secret: whsec_ followed by base64, e.g. whsec_ and the output of `openssl rand -base64 32`",
        ));
    }
    let dur = |key: &str, raw: Option<String>, default: &str| {
        let raw = raw.unwrap_or_else(|| default.to_owned());
        duration::parse_duration_bounded(&raw).map_err(|e| invalid(key, &raw, &e.to_string()))
    };
    let mut stale_after = Vec::new();
    for (name, raw) in raw.stale_after {
        let key = format!("stale_after.{name}");
        let p = Product::parse(&name).map_err(|e| invalid(&key, &name, &e.to_string()))?;
        stale_after.push((p, dur(&key, Some(raw), "")?));
    }
    Ok(Some(EventsConfig {
        url,
        secret,
        stale_after,
        retry_for: dur("retry_for", raw.retry_for, "3d")?,
        backoff_base: dur("backoff_base", raw.backoff_base, "5s")?,
        backoff_max: dur("backoff_max", raw.backoff_max, "1h")?,
        timeout: dur("timeout", raw.timeout, "10s")?,
    }))
}
