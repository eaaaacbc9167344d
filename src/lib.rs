//! linkfresh keeps MoneyKit bank links fresh.
#![forbid(unsafe_code)]

pub mod clock;
pub mod domain;
pub mod retry_after;
pub mod secret;
pub mod store;
