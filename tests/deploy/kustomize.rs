//! Every kustomization renders (the base, the overlays' base, every
//! overlay, the monitoring component through its overlay), and the
//! PrometheusRule never drifts from the rules file: the checked-in copy is
//! compared always, the rendered one whenever kubectl is installed (optional
//! suite "kubectl"); the rendered rules then pass promtool too.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

use crate::monitoring::{self, read_yaml, root};
use crate::optional::{self, Suite};
use crate::promtool::promtool;

fn k8s() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// Every folder `kubectl kustomize` must render.
fn kustomizations() -> Vec<PathBuf> {
    let mut dirs = vec![k8s(), k8s().join("manifests")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(k8s().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    dirs.extend(overlays);
    dirs
}

/// `kubectl kustomize DIR` as YAML documents.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML parses"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// YAML as JSON: maps compare by content, not by key order (kustomize
/// sorts keys; the rules file keeps them in reading order).
fn json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).expect("YAML of strings, numbers and maps")
}

/// What differs between a PrometheusRule's spec and the rules file, or
/// `None` when they hold the same groups.
fn drift(rule: &Value) -> Option<String> {
    let (spec, file) = (
        json(&rule["spec"]),
        json(&read_yaml(&monitoring::rules_path())),
    );
    if spec == file {
        return None;
    }
    // Name the rules that differ, then the groups if the rules agree.
    let rules = |v: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .map(|r| {
                (
                    r["alert"]
                        .as_str()
                        .or(r["record"].as_str())
                        .unwrap_or("?")
                        .to_owned(),
                    r.clone(),
                )
            })
            .collect()
    };
    let (a, b) = (rules(&spec), rules(&file));
    let mut differ: Vec<String> = a
        .iter()
        .filter(|r| !b.contains(r))
        .map(|r| format!("{} (PrometheusRule)", r.0))
        .collect();
    differ.extend(
        b.iter()
            .filter(|r| !a.contains(r))
            .map(|r| format!("{} (rules file)", r.0)),
    );
    if differ.is_empty() {
        differ.push("the groups (names, intervals or order)".into());
    }
    Some(format!(
        "the PrometheusRule differs from {} in: {}; copy the groups under spec: (see the component's kustomization.yaml)",
        monitoring::rules_path().display(),
        differ.join(", ")
    ))
}

#[test]
fn the_prometheusrule_holds_exactly_the_groups_of_the_rules_file() {
    let rule = read_yaml(&k8s().join("components/monitoring/prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    if let Some(d) = drift(&rule) {
        panic!("{d}");
    }
}

#[test]
fn every_kustomization_renders_named_objects() {
    if optional::available(Suite::Kubectl).is_none() {
        return;
    }
    for dir in kustomizations() {
        let docs = render(&dir);
        assert!(
            !of_kind(&docs, "Deployment").is_empty(),
            "{}: no Deployment",
            dir.display()
        );
        for d in &docs {
            assert!(
                d["apiVersion"].is_string()
                    && d["kind"].is_string()
                    && d["metadata"]["name"].is_string(),
                "{}: an object without apiVersion, kind or name: {d:?}",
                dir.display()
            );
        }
    }
}

#[test]
fn the_monitoring_overlay_renders_the_rules_unchanged_and_a_servicemonitor_that_scrapes_the_service()
 {
    if optional::available(Suite::Kubectl).is_none() {
        return;
    }
    let docs = render(&k8s().join("overlays/monitoring"));
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    if let Some(d) = drift(rules[0]) {
        panic!("rendered: {d}");
    }
    let (monitors, services) = (of_kind(&docs, "ServiceMonitor"), of_kind(&docs, "Service"));
    assert_eq!((monitors.len(), services.len()), (1, 1));
    let (sm, svc) = (monitors[0], services[0]);
    assert_eq!(sm["metadata"]["namespace"], svc["metadata"]["namespace"]);
    // The selector picks the Service by its labels...
    let labels = svc["metadata"]["labels"]
        .as_mapping()
        .expect("Service labels");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "ServiceMonitor selects {k:?}={v:?}, the Service lacks it"
        );
    }
    // ...and scrapes a port the Service has, by name.
    let ports: Vec<&Value> = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    for e in sm["spec"]["endpoints"].as_sequence().expect("endpoints") {
        assert!(
            ports.contains(&&e["port"]),
            "endpoint port {:?} not among {ports:?}",
            e["port"]
        );
        assert_eq!(e["path"], "/metrics");
    }
    // The rules select job="linkfresh": the Operator names the job after the Service.
    assert_eq!(svc["metadata"]["name"], "linkfresh");
}

#[test]
fn the_rendered_prometheusrule_passes_promtool() {
    if optional::available(Suite::Kubectl).is_none()
        || optional::available(Suite::Promtool).is_none()
    {
        return;
    }
    let docs = render(&k8s().join("overlays/monitoring"));
    let rule = of_kind(&docs, "PrometheusRule")[0];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rendered.rules.yml"),
        serde_norway::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let (ok, out) = promtool(dir.path(), &["check", "rules", "rendered.rules.yml"]);
    assert!(ok, "{out}");
}
