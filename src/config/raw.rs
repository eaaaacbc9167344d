//! The configuration file as written: strings and numbers, before checking.
//!
//! Every table denies unknown keys, so a typo stops start-up instead of being
//! silently ignored. Durations stay strings here so that the checking step can
//! name the key and the bad value in its error.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;

/// The whole file (`linkfresh.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub links_file: Option<String>,
    pub revision: Option<i64>,
    pub moneykit: RawMoneyKit,
    pub database: RawDatabase,
    pub limits: RawLimits,
    pub schedule: RawSchedule,
    pub server: RawServer,
    pub discovery: RawDiscovery,
    pub defaults: RawProfile,
    pub profiles: BTreeMap<String, RawProfile>,
    pub links: Vec<RawLink>,
    pub budget: Option<super::budget::RawBudget>,
    /// `[events]` (see `config::events`).
    pub events: Option<super::events::RawEvents>,
    /// The simulator's own table (`linkfresh sim --config`); checked by the
    /// simulator, ignored by the daemon.
    pub sim: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMoneyKit {
    pub base_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<String>,
    pub scope: Option<String>,
    pub api_version: String,
    pub request_timeout: String,
    pub max_requests_per_second: u32,
    pub max_in_flight: u32,
}

impl Default for RawMoneyKit {
    fn default() -> Self {
        Self {
            base_url: "https://api.moneykit.com".into(),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scope: None,
            api_version: "2023-02-18".into(),
            request_timeout: "30s".into(),
            max_requests_per_second: 10,
            max_in_flight: 8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    pub url: String,
    pub lease: String,
    pub history_retention: String,
    pub partitions: u32,
    /// `None`: the default, bounded by the lease (see `check`).
    pub initial_settle: Option<String>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: "sqlite://linkfresh.db".into(),
            lease: "15s".into(),
            history_retention: "30d".into(),
            partitions: crate::policy::partitions::DEFAULT_PARTITIONS,
            initial_settle: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub accounts: String,
    pub transactions: String,
    pub account_numbers: String,
    pub identity: String,
    pub investments: String,
    pub enrichment: String,
    pub margin: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            accounts: "1h".into(),
            transactions: "1h".into(),
            account_numbers: "24h".into(),
            identity: "24h".into(),
            investments: "24h".into(),
            enrichment: "24h".into(),
            margin: "30s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub coalesce: String,
    pub backoff_base: String,
    pub backoff_max: String,
    pub first_spread: String,
    pub ride_along_share: f64,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            coalesce: "10m".into(),
            backoff_base: "1m".into(),
            backoff_max: "6h".into(),
            first_spread: "1m".into(),
            ride_along_share: 0.05,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub admin_token: Option<Secret>,
    pub admin_token_file: Option<String>,
    pub webhook_path: String,
    pub webhook_listen: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            admin_token: None,
            admin_token_file: None,
            webhook_path: super::DEFAULT_WEBHOOK_PATH.into(),
            webhook_listen: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiscovery {
    pub enabled: bool,
    pub every: String,
    pub products: Vec<String>,
    pub tags: Vec<String>,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        Self {
            enabled: false,
            every: "15m".into(),
            products: vec!["accounts".into(), "transactions".into()],
            tags: Vec::new(),
        }
    }
}

/// `[defaults]` or one `[profiles.NAME]` (see `config::profiles`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProfile {
    pub tags: Vec<String>,
    /// `None`: `[defaults] products` (for `[defaults]`: accounts, transactions).
    pub products: Option<Vec<String>>,
    pub priority: i32,
    pub active_for: Option<String>,
    pub active: BTreeMap<String, String>,
    pub idle: Option<RawIdle>,
    pub every: BTreeMap<String, String>,
    pub cron: BTreeMap<String, String>,
}

/// `idle = "never"` or `idle = { product = "24h" | "never" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawIdle {
    Word(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub id: String,
    pub products: Option<Vec<String>>,
    #[serde(default)]
    pub every: BTreeMap<String, String>,
    #[serde(default)]
    pub cron: BTreeMap<String, String>,
    pub profile: Option<String>,
}
