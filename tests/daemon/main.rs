//! The daemon end to end, in process and as the `linkfresh` binary:
//! windows, restarts, reloads, replicas on PostgreSQL, deployment runtimes.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/daemon.rs"]
mod daemon;
#[path = "../common/monitoring.rs"]
mod monitoring;
#[path = "../common/store/mod.rs"]
mod store_common;

mod budget_e2e;
/// Held by the tests that run a fleet of daemon processes on PostgreSQL:
/// four of them at once (the binary runs four tests at a time) on this
/// 2-core machine starved each other's heartbeats and the simulator's
/// loop, failing timings that each meets alone by a wide margin.
pub(crate) static PG_FLEET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod daemon_e2e;
mod daemon_process;
mod demand_e2e;
mod demand_ops;
mod deploy_runtime;
mod monitoring_names;
mod notify_socket;
mod overdue_metric;
mod partitions_pg;
mod replicas_pg;
mod rolling_pg;
mod startup_pg;
