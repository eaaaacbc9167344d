//! Configuration: defaults < file < environment, checked in full at start.
//!
//! [`load`] reads `linkfresh.toml` (TOML) with the `config` crate, layers
//! `LINKFRESH__SECTION__KEY` environment variables on top (plus
//! `MONEYKIT_CLIENT_ID` / `MONEYKIT_CLIENT_SECRET`), reads `links_file`, and
//! turns the strings into checked, typed values. Any problem is a
//! [`ConfigError`] that names the file, the key or line, the bad value and
//! what is allowed; the daemon does not start on bad config (exit code 2).
//!
//! Decisions written down here:
//! - `every` shorter than the product's limit is rejected, not clamped:
//!   MoneyKit would refuse the extra requests, and a silent clamp hides a
//!   misunderstanding.
//! - `margin` and `coalesce` may be `0s` (no margin, no coalescing); every
//!   other duration must be positive.
//! - Credentials are *located* by [`load`] (`client_secret` inline, env,
//!   `client_secret_file`, or `$CREDENTIALS_DIRECTORY/client_secret` under
//!   systemd) and judged by [`credentials`], which `check` and `run` both
//!   call: a missing `client_id` or client secret is exit 2 in both; a secret
//!   file not readable here is a warning in `check` only (see
//!   [`credentials::Stage`]). `status`, `plan` and the other offline commands
//!   need no credentials.
//! - A secret from the environment (`MONEYKIT_CLIENT_SECRET`,
//!   `LINKFRESH__MONEYKIT__CLIENT_SECRET[_FILE]`,
//!   `LINKFRESH__SERVER__ADMIN_TOKEN[_FILE]`) replaces the file's source of
//!   that secret, inline or file; a file that sets both forms is an error.

mod budget;
mod check;
mod check_links;
mod checker;
mod credentials;
mod env;
mod events;
pub(crate) mod links_file;
mod profiles;
mod raw;
mod toml_error;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::{LinkId, Product, ProductSet};
use crate::policy::cadences::{cadence_to_json, with_profile};
use crate::policy::{Cadence, Rules};
use crate::secret::Secret;

pub use budget::BudgetConfig;
pub(crate) use credentials::{Stage, credentials};
pub use events::EventsConfig;

/// The default config path when neither `--config` nor `LINKFRESH_CONFIG` is given.
pub const DEFAULT_PATH: &str = "linkfresh.toml";

/// A configuration problem; its `Display` is the message shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML / has unknown keys.
    #[error("{file}: {message}")]
    Read {
        /// The config file.
        file: String,
        /// What went wrong, with the key where known.
        message: String,
    },
    /// A key holds a value that is not allowed.
    #[error("{file}: {key} = {value}: {problem}")]
    Invalid {
        /// The config file.
        file: String,
        /// The key, e.g. `[limits] accounts`.
        key: String,
        /// The value as written (`[redacted]` for secrets).
        value: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A line of the links file is bad.
    #[error("{file}:{line}: {problem}")]
    LinksFile {
        /// The links file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A required key is not set.
    #[error("{file}: {key} is not set; {help}")]
    Missing {
        /// The config file.
        file: String,
        /// The key, e.g. `[moneykit] client_id`.
        key: String,
        /// How to set it.
        help: String,
    },
    /// The same link is configured twice.
    #[error(
        "duplicate link id {id}: configured at {first} and again at {second}; each link may appear once"
    )]
    Duplicate {
        /// The repeated id.
        id: String,
        /// Where it first appears.
        first: String,
        /// Where it appears again.
        second: String,
    },
}

/// Where a secret comes from; it is read only when needed.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// Not configured.
    Missing,
    /// Given inline or through the environment.
    Inline(Secret),
    /// Read from this file (trailing newline removed).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret; the error names the file, never the value.
    pub fn read(&self, what: &str) -> Result<Option<Secret>, String> {
        match self {
            SecretSource::Missing => Ok(None),
            SecretSource::Inline(s) => Ok(Some(s.clone())),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| Some(Secret::new(s.trim_end_matches(['\r', '\n']))))
                .map_err(|e| format!("cannot read {what} from {}: {e}", path.display())),
        }
    }
}

/// `[moneykit]`: where and how to call the API.
#[derive(Debug, Clone, PartialEq)]
pub struct MoneyKitConfig {
    /// API base URL, without a trailing slash.
    pub base_url: String,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret.
    pub client_secret: SecretSource,
    /// Optional OAuth scope (space separated).
    pub scope: Option<String>,
    /// Sent as `MoneyKit-Version`.
    pub api_version: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Global request rate across all links.
    pub max_requests_per_second: u32,
    /// Global number of requests in flight.
    pub max_in_flight: u32,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// `sqlite://...` (relative paths resolved against the config folder) or `postgres://...`.
    pub url: String,
    /// How long a replica's claim on a link lasts (PostgreSQL).
    pub lease: Duration,
    /// How long attempt history is kept.
    pub history_retention: Duration,
    /// How many partitions the link space is split into among replicas
    /// (PostgreSQL; see [`crate::policy::partitions`]). Fixed per
    /// database: the first replica stores it, and a replica configured
    /// otherwise refuses to start (exit 2).
    pub partitions: u32,
    /// PostgreSQL: how long a replica that finds no partition held (a
    /// fleet starting cold) waits after announcing itself, so that the
    /// replicas started with it count before partitions are assigned (see
    /// [`crate::daemon`]'s membership). Zero: no wait. Shorter than `lease`.
    pub initial_settle: Duration,
}

/// `[database] initial_settle` when not set (bounded by half the lease).
pub const DEFAULT_INITIAL_SETTLE: Duration = Duration::from_secs(2);

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address of the metrics/health/API listener.
    pub listen: SocketAddr,
    /// Bearer token for `/api`; missing turns the API off.
    pub admin_token: SecretSource,
    /// Route of the MoneyKit webhook receiver, on both listeners.
    pub webhook_path: String,
    /// A second listener serving only the webhook route, so it can be made
    /// public (behind TLS termination) while `listen` stays private.
    pub webhook_listen: Option<SocketAddr>,
}

/// `[server] webhook_path` when the file does not set it.
pub const DEFAULT_WEBHOOK_PATH: &str = "/webhooks/moneykit";

/// Every route the daemon's own router serves, as registered (`{id}` is a
/// path parameter). Kept here, below both the server and its validation:
/// `[server] webhook_path` is merged into the same router, so validation
/// rejects a webhook path in the namespace (first path segment) of any of
/// these, and a server test asserts that each one is served. A new route
/// of the server belongs in this list.
pub const RESERVED_ROUTES: &[&str] = &[
    "/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/links/{id}",
    "/replicas",
    "/api/replicas",
    "/api/links",
    "/api/links/{id}",
    "/api/links/{id}/pause",
    "/api/links/{id}/resume",
    "/api/links/{id}/refresh",
    "/api/links/{id}/activity",
];

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    /// Whether to keep every link `GET /links` lists.
    pub enabled: bool,
    /// How often to list.
    pub every: Duration,
    /// Products of discovered links.
    pub products: ProductSet,
    /// Only links with one of these tags (empty: all).
    pub tags: Vec<String>,
}

/// One configured link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Its id.
    pub id: LinkId,
    /// Products to keep fresh.
    pub products: ProductSet,
    /// Per-product cadence other than "as often as allowed".
    pub cadence: BTreeMap<Product, Cadence>,
    /// `profile = "..."` on the link (or `profile=` in the links file).
    pub profile: Option<String>,
}

impl LinkConfig {
    /// The link's own cadence of one product (`every`/`cron` on the link).
    pub fn cadence_of(&self, p: Product) -> Cadence {
        self.cadence.get(&p).cloned().unwrap_or_default()
    }

    /// The cadence of one product as the daemon schedules it: the link's
    /// own, else its profile's (by name; tags are learned only at run time).
    pub fn cadence_in(&self, rules: &Rules, p: Product) -> Cadence {
        self.cadence.get(&p).cloned().unwrap_or_else(|| {
            rules.profiles.select(self.profile.as_deref(), &[]).cadences[p.index()].clone()
        })
    }

    /// The cadence as a small JSON object for the store (`None` when default),
    /// e.g. `{"every":{"transactions":"4h"},"cron":{"identity":"0 0 6 * * *"}}`,
    /// with the profile the link names, if any (`"profile":"premium"`).
    pub fn cadence_json(&self) -> Option<String> {
        with_profile(cadence_to_json(&self.cadence), self.profile.as_deref())
    }
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[moneykit]`.
    pub moneykit: MoneyKitConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[limits]` and `[schedule]`, as the policy uses them.
    pub rules: Rules,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[discovery]`.
    pub discovery: DiscoveryConfig,
    /// `[defaults] products` (the default profile's; the profiles
    /// themselves are in [`Rules::profiles`]).
    pub default_products: ProductSet,
    /// `[[links]]` and `links_file`, in file order.
    pub links: Vec<LinkConfig>,
    /// `links_file`, resolved.
    pub links_file: Option<PathBuf>,
    /// A hash of the link set; the store skips a sync of the same revision.
    pub revision: String,
    /// `[budget]`, if set: never more POSTs than this in any rolling window.
    pub budget: Option<BudgetConfig>,
    /// `[events]`: outbound events to the owning app, when configured.
    pub events: Option<EventsConfig>,
    /// The top-level `revision` key (0 when absent): orders the config
    /// versions of a rolling update. The store never lets a sync of a lower
    /// number overwrite the link set a higher one wrote (the replica logs
    /// that it is behind); equal numbers sync as before (last one wins).
    pub revision_number: i64,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} links)", self.path.display(), self.links.len())
    }
}

/// The config path: `--config`, else `LINKFRESH_CONFIG`, else `./linkfresh.toml`.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LINKFRESH_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Loads and checks the config at `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars().collect())
}

/// Loads and checks the config at `path` with the given environment (tests
/// pass their own instead of mutating the process's).
///
/// The file is deserialized strictly with the `toml` crate first, so a wrong
/// type in it (`max_in_flight = "8"` or `8.5`, `client_secret = 123`) is an
/// error naming the key and the type instead of being coerced. Only when the
/// environment overrides something is the file layered again with the
/// `config` crate, whose environment values are strings parsed into the
/// key's type (`LINKFRESH__MONEYKIT__MAX_IN_FLIGHT=8` is fine, `=8.5` is an
/// error naming the variable).
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigError::Read {
            file: file.clone(),
            message: "no such file; pass --config FILE or set LINKFRESH_CONFIG (see config/linkfresh.example.toml)".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: format!("cannot be read: {e}"),
    })?;
    let from_file: raw::RawSettings = toml::from_str(&text).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: toml_error::describe(e, &text),
    })?;
    drop(text);
    let overrides = env::Overrides::from_env(&env);
    let raw = if overrides.is_empty() {
        from_file
    } else {
        let mut layered = overrides.layer(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            message: env::describe(&e),
        })?;
        overrides.secrets_over_file(&from_file, &mut layered);
        layered
    };
    check::check(path, raw, &env)
}
