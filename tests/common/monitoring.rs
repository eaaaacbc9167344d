//! The alerting pack as the tests read it: every PromQL expression of the
//! Prometheus rules and the Grafana dashboard, the metric names each one
//! selects (with a real PromQL parser), and the names a `/metrics` page
//! serves. Shared by the metric-name check against a running daemon
//! (`tests/daemon/monitoring_names.rs`) and the deploy checks
//! (`tests/deploy/`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

/// The repository's root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Prometheus rules file.
pub fn rules_path() -> PathBuf {
    root().join("deploy/monitoring/prometheus/linkfresh.rules.yml")
}

/// The Grafana dashboard.
pub fn dashboard_path() -> PathBuf {
    root().join("deploy/monitoring/grafana/linkfresh.json")
}

/// Reads a YAML file into a generic value, naming the file on error.
pub fn read_yaml(path: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(where, expr)` for every rule of the rules file: where is the alert
/// (or recording rule) name.
pub fn rule_exprs() -> Vec<(String, String)> {
    let doc = read_yaml(&rules_path());
    let groups = doc["groups"].as_sequence().expect("rules file has groups");
    let mut out = Vec::new();
    for g in groups {
        for r in g["rules"].as_sequence().expect("a group has rules") {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .expect("alert or record");
            let expr = r["expr"].as_str().expect("rule has an expr");
            out.push((format!("rule {name}"), expr.to_owned()));
        }
    }
    out
}

/// `(where, expr)` for every query of the dashboard: panel targets (rows
/// included) and `label_values(SELECTOR, label)` template variables.
pub fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboard_path()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&doc["panels"], &mut out);
    for v in doc["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        if let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
            out.push((format!("variable {}", v["name"]), selector.to_owned()));
        }
    }
    out
}

/// Grafana's interval variables as a plain range, so the query parses as
/// PromQL (label values such as `"$instance"` are strings and parse as is).
fn ungrafana(expr: &str) -> String {
    [
        "$__rate_interval",
        "${__rate_interval}",
        "$__interval",
        "${__interval}",
        "$__range",
    ]
    .iter()
    .fold(expr.to_owned(), |e, v| e.replace(v, "5m"))
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        // `{__name__="x"}` names a metric too.
        let by_label = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == "__name__")
            .map(|m| m.value.clone());
        self.0.extend(vs.name.clone().into_iter().chain(by_label));
        Ok(true)
    }
}

/// Every metric name `expr` selects; an error when it is not PromQL.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = parser::parse(&ungrafana(expr))?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast)?;
    Ok(names.0)
}

/// The metric names a Prometheus text page serves (histogram series as
/// rendered: `_bucket`, `_sum`, `_count`).
pub fn served_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}
