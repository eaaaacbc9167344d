//! The MoneyKit client against the project's simulator (auth, outcomes,
//! wire format, capped reads, the simulator's own windows) and MoneyKit's
//! Python SDK against the simulator.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/sim.rs"]
mod common;
#[path = "../common/optional.rs"]
mod optional;

mod client_auth;
mod client_outcomes;
mod client_wire;
mod hardening_client;
mod sim_windows;
mod wire_fidelity;
