//! `promtool check rules` and `promtool test rules` on the alert rules:
//! the rules parse, and each alert fires (and stays quiet) as its unit
//! tests in `linkfresh.rules.test.yml` say. Optional suite "promtool".

use std::path::Path;
use std::process::Command;

use crate::monitoring;
use crate::optional::{self, Suite};

/// Runs `promtool ARGS` in `dir`; (success, stdout + stderr).
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_rules() {
    if optional::available(Suite::Promtool).is_none() {
        return;
    }
    let rules = monitoring::rules_path();
    let (ok, out) = promtool(
        rules.parent().unwrap(),
        &["check", "rules", "linkfresh.rules.yml"],
    );
    assert!(ok, "{out}");
    let alerts = monitoring::rule_exprs().len();
    assert!(
        out.contains(&format!("SUCCESS: {alerts} rules found")),
        "{out}"
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_promtool_unit_tests_say() {
    if optional::available(Suite::Promtool).is_none() {
        return;
    }
    let dir = monitoring::rules_path().parent().unwrap().to_owned();
    let (ok, out) = promtool(&dir, &["test", "rules", "linkfresh.rules.test.yml"]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// promtool reports an alert no test evaluates as nothing at all, so the
/// test file is read here: each alert of the rules file needs a case that
/// expects it to fire and one that expects silence.
#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests =
        monitoring::read_yaml(&monitoring::rules_path().with_file_name("linkfresh.rules.test.yml"));
    let mut firing = std::collections::BTreeSet::new();
    let mut quiet = std::collections::BTreeSet::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name)
            } else {
                firing.insert(name)
            };
        }
    }
    let mut missing = Vec::new();
    for (place, _) in monitoring::rule_exprs() {
        let name = place.trim_start_matches("rule ").to_owned();
        if !firing.contains(&name) {
            missing.push(format!("{name}: no firing case"));
        }
        if !quiet.contains(&name) {
            missing.push(format!("{name}: no quiet case"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
