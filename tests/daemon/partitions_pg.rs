//! Partitioned ownership end to end (issue 16): real `linkfresh run`
//! processes on one PostgreSQL database against the simulator. A joining
//! replica takes about a quarter of the partitions within two leases and a
//! leaving one hands its share back; a replica paused past its lease
//! (SIGSTOP) sends nothing for the partitions it lost; the fleet's rate is
//! the setting, not the setting per replica. Skipped, loudly, unless
//! `LINKFRESH_TEST_PG_URL` or `DATABASE_URL` names a server.

use crate::daemon;
use crate::store_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids, wait_until_async};
use linkfresh::sim::{self, SimConfig};
use linkfresh::store::Store;
use linkfresh::store::ownership::FleetView;
use store_common::TestDb;

/// `[database] lease` of these replicas.
pub(crate) const LEASE: Duration = Duration::from_secs(3);

/// A config on PostgreSQL with a short lease; `moneykit` replaces keys of
/// the `[moneykit]` table (e.g. the rate), `top` goes before every table.
pub(crate) fn config(
    dir: &std::path::Path,
    sim: &sim::SimHandle,
    cfg: &SimConfig,
    url: &str,
    links: &[String],
    moneykit: &[(&str, &str)],
    top: &str,
) -> std::path::PathBuf {
    let db = dir.join("unused.db");
    let mut body = daemon_toml(&sim.base_url(), &db, cfg, links, "\"accounts\"", "").replace(
        &format!("url = \"sqlite://{}\"", db.display()),
        &format!("url = \"{url}\"\nlease = \"{}ms\"", LEASE.as_millis()),
    );
    for (key, value) in moneykit {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap()
            .to_owned();
        body = body.replace(&line, &format!("{key} = {value}"));
    }
    let path = dir.join(format!("linkfresh-{:x}.toml", rand::random::<u32>()));
    std::fs::write(&path, format!("{top}{body}")).unwrap();
    path
}

/// The simulator on `fast_windows` and a scratch folder for the configs:
/// how every fleet test on PostgreSQL starts.
pub(crate) async fn fast_sim() -> (SimConfig, sim::SimHandle, tempfile::TempDir) {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    (cfg, sim, tempfile::tempdir().unwrap())
}

pub(crate) fn start(config: &std::path::Path, tag: &str) -> (DaemonProcess, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = DaemonProcess::spawn_with_env(
        config,
        tag,
        &[("LINKFRESH__SERVER__LISTEN", listen.as_str())],
    );
    (d, port)
}

/// The lines of a daemon's log that tell how its partitions moved.
fn story(d: &DaemonProcess) -> String {
    d.log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("partition"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many links a daemon loaded for the partitions it gained, from its log.
pub(crate) fn links_loaded(d: &DaemonProcess) -> usize {
    let mut plain = String::new();
    let mut in_escape = false;
    for c in d.log().chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("loaded the links of gained partitions"))
        .filter_map(|l| {
            l.split(" links=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

pub(crate) async fn view(store: &Arc<dyn Store>) -> FleetView {
    store.ownership().unwrap().view().await.unwrap()
}

/// Partitions held by live replicas, per replica, largest first.
pub(crate) fn shares(v: &FleetView) -> Vec<usize> {
    let mut s: Vec<usize> = v
        .replicas
        .iter()
        .filter(|r| r.lease_left_ms > 0)
        .map(|r| r.partitions.len())
        .collect();
    s.sort_unstable_by(|a, b| b.cmp(a));
    s
}

pub(crate) async fn until_shares(store: &Arc<dyn Store>, limit: Duration, want: &[usize]) -> bool {
    wait_until_async(limit, || async { shares(&view(store).await) == want }).await
}

pub(crate) async fn refresh_posts(port: u16) -> u64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("linkfresh_requests_total{") && l.contains("refresh"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_replica_owns_a_quarter_within_two_leases_and_hands_it_back_when_it_leaves() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let _fleet = crate::PG_FLEET.lock().await;
    let (cfg, sim, dir) = fast_sim().await;
    let links = link_ids("mk_join", 60);
    let config = config(dir.path(), &sim, &cfg, &db.url, &links, &[], "");
    let mut replicas: Vec<(DaemonProcess, u16)> =
        (0..3).map(|i| start(&config, &format!("r{i}"))).collect();
    let store = db.open().await;
    assert!(
        until_shares(&store, Duration::from_secs(15), &[22, 21, 21]).await,
        "{:#?}\n{}",
        view(&store).await,
        replicas[0].0.log()
    );

    // Started together, the first to beat may load the whole fleet before
    // the others count (see `membership`); printed for the record.
    let loaded: Vec<usize> = replicas.iter().map(|(d, _)| links_loaded(d)).collect();
    eprintln!(
        "links each replica loaded at start (of {}): {loaded:?}",
        links.len()
    );
    let joined = Instant::now();
    let (fourth, fourth_port) = start(&config, "r3");
    assert!(
        until_shares(
            &store,
            2 * LEASE + Duration::from_secs(2),
            &[16, 16, 16, 16]
        )
        .await,
        "{:?}\n{}\n{}",
        shares(&view(&store).await),
        story(&fourth),
        replicas
            .iter()
            .map(|(d, _)| story(d))
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    let took = joined.elapsed();
    eprintln!("the fourth replica held a quarter {took:?} after it was started");
    // Start-up (config sync, connect) is part of that; the rebalance itself
    // must fit in two leases.
    assert!(took <= 2 * LEASE + Duration::from_secs(2), "{took:?}");
    assert!(
        wait_until_async(Duration::from_secs(6), || async {
            refresh_posts(fourth_port).await > 0
        })
        .await,
        "the fourth replica schedules its partitions' links\n{}",
        fourth.log()
    );

    // The operator's view: metrics, the replicas page, `status`.
    let metrics = reqwest::get(format!("http://127.0.0.1:{fourth_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "linkfresh_partitions_owned 16"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("linkfresh_rebalances_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let page = reqwest::get(format!("http://127.0.0.1:{fourth_port}/replicas"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("data-held=\"16\"").count(), 4, "{page}");
    let (code, out, err) = daemon::linkfresh(&["status"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replicas (64 partitions, unheld: -)"), "{out}");
    assert_eq!(out.matches(" 16 ").count(), 4, "{out}");
    let (code, out, _) = daemon::linkfresh(&["status", "--json"], &config);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["replicas"]["replicas"].as_array().unwrap().len(),
        4,
        "{doc}"
    );

    // A clean leave: its partitions go back within a heartbeat, not a lease.
    fourth.signal("TERM");
    let mut fourth = fourth;
    assert_eq!(
        fourth.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        fourth.log()
    );
    let left = Instant::now();
    assert!(
        until_shares(&store, LEASE, &[22, 21, 21]).await,
        "{:#?}",
        view(&store).await
    );
    eprintln!(
        "its partitions were back {:?} after it left",
        left.elapsed()
    );
    let stats = sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");
    for (d, _) in &mut replicas {
        d.signal("TERM");
        assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{}", d.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_past_its_lease_never_sends_for_the_partitions_it_lost() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let _fleet = crate::PG_FLEET.lock().await;
    // Slow answers and one place on the wire per replica: each replica
    // always has POSTs whose intents are committed and which wait for the
    // wire, the ones a pause must not let out late.
    let mut cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    cfg.faults.slow_response = Some(Duration::from_millis(700));
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let links = link_ids("mk_pause", 16);
    let one_each = [("max_in_flight", "2")];
    let config = config(dir.path(), &sim, &cfg, &db.url, &links, &one_each, "");
    let (paused, paused_port) = start(&config, "paused");
    let (other, _) = start(&config, "other");
    let store = db.open().await;
    assert!(
        until_shares(&store, Duration::from_secs(15), &[32, 32]).await,
        "{:#?}",
        view(&store).await
    );
    // Each link is read once (0.7 s, one at a time) before its first POST.
    assert!(
        wait_until_async(Duration::from_secs(15), || async {
            refresh_posts(paused_port).await > 0
        })
        .await,
        "{}",
        paused.log()
    );

    // Paused past its lease: the other replica takes every partition.
    paused.signal("STOP");
    let stopped = Instant::now();
    assert!(
        until_shares(&store, 2 * LEASE + Duration::from_secs(1), &[64]).await,
        "{:#?}\n{}",
        view(&store).await,
        other.log()
    );
    eprintln!(
        "the other replica held everything {:?} after SIGSTOP",
        stopped.elapsed()
    );
    // Long enough for the paused replica's timers and queued POSTs to be due.
    let during = sim.stats();
    tokio::time::sleep(Duration::from_millis(200)).await;
    paused.signal("CONT");
    // It wakes believing it holds half the partitions; it must neither
    // commit nor send a POST for them until a heartbeat gives some back.
    assert!(
        until_shares(&store, 2 * LEASE + Duration::from_secs(1), &[32, 32]).await,
        "{:#?}\n{}",
        view(&store).await,
        paused.log()
    );
    // A few more answered POSTs of both replicas (about 3 a second here).
    let until = sim.stats().count("refresh", 202) + 8;
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            sim.stats().count("refresh", 202) >= until
        })
        .await,
        "{:#?}",
        sim.stats()
    );
    let stats = sim.stats();
    eprintln!(
        "202s before the pause ended {}, at the end {}; violations {}",
        during.count("refresh", 202),
        stats.count("refresh", 202),
        stats.violations
    );
    assert_eq!(stats.violations, 0, "{stats:#?}\n{}", paused.log());
    assert_eq!(stats.retry_after_violations, 0, "{stats:#?}");
    // It did wake with committed POSTs waiting for the wire, and dropped them.
    assert!(
        paused
            .log()
            .contains("no longer holds the link's partition"),
        "{}",
        paused.log()
    );
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_the_fleet_within_its_rate_not_three_times_it() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let _fleet = crate::PG_FLEET.lock().await;
    let (cfg, sim, dir) = fast_sim().await;
    // 600 links due every 2 s want 300 POSTs a second: the rate binds.
    let links = link_ids("mk_rate", 600);
    let rate = [("max_requests_per_second", "100")];
    let config = config(dir.path(), &sim, &cfg, &db.url, &links, &rate, "");
    let replicas: Vec<(DaemonProcess, u16)> =
        (0..3).map(|i| start(&config, &format!("r{i}"))).collect();
    let store = db.open().await;
    assert!(
        until_shares(&store, Duration::from_secs(15), &[22, 21, 21]).await,
        "{:#?}",
        view(&store).await
    );
    // Reads (each link's first GET) and POSTs share the rate.
    let requests = |s: &linkfresh::sim::SimStats| s.total("refresh") + s.total("get_link");
    let (from, posts_from) = (requests(&sim.stats()), sim.stats().total("refresh"));
    let started = Instant::now();
    assert!(
        wait_until_async(Duration::from_secs(15), || async {
            sim.stats().total("refresh") >= posts_from + 400
        })
        .await,
        "{:#?}",
        sim.stats()
    );
    let stats = sim.stats();
    let per_second = (requests(&stats) - from) as f64 / started.elapsed().as_secs_f64();
    let max = stats.max_posts_in_any_second();
    let max_in_two = stats.max_posts_in(20);
    let mut posts = Vec::new();
    for (_, port) in &replicas {
        posts.push(refresh_posts(*port).await);
    }
    eprintln!(
        "fleet rate 100/s: at most {max} POSTs in any second ({max_in_two} in any two), {per_second:.0} requests/s on average; POSTs per replica {posts:?}"
    );
    // The simulator counts arrivals: when this 2-core machine runs other
    // tests beside it, a stall of its loop lets requests sent at the right
    // pace arrive together (seen once: 122 in one second). Judged over two
    // seconds, so a short stall does not fail it; a rate per replica would
    // send 300 a second here.
    assert!(
        max_in_two <= 210,
        "{max_in_two} POSTs in two seconds\n{stats:#?}"
    );
    assert!(
        per_second >= 60.0,
        "the shares add up to the rate: {per_second}"
    );
    assert!(posts.iter().all(|n| *n > 0), "{posts:?}");
    assert_eq!(stats.violations, 0);
}
