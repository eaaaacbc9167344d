//! linkfresh keeps MoneyKit bank links fresh.
#![forbid(unsafe_code)]

pub mod domain;
pub mod secret;
pub mod clock;
pub mod retry_after;
pub mod store;
