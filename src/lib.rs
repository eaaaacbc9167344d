//! linkfresh keeps MoneyKit bank links fresh: for every configured link and
//! product it requests a refresh as often as wanted and allowed, never sooner,
//! in as few POSTs as possible, and survives restarts, crashes and outages.
//!
//! # Layout
//!
//! Functional core, imperative shell. Data flows config → store → policy →
//! client and back:
//!
//! - [`domain`], [`duration`], [`secret`], [`retry_after`], [`clock`]: shared
//!   vocabulary — link ids, products, link states, the one bounded duration
//!   parse (10 years at most), redacted secrets, `Retry-After` parsing, and
//!   the one clock (tokio time, so tests can pause it).
//! - [`config`]: `linkfresh.toml` + environment + links file, checked in full
//!   (errors name file, key and what is allowed; exit 2).
//! - [`policy`]: the pure scheduling rules (windows, cadence, backoff,
//!   riding along, coalescing, batching) and the forward simulation behind
//!   `plan`. No clock, no I/O; proven by property tests.
//! - [`store`]: the durable state behind one trait, SQLite or PostgreSQL,
//!   with write-ahead intents so a crash never doubles a refresh.
//! - [`moneykit`]: the API client and wire types (typed outcomes, single-flight
//!   OAuth tokens); [`sim`]: a faithful MoneyKit simulator reusing those wire
//!   types, for the demo and every end-to-end test.
//! - [`daemon`]: the run loop — timer, dispatcher (rate, in-flight, group
//!   commit), outcome rules, writer, discovery; [`server`]: metrics, health,
//!   fleet pages and admin API; [`webhook`]: the verified webhook receiver.
//! - [`notify`], [`config_watch`], [`shutdown`], [`telemetry`], [`metrics`]:
//!   systemd/Kubernetes integration, signals, logs and metric names.
//! - [`explain`]: the policy's reasoning in words and JSON, shared by
//!   `status`, `explain`, the fleet page and the admin API.
//! - [`cli`]: the command line, the composition root (`main.rs` only calls it).
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod config_watch;
pub mod daemon;
pub mod domain;
pub mod duration;
pub mod explain;
pub mod metrics;
pub mod moneykit;
pub mod notify;
pub mod policy;
pub mod retry_after;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod webhook;
