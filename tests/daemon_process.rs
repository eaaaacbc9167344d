//! The `linkfresh` binary as operators run it: restarts after SIGTERM and
//! after `kill -9`, SIGHUP reloads, `/metrics` against the simulator's own
//! counts, and the operator commands against the running daemon's store.

#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids, linkfresh};
use linkfresh::sim::{self, SimConfig};

struct Setup {
    sim: sim::SimHandle,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    port: u16,
}

async fn setup(links: &[String], products: &str) -> Setup {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = free_port();
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        links,
        products,
        "",
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, body).unwrap();
    Setup {
        sim,
        dir,
        config,
        port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_restart_on_the_same_database_breaks_no_window() {
    let s = setup(
        &link_ids("mk_term", 10),
        "\"accounts\", \"transactions\", \"identity\"",
    )
    .await;
    let mut d = DaemonProcess::spawn(&s.config, "1");
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{}", d.log());
    assert!(d.log().contains("stopped cleanly"), "{}", d.log());
    let mid = s.sim.stats();
    let mut d2 = DaemonProcess::spawn(&s.config, "2");
    tokio::time::sleep(Duration::from_secs(4)).await;
    d2.signal("TERM");
    assert_eq!(d2.wait(Duration::from_secs(10)), Some(0), "{}", d2.log());
    let stats = s.sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");
    assert!(
        stats.count("refresh", 202) > mid.count("refresh", 202),
        "the second run refreshed nothing"
    );
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_then_restart_breaks_no_window() {
    let s = setup(&link_ids("mk_kill", 20), "\"accounts\", \"transactions\"").await;
    // Kill at a few moments spread over the windows, restarting each time.
    for (i, ms) in [700u64, 2300, 1100, 3100].into_iter().enumerate() {
        let mut d = DaemonProcess::spawn(&s.config, &format!("k{i}"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        d.signal("KILL");
        d.wait(Duration::from_secs(5));
    }
    let mut d = DaemonProcess::spawn(&s.config, "final");
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{}", d.log());
    let stats = s.sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");
    assert!(stats.count("refresh", 202) >= 20, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counts_match_the_simulators_own_counts() {
    let s = setup(&link_ids("mk_metrics", 5), "\"accounts\", \"identity\"").await;
    let mut d = DaemonProcess::spawn(&s.config, "m");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Stop the traffic before comparing: pause every link, let answers land.
    for l in link_ids("mk_metrics", 5) {
        let (code, _, err) = linkfresh(&["pause", &l], &s.config);
        assert_eq!(code, 0, "{err}");
    }
    // The pauses reach the loop by its change poll (each second) and the
    // gauge by its housekeeping (every two seconds): up to three seconds.
    let scrape = || async {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", s.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut body = scrape().await;
    while !body.contains("linkfresh_links{state=\"paused\"} 5")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        body = scrape().await;
    }
    // Answers still in flight when the last pause landed are in by now too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = scrape().await;
    let metric = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let stats = s.sim.stats();
    assert_eq!(
        metric("linkfresh_requests_total{endpoint=\"refresh\",status=\"202\"}") as u64,
        stats.count("refresh", 202),
        "{body}"
    );
    assert_eq!(
        metric("linkfresh_requests_total{endpoint=\"get_link\"") as u64,
        stats.total("get_link"),
        "{body}"
    );
    assert_eq!(
        metric("linkfresh_token_refreshes_total") as u64,
        stats.tokens_issued,
        "{body}"
    );
    assert_eq!(
        metric("linkfresh_products_requested_total{product=\"accounts\"}") as u64,
        stats
            .products_refreshed
            .get("accounts")
            .copied()
            .unwrap_or(0),
        "{body}"
    );
    assert!(
        body.contains("linkfresh_links{state=\"paused\"} 5"),
        "{body}"
    );
    assert!(body.contains("linkfresh_due_lag_seconds_bucket"), "{body}");
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", s.port))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_added_and_removed_links_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let s = setup(&link_ids("mk_hup", 2), "\"accounts\"").await;
    let mut d = DaemonProcess::spawn(&s.config, "h");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Swap mk_hup_001 for mk_hup_new.
    let original = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, original.replace("mk_hup_001", "mk_hup_new")).unwrap();
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_reload = s.sim.stats();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = s.sim.stats();
    let posts =
        |st: &linkfresh::sim::SimStats, l: &str| st.posts_per_link.get(l).copied().unwrap_or(0);
    assert!(
        posts(&stats, "mk_hup_new") >= 1,
        "added link never refreshed: {stats:#?}\n{}",
        d.log()
    );
    assert_eq!(
        posts(&stats, "mk_hup_001"),
        posts(&at_reload, "mk_hup_001"),
        "removed link still refreshed"
    );
    // A bad config is rejected and the daemon goes on.
    std::fs::write(&s.config, "[limits]\naccounts = \"soon\"\n").unwrap();
    d.signal("HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(d.log().contains("reload rejected"), "{}", d.log());
    assert!(
        posts(&s.sim.stats(), "mk_hup_000") > posts(&stats, "mk_hup_000"),
        "the daemon stopped after a bad reload"
    );
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(s.sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_explain_and_refresh_read_and_act_on_the_store() {
    let s = setup(&link_ids("mk_ops", 2), "\"accounts\", \"identity\"").await;
    let mut d = DaemonProcess::spawn(&s.config, "o");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, out, err) = linkfresh(&["status"], &s.config);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mk_ops_000") && out.contains("window until"),
        "{out}"
    );
    let (code, out, _) = linkfresh(&["status", "--json"], &s.config);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["links"].as_array().unwrap().len(), 2);
    assert!(
        doc["links"][0]["products"][0]["why"]["kind"].is_string(),
        "{doc}"
    );
    let (code, out, _) = linkfresh(&["explain", "mk_ops_001"], &s.config);
    assert_eq!(code, 0);
    assert!(
        out.contains("identity") && out.contains("recent attempts"),
        "{out}"
    );
    let (code, out, err) = linkfresh(
        &["refresh", "mk_ops_001", "--products", "identity"],
        &s.config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("refresh requested"), "{out}");
    let (code, _, err) = linkfresh(&["pause", "mk_nope"], &s.config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no link mk_nope"), "{err}");
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(s.sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_sqlite_file_stops_at_start_and_names_the_first() {
    let s = setup(&link_ids("mk_owner", 3), "\"accounts\"").await;
    let mut first = DaemonProcess::spawn(&s.config, "owner1");
    wait_running(&first).await;
    // Same database, another port: only the store is shared.
    let second_config = s.dir.path().join("second.toml");
    let body = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("listen = \"127.0.0.1:{}\"", s.port),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    std::fs::write(&second_config, body).unwrap();
    let mut second = DaemonProcess::spawn(&second_config, "owner2");
    assert_eq!(
        second.wait(Duration::from_secs(10)),
        Some(1),
        "{}",
        second.log()
    );
    let log = second.log();
    assert!(log.contains("in use by another linkfresh daemon"), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.child.id())),
        "names the holder: {log}"
    );
    // The first one is unaffected and stops cleanly; then the file is free.
    first.signal("TERM");
    assert_eq!(
        first.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        first.log()
    );
    let mut third = DaemonProcess::spawn(&second_config, "owner3");
    wait_running(&third).await;
    third.signal("TERM");
    assert_eq!(
        third.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        third.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_beside_the_config_do_not_reload_it_but_the_config_file_does() {
    let s = setup(&link_ids("mk_watch", 3), "\"accounts\"").await;
    // The daemon's own log, its SQLite files and a stray file all live in the
    // config folder and change all the time.
    let mut d = DaemonProcess::spawn(&s.config, "watch");
    wait_running(&d).await;
    for i in 0..5 {
        std::fs::write(s.dir.path().join("notes.txt"), format!("{i}")).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !d.log().contains("config folder changed"),
        "reloaded for a file that is not the config:\n{}",
        d.log()
    );
    let body = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("{body}\n# touched\n")).unwrap();
    assert!(
        daemon::wait_until(Duration::from_secs(5), || d
            .log()
            .contains("config folder changed"))
        .await,
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{}", d.log());
}

/// Waits (at most 10 s) for the daemon to log that it runs.
async fn wait_running(d: &DaemonProcess) {
    assert!(
        daemon::wait_until(Duration::from_secs(10), || d
            .log()
            .contains("linkfresh is running"))
        .await,
        "{}",
        d.log()
    );
}
