//! The pure policy: its invariants as properties, its scenarios, and
//! inputs that must never make it panic.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

mod budget_properties;
mod demand_properties;
mod input_never_panics;
mod overdue_properties;
mod policy_properties;
mod policy_scenarios;
