//! The Grafana dashboard imports cleanly: JSON with a title and uid,
//! unique panel ids, every panel on the Prometheus datasource variable and
//! every target a PromQL query (which metrics they read is checked against
//! a running daemon in `tests/daemon/monitoring_names.rs`).

use std::collections::BTreeSet;

use crate::monitoring;

#[test]
fn the_dashboard_is_grafana_json_whose_queries_are_promql_on_the_datasource_variable() {
    let text = std::fs::read_to_string(monitoring::dashboard_path()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(doc["uid"], "linkfresh");
    assert!(doc["title"].is_string());
    let vars: BTreeSet<&str> = doc["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.is_superset(&["datasource", "job", "instance"].into()),
        "{vars:?}"
    );
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in doc["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap_or("?");
        if !ids.insert(p["id"].as_u64().expect("panel id")) {
            problems.push(format!("{title}: duplicate id {}", p["id"]));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: not on the datasource variable"));
        }
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            if let Err(e) = monitoring::metric_names(expr) {
                problems.push(format!("{title}: {e}: {expr}"));
            }
            if !expr.contains("job=\"$job\"") {
                problems.push(format!("{title}: not filtered by $job: {expr}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(ids.len() > 10, "a dashboard of {} panels", ids.len());
}
