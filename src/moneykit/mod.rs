//! The MoneyKit API client and its wire types.
//!
//! - [`wire`]: the JSON shapes (shared with the simulator).
//! - [`outcome`]: typed answers ([`RefreshOutcome`], [`ApiError`], [`AuthError`]).
//! - `client`: [`MoneyKit`], the HTTP client with its token cache.
//! - `body`: every answer's body is read with a cap.
//!
//! It knows nothing of the store or the schedule.

mod auth;
pub(crate) mod body;
mod client;
pub(crate) mod outcome;
pub mod wire;

pub use client::{ClientConfig, MoneyKit};
pub use outcome::{ApiError, AuthError, ClientError, LinkOutcome, RefreshOutcome};
pub use wire::{Link, LinkPage, ProductState};
