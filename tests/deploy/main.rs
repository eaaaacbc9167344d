//! The deploy/ folder's alerting pack: the rules and their unit tests
//! through promtool, every kustomization rendered by kubectl, the
//! PrometheusRule kept identical to the rules file, the dashboard's shape.
//!
//! One test binary for the area (every test binary links the whole
//! crate); the helpers are shared with the other areas' binaries.

#[path = "../common/monitoring.rs"]
mod monitoring;
#[path = "../common/optional.rs"]
mod optional;

mod dashboard;
mod kustomize;
mod promtool;
