//! The daemon end to end: the real `Application` against the simulator over
//! loopback HTTP, a real SQLite file, windows of seconds.

use crate::daemon;

use std::time::Duration;

use daemon::{TestDaemon, fast_windows, http_get, link_ids, wait_until};
use linkfresh::domain::{LinkId, LinkState, ProductSet};
use linkfresh::sim::{Faults, Outage, SimConfig, SimLink, SimLinkState};

const FOUR: &str = "\"accounts\", \"transactions\", \"account_numbers\", \"identity\"";

fn sim_config() -> SimConfig {
    SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_links_stay_fresh_without_a_single_window_violation() {
    let links = link_ids("mk_fresh", 20);
    let d = TestDaemon::start(sim_config(), &links, FOUR, "").await;
    // Spacing is window + margin (2.1 s, 6.1 s); the first request waits
    // for a GET and a phase of up to 0.5 s. Within a 12 s budget every link
    // has at least `hourly_min` POSTs: wait for that (plus every link's
    // daily products once), then judge the POST count against the time
    // actually run.
    let budget = Duration::from_secs(12);
    let hourly_min = (budget.as_secs_f64() / 2.1).floor() as u64 - 1;
    let daily_min = ((budget.as_secs_f64() / 6.1).floor() as u64 - 1).max(1);
    let started = d.started;
    let fresh = |stats: &linkfresh::sim::SimStats| {
        let refreshed = |p: &str| stats.products_refreshed.get(p).copied().unwrap_or(0);
        links
            .iter()
            .all(|l| stats.posts_per_link.get(l).copied().unwrap_or(0) >= hourly_min)
            && refreshed("identity") >= daily_min * 20
    };
    assert!(
        wait_until(budget, || fresh(&d.sim.stats())).await,
        "{:#?}",
        d.sim.stats()
    );
    let (sim, result) = d.stop().await;
    let run = started.elapsed();
    result.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");
    for l in &links {
        assert!(
            stats.posts_per_link.get(l).copied().unwrap_or(0) >= hourly_min,
            "{l}: {stats:#?}"
        );
    }
    let refreshed = |p: &str| stats.products_refreshed.get(p).copied().unwrap_or(0);
    assert!(refreshed("accounts") >= hourly_min * 20, "{stats:#?}");
    assert!(refreshed("transactions") >= hourly_min * 20, "{stats:#?}");
    assert!(refreshed("identity") >= daily_min * 20, "{stats:#?}");
    // At most 1.25x the minimum: one POST per link per hourly window.
    let posts = stats.total("refresh");
    let minimum = 20.0 * (run.as_secs_f64() / 2.1).ceil();
    assert!(
        posts as f64 <= 1.25 * minimum,
        "{posts} POSTs in {run:?}, minimum {minimum}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_delays_the_link_until_then() {
    let cfg = SimConfig {
        faults: Faults {
            rate_429: 0.3,
            retry_after: Some(Duration::from_secs(3)),
            ..Faults::default()
        },
        ..sim_config()
    };
    let d = TestDaemon::start(
        cfg,
        &link_ids("mk_429", 8),
        "\"accounts\", \"transactions\"",
        "",
    )
    .await;
    // Once a 429 is seen, every link (the one that got it among them) must
    // POST again: a link that did not wait out its Retry-After is counted
    // by the simulator as it comes.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .sim
            .stats()
            .count("refresh", 429)
            > 0)
        .await,
        "no 429 was injected: {:#?}",
        d.sim.stats()
    );
    let at_429 = d.sim.stats().posts_per_link;
    let again = |stats: &linkfresh::sim::SimStats| {
        at_429
            .iter()
            .all(|(l, n)| stats.posts_per_link.get(l).copied().unwrap_or(0) > *n)
            && stats.count("refresh", 202) >= 8
    };
    assert!(
        wait_until(Duration::from_secs(10), || again(&d.sim.stats())).await,
        "{:#?}",
        d.sim.stats()
    );
    let (sim, result) = d.stop().await;
    result.unwrap();
    let stats = sim.stats();
    assert!(
        stats.count("refresh", 429) > 0,
        "no 429 was injected: {stats:#?}"
    );
    assert_eq!(stats.retry_after_violations, 0, "{stats:#?}");
    assert_eq!(stats.violations, 0, "{stats:#?}");
    assert!(stats.count("refresh", 202) >= 8, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_ttl_costs_about_one_token_per_ttl_and_loses_no_refresh() {
    let cfg = SimConfig {
        token_ttl: Duration::from_secs(2),
        ..sim_config()
    };
    let d = TestDaemon::start(cfg, &link_ids("mk_ttl", 5), "\"accounts\"", "").await;
    // Three POSTs per link span two windows (4.2 s), two TTLs and more.
    let three_each = |stats: &linkfresh::sim::SimStats| {
        link_ids("mk_ttl", 5)
            .iter()
            .all(|l| stats.posts_per_link.get(l).copied().unwrap_or(0) >= 3)
            && stats.tokens_issued >= 3
    };
    assert!(
        wait_until(Duration::from_secs(9), || three_each(&d.sim.stats())).await,
        "{:#?}",
        d.sim.stats()
    );
    let (sim, result) = d.stop().await;
    result.unwrap();
    let stats = sim.stats();
    // Renewal at 0.8 x 2 s: about 9 / 1.6 ~ 6 tokens; never one per request.
    assert!((3..=9).contains(&stats.tokens_issued), "{stats:#?}");
    assert_eq!(stats.count("refresh", 401), 0, "{stats:#?}");
    assert_eq!(stats.violations, 0);
    for l in link_ids("mk_ttl", 5) {
        assert!(
            stats.posts_per_link.get(&l).copied().unwrap_or(0) >= 3,
            "{l}: {stats:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_links_stop_after_their_first_answer_and_healthy_ones_go_on() {
    let id = |s: &str| LinkId::parse(s).unwrap();
    let mut forbidden = SimLink::healthy(id("mk_p_forbidden"));
    forbidden.forbidden_products = ProductSet::parse_list("identity").unwrap();
    let mut user = SimLink::healthy(id("mk_p_user")).with_state(SimLinkState::NeedsUserAction);
    user.link_error_code = Some("auth_expired".into());
    let cfg = SimConfig {
        links: vec![
            SimLink::healthy(id("mk_p_deleted")).with_state(SimLinkState::Deleted),
            SimLink::healthy(id("mk_p_missing")).with_state(SimLinkState::NotFound),
            user,
            forbidden,
            SimLink::healthy(id("mk_p_ok")),
        ],
        ..sim_config()
    };
    let links: Vec<String> = [
        "mk_p_deleted",
        "mk_p_missing",
        "mk_p_user",
        "mk_p_forbidden",
        "mk_p_ok",
    ]
    .map(String::from)
    .to_vec();
    let d = TestDaemon::start(cfg, &links, "\"accounts\", \"identity\"", "").await;
    // Three POSTs of the healthy links span two hourly windows: had the
    // parked links not been parked, each would have been asked again in
    // that time (a 422 after a 0.5 s backoff, the others within a window).
    let going_on = |stats: &linkfresh::sim::SimStats| {
        ["mk_p_ok", "mk_p_forbidden"]
            .iter()
            .all(|l| stats.posts_per_link.get(*l).copied().unwrap_or(0) >= 3)
    };
    assert!(
        wait_until(Duration::from_secs(8), || going_on(&d.sim.stats())).await,
        "{:#?}",
        d.sim.stats()
    );
    let store = linkfresh::store::connect(&format!(
        "sqlite://{}",
        d.dir.path().join("lf.db").display()
    ))
    .await
    .unwrap();
    let stats = d.sim.stats();
    let posts = |l: &str| stats.posts_per_link.get(l).copied().unwrap_or(0);
    // 404/410 are learnt from the first GET; 422 costs at most one POST.
    assert!(
        posts("mk_p_deleted") <= 1 && posts("mk_p_missing") <= 1 && posts("mk_p_user") <= 1,
        "{stats:#?}"
    );
    assert!(posts("mk_p_ok") >= 3, "{stats:#?}");
    assert!(
        posts("mk_p_forbidden") >= 3,
        "the other products go on: {stats:#?}"
    );
    let state = |l: &str| {
        let store = store.clone();
        let l = id(l);
        async move { store.load_link(&l).await.unwrap().unwrap() }
    };
    assert_eq!(state("mk_p_deleted").await.state, LinkState::Deleted);
    assert_eq!(state("mk_p_missing").await.state, LinkState::NotFound);
    assert_eq!(state("mk_p_user").await.state, LinkState::NeedsUserAction);
    let f = state("mk_p_forbidden").await;
    assert_eq!(f.state, LinkState::Active);
    let identity = f
        .schedules
        .iter()
        .find(|s| s.product.as_str() == "identity")
        .unwrap();
    assert!(identity.parked_reason.is_some(), "{f:#?}");
    assert_eq!(stats.violations, 0);
    let (_, result) = d.stop().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_the_daemon_stays_up_and_links_are_fresh_again_within_two_windows() {
    let cfg = SimConfig {
        faults: Faults {
            outages: vec![Outage {
                start_after: Duration::from_secs(2),
                duration: Duration::from_secs(4),
            }],
            ..Faults::default()
        },
        ..sim_config()
    };
    let links = link_ids("mk_out", 6);
    let d = TestDaemon::start(cfg, &links, "\"accounts\"", "").await;
    let outage_end = d.started + Duration::from_secs(2 + 4);
    // The first 503 means the outage has begun (it lasts until 6 s).
    assert!(
        wait_until(Duration::from_secs(6), || d
            .sim
            .stats()
            .count("refresh", 503)
            > 0)
        .await,
        "no outage seen: {:#?}",
        d.sim.stats()
    );
    let (status, _) = http_get(d.addr, "/healthz").await;
    assert_eq!(status, 200, "healthz during the outage");
    assert!(std::time::Instant::now() < outage_end, "checked too late");
    let before = d.sim.stats();
    let ok = |s: &linkfresh::sim::SimStats| s.count("refresh", 202);
    // Within two windows (2 x 2.1 s) of the outage's end every link has had
    // a 202 again.
    let fresh_again = outage_end + Duration::from_millis(4200);
    assert!(
        wait_until(
            fresh_again.saturating_duration_since(std::time::Instant::now()),
            || ok(&d.sim.stats()) >= ok(&before) + links.len() as u64
        )
        .await,
        "before {before:#?}\nafter {:#?}",
        d.sim.stats()
    );
    let after = d.sim.stats();
    let (sim, result) = d.stop().await;
    result.unwrap();
    assert!(
        after.count("refresh", 503) + before.count("refresh", 503) > 0,
        "no outage seen: {after:#?}"
    );
    assert!(
        ok(&after) >= ok(&before) + links.len() as u64,
        "before {before:#?}\nafter {after:#?}"
    );
    assert_eq!(sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pause_is_noticed_within_a_second() {
    let links = link_ids("mk_pause", 2);
    let d = TestDaemon::start(sim_config(), &links, "\"accounts\"", "").await;
    assert!(
        wait_until(Duration::from_secs(5), || d
            .sim
            .stats()
            .posts_per_link
            .contains_key("mk_pause_000"))
        .await
    );
    let store = linkfresh::store::connect(&format!(
        "sqlite://{}",
        d.dir.path().join("lf.db").display()
    ))
    .await
    .unwrap();
    let id = LinkId::parse("mk_pause_000").unwrap();
    assert!(
        store
            .set_paused(&id, true, chrono::Utc::now())
            .await
            .unwrap()
    );
    // The other link is the clock: two more of its POSTs are at least one
    // window (2.1 s) apart, longer than the change poll (each second) that
    // brings the pause to the loop; three more after that span two windows,
    // in which an unpaused link would have been refreshed.
    let other = || {
        d.sim
            .stats()
            .posts_per_link
            .get("mk_pause_001")
            .copied()
            .unwrap_or(0)
    };
    let from = other();
    assert!(
        wait_until(Duration::from_secs(6), || other() >= from + 2).await,
        "{:#?}",
        d.sim.stats()
    );
    let paused_at = d.sim.stats().posts_per_link["mk_pause_000"];
    let from = other();
    assert!(
        wait_until(Duration::from_secs(8), || other() >= from + 3).await,
        "{:#?}",
        d.sim.stats()
    );
    let stats = d.sim.stats();
    assert_eq!(
        stats.posts_per_link["mk_pause_000"], paused_at,
        "a paused link was refreshed"
    );
    assert!(stats.posts_per_link["mk_pause_001"] >= 3);
    let (_, result) = d.stop().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_waiting_for_its_user_resumes_on_a_signed_connected_webhook() {
    let id = LinkId::parse("mk_wh_user").unwrap();
    let mut user = SimLink::healthy(id.clone()).with_state(SimLinkState::NeedsUserAction);
    user.link_error_code = Some("auth_expired".into());
    let cfg = SimConfig {
        links: vec![user.clone()],
        ..sim_config()
    };
    // backoff_max is long, so only the webhook can bring the link back soon.
    let d = TestDaemon::start_with(cfg, &["mk_wh_user".to_owned()], "\"accounts\"", "", |t| {
        t.replace("backoff_max = \"3s\"", "backoff_max = \"60s\"")
    })
    .await;
    let store = linkfresh::store::connect(&format!(
        "sqlite://{}",
        d.dir.path().join("lf.db").display()
    ))
    .await
    .unwrap();
    let parked = async {
        loop {
            if store
                .load_link(&id)
                .await
                .unwrap()
                .is_some_and(|l| l.state == LinkState::NeedsUserAction)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(6), parked)
        .await
        .expect("link parked as needs_user_action");
    let posts_parked = d
        .sim
        .stats()
        .posts_per_link
        .get("mk_wh_user")
        .copied()
        .unwrap_or(0);
    // The user reconnects: the simulator signs and sends link.state_changed.
    user.state = SimLinkState::Healthy;
    user.webhook = Some(format!("http://{}/webhooks/moneykit", d.addr));
    d.sim.set_link(user);
    assert!(
        wait_until(Duration::from_secs(6), || d
            .sim
            .stats()
            .posts_per_link
            .get("mk_wh_user")
            .copied()
            .unwrap_or(0)
            > posts_parked)
        .await,
        "the link did not resume after the webhook"
    );
    assert_eq!(
        store.load_link(&id).await.unwrap().unwrap().state,
        LinkState::Active
    );
    let (sim, result) = d.stop().await;
    result.unwrap();
    assert_eq!(sim.stats().violations, 0);
}
