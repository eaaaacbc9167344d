//! linkfresh keeps MoneyKit bank links fresh: for every configured link and
//! product it requests a refresh as often as wanted and allowed, never sooner,
//! in as few POSTs as possible, and survives restarts, crashes and outages.
//!
//! # Layout
//!
//! Functional core, imperative shell. Modules are `pub(crate)` unless
//! `main`, the benches, the examples or the tests use them. The program starts in `main.rs`, which
//! hands the command line to [`cli`]; `linkfresh run` (and `demo`, and the
//! tests) build an [`app::Application`], the one composition root, which
//! builds every part from the settings, owns the tasks and returns when all
//! have stopped. Dependencies point one way:
//!
//! ```text
//! main ─→ cli ─→ app ─→ daemon, server, webhook   (app assembles; nothing names app)
//! daemon  ─→ store, moneykit, config, policy        (never server, webhook or cli)
//! webhook ─→ server (its listener), store, moneykit, config
//! events::deliver ─→ store, config                  (the outbound events' sender)
//! store   ─→ events::{kind, payload}                (pure: which change makes which event)
//! server  ─→ explain, store, moneykit               (never daemon)
//! explain ─→ store, policy
//! config  ─→ policy ─→ domain;   store ─→ domain
//! below all: health, clock, duration, secret, metrics, notify, config_watch
//! ```
//!
//! Data flows config → store (sync) → the daemon's table → policy → client →
//! outcomes → store; the server and `explain` read the store and the rules
//! the daemon publishes, and write operator changes through the store.
//!
//! - [`app`]: assembly. Opens and syncs the store, builds the MoneyKit
//!   client, binds the listeners, installs the metrics, spawns the
//!   supervised servers and the reload sources (SIGHUP, config folder) on
//!   one task tracker, and runs the daemon with a child cancellation token.
//! - [`daemon`]: the run loop, given its parts by `app` (`daemon::run`):
//!   loader → table → scheduler (asks the policy; `scheduler/merge.rs`
//!   merges what the store knows: load pages, change and claim polls,
//!   reloads) → dispatcher (paces, commits intents, sends) → answer rules
//!   (`outcome.rs` for a POST, `read_outcome.rs` for a read, park reasons
//!   once in `parked.rs`) → writer (group commit). A reload syncs the
//!   config, publishes the new rules on a `watch` channel and streams the
//!   links back through the paged loader. The table keeps each link's
//!   profile and last activity (`table.rs`, product slots in `slot.rs`);
//!   tags a read returns may select another profile (`tags.rs`). On
//!   PostgreSQL `membership.rs` heartbeats and holds partitions, `share.rs`
//!   sizes this replica's share of the fleet's limits, and
//!   `scheduler/owned.rs` keeps only the held partitions' links.
//!   With a `[budget]`, what the policy wants to send waits at the budget
//!   gate (`budget.rs`, asked by the loop through `budget_round.rs`), which
//!   admits by the pure allocator.
//! - [`server`]: metrics, health, fleet pages (`fleet.rs`, its sections and
//!   the link page below `fleet/`; the replicas in `replicas.rs`) and admin API (`admin_api.rs`; the
//!   owning app's `activity` and `refresh` with `max_age` in
//!   `demand_api.rs`, which ring `Heartbeat::changed` so the loop
//!   acts at once); [`webhook`]: the
//!   verified webhook receiver. They read shared handles only: the
//!   [`health::Heartbeat`], the store's health, the rules in force (the
//!   `watch` receiver the daemon publishes to), and write through the store.
//! - [`events`]: outbound events to the owning app (issue 18): the pure
//!   rules of which change causes which event and its body, used by the
//!   store inside the change's own transaction (a transactional outbox),
//!   and the delivery task `app` spawns (Standard Webhooks signatures,
//!   order per link, backoff, 410 Gone, leases across replicas).
//! - [`explain`]: the policy's reasoning in words and JSON, built from a
//!   stored link alone; shared by `status`, `explain`, the pages and the API.
//! - [`store`]: the durable state behind one trait, SQLite or PostgreSQL,
//!   with write-ahead intents so a crash never doubles a refresh; the shared
//!   SQL in `store/sql/` by concern, multi-row texts built once
//!   (`sql/texts.rs`); partitioned ownership among replicas in
//!   `ownership.rs` (what the daemon asks) and `pg_ownership.rs`.
//! - [`moneykit`]: the API client and wire types (typed outcomes, single-flight
//!   OAuth tokens); [`sim`]: a faithful MoneyKit simulator reusing those wire
//!   types, for the demo and every end-to-end test.
//! - [`config`]: `linkfresh.toml` + environment + links file, checked in full
//!   (errors name file, key and what is allowed; exit 2): `check.rs` walks
//!   the file, `checker.rs` checks single values, `check_links.rs` the links.
//! - [`policy`]: the pure scheduling rules (windows, cadence and its stored
//!   form, backoff, riding along, coalescing, batching), the budget
//!   allocator (`budget.rs`: cap, order, pacing) and the forward
//!   simulation behind `plan`; profiles (`profile.rs`: a link's tier,
//!   priority and cadences) and demand (`demand.rs`: active and idle
//!   cadences); `overdue.rs`: how far a product is past its promised
//!   refresh (the stale-data gauge the daemon's `gauges.rs` publishes);
//!   which replica holds which partition (`partitions.rs`). No clock, no
//!   I/O; proven by property tests. `config` checks `[defaults]` and
//!   `[profiles.NAME]` in `config/profiles.rs`.
//! - [`domain`], [`duration`], [`secret`], [`retry_after`], [`clock`],
//!   [`health`]: shared vocabulary — link ids, products, link states, the one
//!   bounded duration parse, redacted secrets, `Retry-After`, the one clock
//!   (tokio time, so tests can pause it) and the loop's heartbeat.
//! - [`notify`], [`config_watch`], [`shutdown`], [`telemetry`], [`metrics`]:
//!   systemd/Kubernetes integration, signals, logs and metric names.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_watch;
pub mod daemon;
pub mod domain;
pub(crate) mod duration;
pub mod events;
pub(crate) mod explain;
pub(crate) mod health;
pub mod metrics;
pub mod moneykit;
pub mod notify;
pub mod policy;
pub(crate) mod profile_ages;
pub mod retry_after;
pub mod secret;
pub mod server;
pub(crate) mod shutdown;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod webhook;
