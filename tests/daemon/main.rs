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
mod daemon_e2e;
mod daemon_process;
mod demand_e2e;
mod demand_ops;
mod deploy_runtime;
mod monitoring_names;
mod notify_socket;
mod overdue_metric;
mod replicas_pg;
