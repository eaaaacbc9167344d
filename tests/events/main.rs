//! Outbound events (issue 18) end to end: the real daemon (in process and
//! as the `linkfresh` binary) against the simulator, on SQLite and
//! PostgreSQL, delivering to a receiver that verifies every delivery with
//! the Standard Webhooks Python package (`receiver.py`), not our code.

#[path = "../common/daemon.rs"]
mod daemon;
#[path = "../common/store/mod.rs"]
mod store_common;

mod events_e2e;
mod events_process;
mod events_store;
mod receiver;

/// `common/store.rs` already includes the optional-suites helper.
use store_common::optional;
