//! linkfresh keeps MoneyKit bank links fresh.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod policy;
pub mod retry_after;
pub mod secret;
pub mod telemetry;
