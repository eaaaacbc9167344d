//! linkfresh keeps MoneyKit bank links fresh.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod config_watch;
pub mod daemon;
pub mod domain;
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
