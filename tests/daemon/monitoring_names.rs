//! Every metric the alerting pack reads is one the daemon really serves: a
//! `linkfresh` process against the simulator is scraped, and each name in
//! each Prometheus rule expression and each Grafana dashboard query must be
//! on its `/metrics` page. A renamed metric or a typo in a query fails here,
//! naming the query and the metric.

use crate::daemon;
use crate::monitoring;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids};
use linkfresh::sim::{self, SimConfig};

/// Names the alerting pack already reads that this branch's daemon does not
/// serve yet: they are served once the named issue lands. Printed by the
/// test, never skipped in silence; the test fails when one of them is
/// served (then it belongs out of this list) or is no longer read.
/// Empty this list when merging the branches that serve them.
const SERVED_ONCE_LANDED: &[(&str, &str)] = &[];

/// Series Prometheus makes itself for every target, never on `/metrics`.
const SYNTHETIC: &[&str] = &["up"];

/// Names served only after the first event of their kind: the test waits
/// for them (a refresh POST answered, a product's age known) before it
/// compares, so a slow start never reads as a missing metric.
const AFTER_FIRST_EVENTS: &[&str] = &[
    "linkfresh_due_lag_seconds_bucket",
    "linkfresh_data_age_seconds",
    "linkfresh_data_overdue_seconds",
    "linkfresh_links",
    "linkfresh_store_writable",
    "linkfresh_request_rate_limit",
    "linkfresh_in_flight",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_rules_and_the_dashboard_is_served_by_a_running_daemon() {
    // Which query reads which name.
    let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in monitoring::rule_exprs()
        .into_iter()
        .chain(monitoring::dashboard_exprs())
    {
        let names = monitoring::metric_names(&expr)
            .unwrap_or_else(|e| panic!("{place}: not PromQL ({e}): {expr}"));
        assert!(!names.is_empty(), "{place} selects no metric: {expr}");
        for n in names {
            readers.entry(n).or_default().push(place.clone());
        }
    }

    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = free_port();
    let links = link_ids("mk_names", 3);
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        &links,
        "\"accounts\", \"identity\"",
        "",
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    // A budget far above what three links want: `linkfresh_budget_remaining`
    // is served only while a `[budget]` is configured.
    let body = format!("{body}\n[budget]\nposts_per_day = 1000000\n");
    std::fs::write(&config, body).unwrap();
    let d = DaemonProcess::spawn(&config, "names");

    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut served = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(page) = async { reqwest::get(&url).await?.text().await }.await {
            served = monitoring::served_names(&page);
            if AFTER_FIRST_EVENTS.iter().all(|n| served.contains(*n)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !served.is_empty(),
        "no /metrics page at {url}; log:\n{}",
        d.log()
    );

    let pending: BTreeMap<&str, &str> = SERVED_ONCE_LANDED.iter().copied().collect();
    let mut problems = Vec::new();
    for (name, places) in &readers {
        let ok = served.contains(name) || SYNTHETIC.contains(&name.as_str());
        match (ok, pending.get(name.as_str())) {
            (true, Some(issue)) => problems.push(format!(
                "{name} is served now ({issue}): remove it from SERVED_ONCE_LANDED"
            )),
            (false, None) => problems.push(format!(
                "{name} is not served by /metrics, read by: {}",
                places.join("; ")
            )),
            _ => {}
        }
    }
    for (name, issue) in &pending {
        if !readers.contains_key(*name) {
            problems.push(format!(
                "{name} ({issue}) is listed as pending but no rule or panel reads it"
            ));
        }
    }
    // Straight to stderr: libtest captures eprintln! of passing tests, and
    // this list must be seen until it is empty.
    let _ = writeln!(
        std::io::stderr(),
        "alerting pack: {} metric names checked against /metrics; read but not served yet \
         (SERVED_ONCE_LANDED in tests/daemon/monitoring_names.rs), served once these land:\n{}",
        readers.len(),
        SERVED_ONCE_LANDED
            .iter()
            .map(|(n, i)| format!("  {n}: {i}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        problems.is_empty(),
        "{}\nserved: {served:?}",
        problems.join("\n")
    );
}
