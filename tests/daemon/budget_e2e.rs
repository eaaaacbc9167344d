//! The budget end to end: the real daemon against the simulator over
//! loopback, with a `[budget]` of half of what the fleet wants and the day
//! compressed through `[budget] window`. The simulator counts the POSTs
//! that reach it: never more than the budget in any rolling window, the
//! budget still spent, and an operator's refresh served ahead of the
//! scheduled work. On SQLite and on PostgreSQL.

use crate::daemon;
use crate::store_common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use daemon::{TestDaemon, fast_windows, http_get, link_ids, wait_until};
use linkfresh::domain::LinkId;
use linkfresh::sim::SimConfig;
use store_common::TestDb;

/// The compressed day: a budget window of 4 s.
const WINDOW_S: i64 = 4;
/// Links, each wanting transactions every 2.1 s (`fast_windows` + margin):
/// about 23 POSTs per window.
const LINKS: usize = 12;
/// Half of what the fleet wants per window.
const BUDGET: u64 = 11;

fn budget_toml() -> String {
    format!(
        "admin_token = \"t\"\n[budget]\nposts_per_day = {BUDGET}\nwindow = \"{WINDOW_S}s\"\nprice_per_post = 0.5\ncurrency = \"USD\"\n"
    )
}

async fn start(db: &TestDb) -> TestDaemon {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let url = db.url.clone();
    TestDaemon::start_with(
        cfg,
        &link_ids("mk_budget", LINKS),
        "\"transactions\"",
        &budget_toml(),
        move |toml| {
            let mut out = String::new();
            for line in toml.lines() {
                if line.starts_with("url = \"sqlite://") {
                    out += &format!("url = \"{url}\"\n");
                } else if line.starts_with("request_timeout") {
                    // The budget counts each POST for its window plus
                    // request_timeout and margin (see `Budget::slack`):
                    // short, so the compressed day is not mostly slack.
                    out += "request_timeout = \"500ms\"\n";
                } else {
                    out += line;
                    out += "\n";
                }
            }
            out
        },
    )
    .await
}

/// The value of the first sample of `metric` whose line contains `has`.
fn sample(metrics: &str, metric: &str, has: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(has))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn a_budget_of_half_the_demand_is_never_exceeded_and_on_demand_goes_first(db: TestDb) {
    let d = start(&db).await;
    let window = TimeDelta::seconds(WINDOW_S);
    // Two and a half windows of POSTs at the budget's pace.
    let spent = wait_until(Duration::from_secs(30), || d.sim.posts() >= 2 * BUDGET + 5).await;
    assert!(spent, "the budget is spent: {} POSTs", d.sim.posts());

    // An operator's refresh of one link goes ahead of the waiting fleet.
    let asked = LinkId::parse("mk_budget_005").unwrap();
    let before = d
        .sim
        .stats()
        .posts_per_link
        .get(asked.as_str())
        .copied()
        .unwrap_or(0);
    let (status, _) = call_refresh(d.addr, asked.as_str()).await;
    assert_eq!(status, 202);
    let asked_at = Instant::now();
    let served = wait_until(Duration::from_secs(8), || {
        d.sim
            .stats()
            .posts_per_link
            .get(asked.as_str())
            .copied()
            .unwrap_or(0)
            > before
    })
    .await;
    assert!(served, "the on-demand refresh was sent");
    // The change poll (1 s) plus the next POST the cap lets out.
    assert!(
        asked_at.elapsed() < Duration::from_secs(3),
        "served after {:?}",
        asked_at.elapsed()
    );

    let busiest = d.sim.busiest_window(window);
    let stats = d.sim.stats();
    let (_, metrics) = http_get(d.addr, "/metrics").await;
    let (sim, ended) = d.stop().await;
    ended.unwrap();
    assert!(
        busiest <= BUDGET,
        "{busiest} POSTs in one {WINDOW_S} s window, budget {BUDGET}"
    );
    // Counted over 4.6 s (the window, request_timeout and margin): about
    // 11 x 4 / 4.6 in a 4 s window.
    assert!(
        busiest >= BUDGET * 7 / 10,
        "the budget is used, not starved: busiest window {busiest}"
    );
    assert_eq!(stats.violations, 0, "no window broken");
    assert_eq!(stats.count("refresh", 429), 0, "no 429");
    let deferred = sample(&metrics, "linkfresh_deferred_total", "reason=\"pacing\"").unwrap_or(0.0)
        + sample(&metrics, "linkfresh_deferred_total", "reason=\"budget\"").unwrap_or(0.0);
    assert!(deferred > 0.0, "deferrals are counted:\n{metrics}");
    let remaining =
        sample(&metrics, "linkfresh_budget_remaining", "").expect("the gauge is exported");
    assert!((0.0..=BUDGET as f64).contains(&remaining), "{remaining}");
    sim.shutdown().await;
}

async fn call_refresh(addr: std::net::SocketAddr, link: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/links/{link}/refresh"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_budget_of_half_the_demand_is_never_exceeded_and_on_demand_goes_first() {
    let db = TestDb::sqlite().await.unwrap();
    a_budget_of_half_the_demand_is_never_exceeded_and_on_demand_goes_first(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_budget_of_half_the_demand_is_never_exceeded_and_on_demand_goes_first() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_budget_of_half_the_demand_is_never_exceeded_and_on_demand_goes_first(db).await;
}

/// `linkfresh_budget_remaining` and the deferrals of the daemon on `port`.
async fn budget_metrics(port: u16) -> (Option<f64>, f64) {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return (None, 0.0);
    };
    let body = r.text().await.unwrap_or_default();
    let deferred = sample(&body, "linkfresh_deferred_total", "reason=\"budget\"").unwrap_or(0.0)
        + sample(&body, "linkfresh_deferred_total", "reason=\"pacing\"").unwrap_or(0.0);
    (sample(&body, "linkfresh_budget_remaining", ""), deferred)
}

/// The limit on the fleet page's budget card of the daemon on `port`.
async fn budget_limit_on_page(port: u16) -> Option<String> {
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let (_, rest) = page.split_once("data-budget=\"limit\">")?;
    Some(rest.split('<').next()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_spent_budget_and_sighup_applies_a_new_one() {
    use daemon::{DaemonProcess, daemon_toml, free_port};
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = linkfresh::sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = free_port();
    let body = |posts: u32| {
        daemon_toml(
            &sim.base_url(),
            &dir.path().join("lf.db"),
            &cfg,
            &link_ids("mk_kept", 3),
            "\"accounts\"",
            &format!("[budget]\nposts_per_day = {posts}\nwindow = \"1h\"\n"),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
    };
    // One POST an hour: the first daemon spends it.
    std::fs::write(&config, body(1)).unwrap();
    let mut first = DaemonProcess::spawn(&config, "first");
    assert!(
        wait_until(Duration::from_secs(10), || sim.posts() == 1).await,
        "{}",
        first.log()
    );
    first.stop_cleanly();

    // The second one reads the spent POST from the store: it holds every
    // link back, and the simulator sees nothing more.
    let mut second = DaemonProcess::spawn(&config, "second");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = false;
    while Instant::now() < deadline && !held {
        let (remaining, deferred) = budget_metrics(port).await;
        held = remaining == Some(0.0) && deferred >= 3.0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        held,
        "the restarted daemon holds the links back: {}",
        second.log()
    );
    assert_eq!(sim.posts(), 1, "no POST over the budget after a restart");

    assert_eq!(
        budget_limit_on_page(port).await.as_deref(),
        Some("1"),
        "the fleet page's budget card shows the budget in force"
    );

    // A reload raises the budget: the links go out, and the fleet page
    // shows the new limit (it used to keep the one it started with).
    std::fs::write(&config, body(1000)).unwrap();
    second.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || sim.posts() >= 2).await,
        "a raised budget applies at once: {}",
        second.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = None;
    while Instant::now() < deadline && shown.as_deref() != Some("1000") {
        shown = budget_limit_on_page(port).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shown.as_deref(),
        Some("1000"),
        "the page follows the reloaded budget: {}",
        second.log()
    );
    second.stop_cleanly();
    sim.shutdown().await;
}
