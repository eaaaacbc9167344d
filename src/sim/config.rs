//! What the simulator pretends: credentials, token lifetime, per-product
//! windows, the links it knows and the faults it injects. Read from the
//! `[sim]` table of a TOML file, or built in code by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{LinkId, Product, ProductSet};

/// The simulator's whole configuration.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The only client id `/auth/token` accepts.
    pub client_id: String,
    /// The only client secret `/auth/token` accepts (a fake; not a [`crate::secret::Secret`]).
    pub client_secret: String,
    /// Lifetime of issued access tokens.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Minimum spacing per product on one link (sliding window).
    pub windows: Windows,
    /// Links with a configured behaviour; listed first by `GET /links`.
    pub links: Vec<SimLink>,
    /// Whether ids not in `links` behave as healthy connected links (true)
    /// or answer 404 (false).
    pub unknown_links_allowed: bool,
    /// Injected failures.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: "sim_client".into(),
            client_secret: "sim_secret".into(),
            token_ttl: Duration::from_secs(3600),
            windows: Windows::default(),
            links: Vec::new(),
            unknown_links_allowed: true,
            faults: Faults::default(),
        }
    }
}

/// Per-product refresh windows, defaulting to MoneyKit's documented limits
/// (and a day for the undocumented ones).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // one field per product
pub struct Windows {
    #[serde(with = "humantime_serde")]
    pub accounts: Duration,
    #[serde(with = "humantime_serde")]
    pub transactions: Duration,
    #[serde(with = "humantime_serde")]
    pub account_numbers: Duration,
    #[serde(with = "humantime_serde")]
    pub identity: Duration,
    #[serde(with = "humantime_serde")]
    pub investments: Duration,
    #[serde(with = "humantime_serde")]
    pub enrichment: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        const H: u64 = 3600;
        Self {
            accounts: Duration::from_secs(H),
            transactions: Duration::from_secs(H),
            account_numbers: Duration::from_secs(24 * H),
            identity: Duration::from_secs(24 * H),
            investments: Duration::from_secs(24 * H),
            enrichment: Duration::from_secs(24 * H),
        }
    }
}

impl Windows {
    /// Every product with the same window; handy for fast tests.
    pub fn uniform(d: Duration) -> Self {
        Self {
            accounts: d,
            transactions: d,
            account_numbers: d,
            identity: d,
            investments: d,
            enrichment: d,
        }
    }

    /// The window of one product.
    pub fn get(&self, p: Product) -> Duration {
        match p {
            Product::Accounts => self.accounts,
            Product::Transactions => self.transactions,
            Product::AccountNumbers => self.account_numbers,
            Product::Identity => self.identity,
            Product::Investments => self.investments,
            Product::Enrichment => self.enrichment,
        }
    }
}

/// How a link answers, as MoneyKit would for a link in that condition.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SimLinkState {
    /// Connected; refreshes are accepted within the windows.
    #[default]
    Healthy,
    /// 410 `link_error.deleted`.
    Deleted,
    /// 404 `link_error.not_found` (and absent from `GET /links`).
    NotFound,
    /// 422 `link_error.bad_state` with `link_error_code`.
    NeedsUserAction,
}

/// One link the simulator knows.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SimLink {
    /// The link id.
    pub id: LinkId,
    /// Its condition.
    #[serde(default)]
    pub state: SimLinkState,
    /// The link error code sent with 422 and shown in the link; defaults to
    /// `auth_expired`.
    #[serde(default)]
    pub link_error_code: Option<String>,
    /// Products the user did not grant: a refresh asking for any of them is 403.
    #[serde(default)]
    pub forbidden_products: ProductSet,
    /// Products a 202 reports with per-product `error_code: rate_limit`
    /// (accepted, but not refreshed).
    #[serde(default)]
    pub rate_limited_products: ProductSet,
    /// The link's webhook URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The link's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl SimLink {
    /// A healthy link with nothing special.
    pub fn healthy(id: LinkId) -> Self {
        Self {
            id,
            state: SimLinkState::Healthy,
            link_error_code: None,
            forbidden_products: ProductSet::EMPTY,
            rate_limited_products: ProductSet::EMPTY,
            webhook: None,
            tags: Vec::new(),
        }
    }

    /// The same link in another condition.
    pub fn with_state(mut self, state: SimLinkState) -> Self {
        self.state = state;
        self
    }
}

/// How `Retry-After` is written on injected 429s.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterFormat {
    /// `Retry-After: 120`.
    #[default]
    Seconds,
    /// `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT`.
    HttpDate,
}

/// Injected failures. Rates are probabilities per request, 0 to 1.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of link requests answered 503 before doing anything.
    pub error_rate_503: f64,
    /// Share of refreshes answered 429 even inside the limits.
    pub rate_429: f64,
    /// `Retry-After` sent with those injected 429s (none: no header).
    #[serde(with = "humantime_serde")]
    pub retry_after: Option<Duration>,
    /// How that `Retry-After` is written.
    pub retry_after_format: RetryAfterFormat,
    /// Periods, counted from start, in which every endpoint answers 503.
    pub outages: Vec<Outage>,
    /// Share of 202s whose body is cut short (the refresh still happens).
    pub malformed_202_rate: f64,
    /// Share of refreshes answered 422 (`link_error_code` `item_locked`)
    /// without refreshing, the link itself staying connected: a user who
    /// reconnects at once, so the next re-check resumes the link. Makes
    /// outbound events (a park and a resume each) at a chosen rate for the
    /// benchmarks.
    pub bad_state_rate: f64,
    /// Delay added to every link answer, after the request took effect.
    #[serde(with = "humantime_serde")]
    pub slow_response: Option<Duration>,
}

/// A period of total unavailability.
#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// When it starts, counted from the simulator's start.
    #[serde(with = "humantime_serde")]
    pub start_after: Duration,
    /// How long it lasts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Why a simulator config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    /// The file could not be read.
    #[error("cannot read simulator config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `[sim]` table is malformed (unknown key, bad duration, ...).
    #[error("bad simulator config in {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key.
        source: toml::de::Error,
    },
}

/// Reads the `[sim]` table of a TOML file (other tables are ignored, so the
/// daemon's config file may hold it); a missing table means defaults.
pub fn load_config(path: impl AsRef<Path>) -> Result<SimConfig, SimConfigError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        sim: SimConfig,
    }
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SimConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: File = toml::from_str(&text).map_err(|source| SimConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    Ok(file.sim)
}
