//! The configuration: `linkfresh check`, parse errors that name the key,
//! durations and link ids, and the config folder watcher.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/daemon.rs"]
mod daemon;

mod budget_cli;
mod cli_check;
mod config_watch;
mod hardening_config;
mod hardening_durations;
mod hardening_link_ids;
mod hardening_watch;
mod profiles_config;
