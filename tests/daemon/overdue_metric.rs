//! `linkfresh_data_overdue_seconds{product}` on a running daemon: 0 while
//! the simulator accepts every refresh, rising while it answers every
//! refresh with 429 (a 429 does not count as sent, so the data really is
//! getting older than its window), and back to 0 once refreshes go through.
//! The signal behind the LinkfreshDataStale alert.

use crate::daemon;

use std::time::{Duration, Instant};

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids, wait_until};
use linkfresh::sim::{self, Faults, SimConfig};

/// The gauge's value for `product`, if served.
fn overdue(page: &str, product: &str) -> Option<f64> {
    let prefix = format!("linkfresh_data_overdue_seconds{{product=\"{product}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until `check` holds for the accounts gauge or `limit` passes;
/// the last value seen.
async fn wait_for(url: &str, limit: Duration, check: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(page) = async { reqwest::get(url).await?.text().await }.await {
            last = overdue(&page, "accounts").or(last);
            if last.is_some_and(&check) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_is_zero_on_time_rises_while_every_refresh_is_rate_limited_and_recovers() {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = free_port();
    let links = link_ids("mk_overdue", 3);
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        &links,
        "\"accounts\"",
        "",
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, body).unwrap();
    let d = DaemonProcess::spawn(&config, "overdue");
    let url = format!("http://127.0.0.1:{port}/metrics");

    // Every link refreshed, and on time: 0.
    let refreshed = wait_until(Duration::from_secs(10), || {
        sim.stats().count("refresh", 202) >= links.len() as u64
    })
    .await;
    assert!(refreshed, "{}", d.log());
    let on_time = wait_for(&url, Duration::from_secs(10), |v| v == 0.0).await;
    assert_eq!(on_time, Some(0.0), "{}", d.log());

    // Every refresh 429: nothing is refreshed, the data ages past its window.
    sim.set_faults(Faults {
        rate_429: 1.0,
        ..Faults::default()
    });
    let late = wait_for(&url, Duration::from_secs(15), |v| v >= 2.0).await;
    assert!(
        late.is_some_and(|v| v >= 2.0),
        "overdue {late:?}; log:\n{}",
        d.log()
    );
    assert!(sim.stats().count("refresh", 429) > 0);

    // Refreshes go through again: back to 0.
    sim.set_faults(Faults::default());
    let recovered = wait_for(&url, Duration::from_secs(15), |v| v == 0.0).await;
    assert_eq!(recovered, Some(0.0), "{}", d.log());
}
