//! What the daemon serves: the fleet page and admin API (also in
//! Chromium), discovery, listener limits and the webhook receiver.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/daemon.rs"]
mod daemon;
#[path = "../common/fleet_page.rs"]
mod fleet_page;
#[path = "../common/optional.rs"]
mod optional;
#[path = "../webhook_common/mod.rs"]
mod webhook_common;

mod fleet_api;
mod fleet_browser;
mod fleet_discovery;
mod hardening_fleet_page;
mod hardening_metrics;
mod hardening_server;
mod webhook_fuzz;
mod webhook_receiver;
