//! Demand from the owning app end to end (issue 17): the daemon on the
//! simulator over loopback, on a SQLite file and on PostgreSQL. A stale
//! link's `refresh` with `max_age` leaves within a second (median over repeated
//! requests), a fresh link's is not sent at all, activity switches a link
//! between its idle and active cadence, and tags select a profile.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use linkfresh::domain::{LinkId, Product};
use linkfresh::sim::{SimConfig, SimHandle, SimLink, Windows};
use serde_json::Value;

use crate::daemon::{TestDaemon, link_ids, wait_until, wait_until_async};
use crate::store_common::TestDb;

pub(crate) const TOKEN: &str = "demand-t0ken";

/// Hourly products 400 ms, daily ones 2 s: rounds of on-demand refreshes
/// a fraction of a second apart.
pub(crate) fn short_windows() -> Windows {
    let (h, d) = (Duration::from_millis(400), Duration::from_secs(2));
    Windows {
        accounts: h,
        transactions: h,
        account_numbers: d,
        identity: d,
        investments: d,
        enrichment: d,
    }
}

pub(crate) fn sim_cfg(links: Vec<SimLink>) -> SimConfig {
    SimConfig {
        windows: short_windows(),
        links,
        ..SimConfig::default()
    }
}

/// The daemon with `profiles` (TOML after `[server]`), on SQLite or, with
/// `pg`, on that PostgreSQL database.
pub(crate) async fn start(
    sim: SimConfig,
    links: &[String],
    profiles: &str,
    pg: Option<&TestDb>,
) -> TestDaemon {
    let extra = format!("admin_token = \"{TOKEN}\"\n{profiles}");
    let pg = pg.map(|db| db.url.clone());
    TestDaemon::start_with(sim, links, "\"accounts\"", &extra, move |toml| match pg {
        None => toml,
        Some(url) => toml
            .lines()
            .map(|l| {
                if l.starts_with("url = \"sqlite://") {
                    // One replica: no settle for others to join first (it
                    // would eat the first 2 s of a test's timed windows).
                    format!("url = \"{url}\"\ninitial_settle = \"0s\"")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    })
    .await
}

pub(crate) async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn view(addr: std::net::SocketAddr, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/api/links/{id}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// When MoneyKit last saw the link's accounts requested.
pub(crate) fn attempted(sim: &SimHandle, id: &str) -> Option<DateTime<Utc>> {
    let link = sim.link(&LinkId::parse(id).unwrap())?;
    link.product(Product::Accounts)?.last_attempted_at
}

/// Waits until the daemon has read every link once (reconciliation).
async fn reconciled(d: &mut TestDaemon, n: usize) {
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, d.activity.recv()).await {
            Ok(Some(a)) if a.outcome == "reconciled" => seen += 1,
            Ok(Some(_)) => {}
            _ => panic!("only {seen} of {n} links reconciled within 10 s"),
        }
    }
}

/// Links refreshed only on demand, for the latency test.
pub(crate) const ON_DEMAND: &str = "[defaults]\nactive_for = \"1s\"\nidle = \"never\"\n";

async fn stale_refreshes_leave_within_a_second_and_fresh_ones_not_at_all(pg: Option<&TestDb>) {
    let links = link_ids("mk_dem", 10);
    let d = start(sim_cfg(Vec::new()), &links, ON_DEMAND, pg).await;
    // Nothing due, ever: not even the read before a first POST happens
    // until the app asks (so the first round's latency includes it).
    assert_eq!(
        d.sim.stats().total("refresh"),
        0,
        "idle = never: nothing in the background"
    );

    let rounds = 5;
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let mut asked = Vec::new();
        for id in &links {
            let before = attempted(&d.sim, id);
            let t0 = Utc::now();
            let (status, body) = post(
                d.addr,
                &format!("/api/links/{id}/refresh"),
                r#"{"max_age": "300ms"}"#,
            )
            .await;
            assert_eq!(status, 202, "round {round} {id}: {body}");
            assert_eq!(body["products"][0]["product"], "accounts", "{body}");
            asked.push((id, t0, before));
        }
        for (id, t0, before) in &asked {
            assert!(
                wait_until(Duration::from_secs(5), || attempted(&d.sim, id) != *before).await,
                "round {round}: {id}'s refresh never reached MoneyKit"
            );
            let at = attempted(&d.sim, id).unwrap();
            latencies.push((at - *t0).num_milliseconds());
        }
        // Just refreshed: younger than an hour, so answered 200, nothing sent.
        let posts = d.sim.stats().total("refresh");
        for id in &links {
            let (status, body) = post(
                d.addr,
                &format!("/api/links/{id}/refresh"),
                r#"{"max_age": "1h", "products": ["accounts"]}"#,
            )
            .await;
            assert_eq!(status, 200, "{id}: {body}");
            assert_eq!(body["fresh"], true, "{body}");
            assert!(
                body["products"][0]["age_seconds"].as_i64().unwrap() < 5,
                "{body}"
            );
        }
        assert_eq!(
            d.sim.stats().total("refresh"),
            posts,
            "a fresh link's refresh is never sent"
        );
        // The next round once every window (400 ms + 100 ms margin) has passed.
        let last = asked
            .iter()
            .filter_map(|(id, ..)| attempted(&d.sim, id))
            .max()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(3), || Utc::now()
                > last + chrono::TimeDelta::milliseconds(600))
            .await
        );
    }
    let stats = d.sim.stats();
    assert_eq!(
        stats.total("refresh"),
        (rounds * links.len()) as u64,
        "{stats:#?}"
    );
    assert_eq!(stats.violations, 0, "{stats:#?}");
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    eprintln!(
        "on-demand refresh, request to MoneyKit ({} backend, {} samples): p50 {} ms, p99 {} ms, max {} ms",
        if pg.is_some() { "postgres" } else { "sqlite" },
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies.last().unwrap()
    );
    // The 1 s p99 is a benchmark target (`linkfresh-bench demand`, README):
    // on a shared 2-core CI machine running other daemons beside this one,
    // one stalled round (a PostgreSQL fsync, a descheduled thread) moves
    // the p99 of 50 samples past a second without anything being wrong.
    // What a test can hold on any machine: the typical refresh leaves within
    // a second (a design that waited for a poll or the next cadence would
    // not), and every one was sent within the 5 s waited above.
    assert!(p(0.5) < 1000, "p50 {} ms: {latencies:?}", p(0.5));
    let (_, metrics) = crate::daemon::http_get(d.addr, "/metrics").await;
    for result in ["fresh", "queued"] {
        let line = format!("linkfresh_demand_requests_total{{result=\"{result}\"}}");
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 50.0, "{line} = {n}\n{metrics}");
    }
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_links_refresh_leaves_within_a_second_and_a_fresh_ones_is_never_sent_on_sqlite() {
    stale_refreshes_leave_within_a_second_and_fresh_ones_not_at_all(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_links_refresh_leaves_within_a_second_and_a_fresh_ones_is_never_sent_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    stale_refreshes_leave_within_a_second_and_fresh_ones_not_at_all(Some(&db)).await;
}

/// Active for 3 s after an activity call: accounts as often as the window
/// allows (400 ms); idle: never.
const ACTIVE_THEN_NEVER: &str =
    "[defaults]\nactive_for = \"3s\"\nactive = { accounts = \"400ms\" }\nidle = \"never\"\n";

pub(crate) fn why(view: &Value) -> Value {
    view["products"][0]["why"].clone()
}

async fn activity_switches_idle_to_active_and_back(pg: Option<&TestDb>) {
    let links = link_ids("mk_act", 1);
    let id = links[0].as_str();
    let d = start(sim_cfg(Vec::new()), &links, ACTIVE_THEN_NEVER, pg).await;
    assert_eq!(d.sim.stats().total("refresh"), 0);
    let idle = why(&view(d.addr, id).await);
    assert_eq!(idle["kind"], "idle", "{idle}");
    assert_eq!(idle["until"], Value::Null, "{idle}");

    let (status, body) = post(d.addr, &format!("/api/links/{id}/activity"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recorded"], true, "{body}");
    let first_until: DateTime<Utc> = serde_json::from_value(body["active_until"].clone()).unwrap();
    assert!(first_until > Utc::now(), "{body}");
    // A busy app calling again and again writes about once per tenth of
    // active_for (300 ms), not once per call.
    let (calls, t0) = (20, Instant::now());
    let mut written = 0;
    for _ in 0..calls {
        let (status, again) = post(d.addr, &format!("/api/links/{id}/activity"), "").await;
        assert_eq!(status, 200, "{again}");
        written += usize::from(again["recorded"] == true);
    }
    let most = 1 + t0.elapsed().as_millis() as usize / 300;
    assert!(
        written <= most,
        "{written} of {calls} calls wrote (at most {most})"
    );
    assert!(
        wait_until(Duration::from_secs(3), || d.sim.stats().total("refresh")
            >= 3)
        .await,
        "active: several refreshes, got {:#?}",
        d.sim.stats()
    );
    // Back to idle once active_for has passed: the policy says never.
    let addr = d.addr;
    let until = view(addr, id).await["last_activity_at"].clone();
    let active_until =
        serde_json::from_value::<DateTime<Utc>>(until).unwrap() + chrono::TimeDelta::seconds(3);
    assert!(
        wait_until_async(Duration::from_secs(6), || async move {
            Utc::now() > active_until && why(&view(addr, id).await)["kind"] == "idle"
        })
        .await,
        "never idle again: {}",
        view(addr, id).await
    );
    let posts = d.sim.stats().total("refresh");
    // Active from the first call to 3 s after the last one stored, at one
    // POST per 500 ms at most, however often the app called.
    let active_ms = (active_until - first_until).num_milliseconds() + 3000;
    let most = 1 + active_ms as u64 / 500;
    assert!(
        posts <= most,
        "{posts} POSTs while active for {active_ms} ms"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        d.sim.stats().total("refresh"),
        posts,
        "idle = never sends nothing"
    );
    assert_eq!(d.sim.stats().violations, 0);
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_switches_a_link_from_idle_to_active_cadence_and_back_on_sqlite() {
    activity_switches_idle_to_active_and_back(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_switches_a_link_from_idle_to_active_cadence_and_back_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    activity_switches_idle_to_active_and_back(Some(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moneykit_link_tags_select_a_profile() {
    let links = link_ids("mk_tag", 2);
    let tagged = SimLink {
        tags: vec!["plan:free".into()],
        ..SimLink::healthy(LinkId::parse(&links[0]).unwrap())
    };
    let profiles =
        "[profiles.free]\ntags = [\"plan:free\"]\nactive_for = \"1h\"\nidle = \"never\"\n";
    let mut d = start(sim_cfg(vec![tagged]), &links, profiles, None).await;
    reconciled(&mut d, 2).await;
    let (free, plain) = (links[0].as_str(), links[1].as_str());
    // The untagged link follows [defaults]: as often as allowed.
    assert!(
        wait_until(Duration::from_secs(5), || attempted(&d.sim, plain)
            .is_some())
        .await,
        "the default profile's link was never refreshed"
    );
    let addr = d.addr;
    assert!(
        wait_until_async(Duration::from_secs(5), || async move {
            view(addr, free).await["profile"] == "free"
        })
        .await,
        "{}",
        view(addr, free).await
    );
    assert_eq!(view(addr, plain).await["profile"], "default");
    assert_eq!(
        attempted(&d.sim, free),
        None,
        "the free profile refreshes only on demand"
    );
    assert_eq!(why(&view(addr, free).await)["kind"], "idle");
    // The fleet page shows the data age per profile: the free profile's
    // one link never requested, the default one's requested.
    let row = |page: &str, profile: &str| {
        let start = page.find(&format!("<tr data-profile=\"{profile}\">"))?;
        let row = &page[start..];
        Some(row[..row.find("</tr>")?].to_owned())
    };
    let mut page = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        page = crate::daemon::http_get(addr, "/").await.1;
        if row(&page, "free").is_some()
            && row(&page, "default")
                .is_some_and(|r| !r.contains("<td class=\"n\">1</td><td class=\"n\">1</td>"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let free_row = row(&page, "free").unwrap_or_else(|| panic!("no free profile row:\n{page}"));
    assert!(
        free_row.contains("<td>accounts</td><td class=\"n\">1</td><td class=\"n\">1</td>"),
        "one link, never requested: {free_row}"
    );
    let default_row = row(&page, "default").unwrap();
    assert!(
        default_row.contains("<td>accounts</td><td class=\"n\">1</td><td class=\"n\">0</td>"),
        "one link, requested: {default_row}"
    );
    d.stop().await.1.unwrap();
}
