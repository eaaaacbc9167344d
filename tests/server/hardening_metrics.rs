//! Issue 14, item 16: counters are exported at 0 from start, so
//! `increase()` and alerts see their first event.

use std::process::Command;
use std::time::Duration;

use crate::daemon::{TestDaemon, fast_windows, http_get};
use linkfresh::domain::Product;
use linkfresh::sim::SimConfig;

/// Set on the fresh process the test below runs in.
const ALONE: &str = "LINKFRESH_TEST_METRICS_ALONE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_daemon_exports_its_counters_at_zero_before_any_event() {
    // The metrics recorder is global to the process, and the other tests of
    // this binary count their events into it: run alone, in a fresh copy of
    // this binary.
    if std::env::var_os(ALONE).is_none() {
        let name =
            "hardening_metrics::a_fresh_daemon_exports_its_counters_at_zero_before_any_event";
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    // No links: nothing is ever requested, so every counter below must be
    // there from start rather than from its first event.
    let d = TestDaemon::start(cfg, &[], "\"accounts\"", "").await;
    let (status, body) = http_get(d.addr, "/metrics").await;
    assert_eq!(status, 200);
    let has = |line: &str| body.lines().any(|l| l == line);
    assert!(has("linkfresh_rate_limited_total 0"), "{body}");
    assert!(has("linkfresh_claims_refused_total 0"), "{body}");
    // Partitioned ownership (issue 16): a SQLite daemon holds none.
    assert!(has("linkfresh_rebalances_total 0"), "{body}");
    assert!(has("linkfresh_partitions_owned 0"), "{body}");
    for p in Product::ALL {
        let line = format!(
            "linkfresh_products_requested_total{{product=\"{}\"}} 0",
            p.as_str()
        );
        assert!(has(&line), "{line} missing:\n{body}");
    }
    assert!(
        has("linkfresh_requests_total{endpoint=\"refresh\",status=\"429\"} 0"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("linkfresh_token_refreshes_total ")),
        "{body}"
    );
    assert!(
        has("linkfresh_webhook_transactions_updates_total 0"),
        "{body}"
    );
    // Issue 17: the owning app's demand calls, by result.
    for result in linkfresh::metrics::DEMAND_RESULTS {
        let line = format!("linkfresh_demand_requests_total{{result=\"{result}\"}} 0");
        assert!(has(&line), "{line} missing:\n{body}");
    }
    let (_, result) = tokio::time::timeout(Duration::from_secs(15), d.stop())
        .await
        .unwrap();
    result.unwrap();
}
