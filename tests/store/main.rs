//! The store: the conformance suite on SQLite and PostgreSQL, the fleet
//! queries, webhook idempotency keys, and the SQLite file under a full disk,
//! damage and a second daemon.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/daemon.rs"]
mod daemon;
#[path = "../common/store/mod.rs"]
mod store_common;

mod fleet_store;
mod hardening_store;
mod hot_path_pg;
mod partitions_pg;
mod store_postgres;
mod store_sqlite;
mod webhook_store;
