//! The daemon in process: every park reaches the app as one verified event,
//! a reconnect as `link.resumed`, and a receiver that was down gets each
//! link's backlog in order. SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use linkfresh::domain::{LinkId, LinkState, ProductSet};
use linkfresh::sim::{SimConfig, SimLink, SimLinkState};
use linkfresh::store::{LinkPatch, Store};

use crate::daemon::{TestDaemon, fast_windows, http_get, wait_until};
use crate::receiver::{PATIENCE, Receiver, Seen, events_toml};
use crate::store_common::TestDb;

fn id(s: &str) -> LinkId {
    LinkId::parse(s).unwrap()
}

/// The database the test runs on: a fresh PostgreSQL database, or `None`
/// for the daemon's SQLite file; `Err` when PostgreSQL is skipped.
async fn backend(pg: bool) -> Result<Option<TestDb>, ()> {
    if pg {
        TestDb::postgres().await.map(Some).ok_or(())
    } else {
        Ok(None)
    }
}

/// Points the daemon's config at `db` when it is PostgreSQL.
fn on(db: &Option<TestDb>) -> impl FnOnce(String) -> String + '_ {
    move |toml| match db {
        None => toml,
        Some(db) => toml
            .lines()
            .map(|l| {
                if l.starts_with("url = \"sqlite://") {
                    format!("url = \"{}\"", db.url)
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The store the daemon writes, opened beside it as the CLI does.
async fn store_of(d: &TestDaemon, db: &Option<TestDb>) -> std::sync::Arc<dyn Store> {
    let url = match db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", d.dir.path().join("lf.db").display()),
    };
    linkfresh::store::connect(&url).await.unwrap()
}

/// Accepted deliveries by (type, link): their distinct ids.
fn ids_by_event(accepted: &[Seen]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in accepted {
        out.entry((s.kind().to_owned(), s.link().to_owned()))
            .or_default()
            .insert(s.id.clone());
    }
    out
}

async fn every_park_and_a_reconnect(pg: bool) {
    let Some(rx) = Receiver::start("ok") else {
        return;
    };
    let Ok(db) = backend(pg).await else { return };
    let mut broken = SimLink::healthy(id("mk_ev_broken")).with_state(SimLinkState::NeedsUserAction);
    broken.link_error_code = Some("auth_expired".into());
    let mut no_identity = SimLink::healthy(id("mk_ev_noid"));
    no_identity.forbidden_products = ProductSet::parse_list("identity").unwrap();
    let links = vec![
        broken,
        SimLink::healthy(id("mk_ev_gone")).with_state(SimLinkState::Deleted),
        SimLink::healthy(id("mk_ev_missing")).with_state(SimLinkState::NotFound),
        no_identity,
        SimLink::healthy(id("mk_ev_ok")),
    ];
    let ids: Vec<String> = links.iter().map(|l| l.id.to_string()).collect();
    let cfg = SimConfig {
        windows: fast_windows(),
        links,
        ..SimConfig::default()
    };
    let products = "\"accounts\", \"identity\"";
    let d = TestDaemon::start_with(cfg, &ids, products, &events_toml(&rx.url), on(&db)).await;
    let expected = [
        ("link.needs_user_action", "mk_ev_broken"),
        ("link.deleted", "mk_ev_gone"),
        ("link.not_found", "mk_ev_missing"),
        ("product.forbidden", "mk_ev_noid"),
    ];
    let arrived = |rx: &Receiver, want: &[(&str, &str)]| {
        let got = ids_by_event(&rx.accepted());
        want.iter()
            .all(|(t, l)| got.contains_key(&((*t).to_owned(), (*l).to_owned())))
    };
    assert!(
        wait_until(PATIENCE, || arrived(&rx, &expected)).await,
        "every park arrives: {:#?}",
        rx.seen()
    );
    // The broken link is re-checked (GET /links/{id}) and still broken: a
    // repeated park is no new event.
    let gets = d.sim.stats().total("get_link");
    assert!(
        wait_until(PATIENCE, || d.sim.stats().total("get_link") > gets).await,
        "the parked link is re-checked"
    );
    // The user reconnects: the next re-check resumes the link.
    let mut fixed = SimLink::healthy(id("mk_ev_broken"));
    fixed.link_error_code = None;
    d.sim.set_link(fixed);
    assert!(
        wait_until(PATIENCE, || arrived(
            &rx,
            &[("link.resumed", "mk_ev_broken")]
        ))
        .await,
        "a reconnect arrives as link.resumed: {:#?}",
        rx.seen()
    );
    let seen = rx.seen();
    assert!(
        seen.iter().all(|s| s.verified),
        "every delivery verifies: {seen:#?}"
    );
    let accepted = rx.accepted();
    for ((kind, link), ids) in ids_by_event(&accepted) {
        assert_eq!(
            ids.len(),
            1,
            "one event per transition, {kind} of {link}: {ids:?}"
        );
        assert_ne!(link, "mk_ev_ok", "a healthy link makes no event");
    }
    let first = |kind: &str| {
        accepted
            .iter()
            .position(|s| s.kind() == kind && s.link() == "mk_ev_broken")
            .unwrap()
    };
    assert!(first("link.needs_user_action") < first("link.resumed"));
    let park = &accepted[first("link.needs_user_action")].body["data"];
    assert_eq!(park["link_error_code"], "auth_expired");
    assert_eq!(park["link"]["state"], "needs_user_action");
    assert_eq!(
        park["link"]["products"],
        serde_json::json!(["accounts", "identity"])
    );
    let forbidden = accepted
        .iter()
        .find(|s| s.kind() == "product.forbidden")
        .unwrap();
    assert_eq!(forbidden.body["data"]["product"], "identity");
    // The recorder is process-wide (other tests add to it): at least.
    let (_, metrics) = http_get(d.addr, "/metrics").await;
    let value = |line: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    for kind in [
        "link.needs_user_action",
        "link.resumed",
        "product.forbidden",
    ] {
        let line = format!("linkfresh_events_total{{type=\"{kind}\",result=\"delivered\"}}");
        assert!(
            value(&line).is_some_and(|v| v >= 1.0),
            "{line} in {metrics}"
        );
    }
    let zero = "linkfresh_events_total{type=\"budget.exhausted\",result=\"failed\"}";
    assert_eq!(value(zero), Some(0.0), "exported at 0: {metrics}");
    assert!(value("linkfresh_events_pending").is_some());
    assert!(value("linkfresh_events_oldest_pending_seconds").is_some());
    let (_, result) = d.stop().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_park_reaches_the_app_once_verified_and_a_reconnect_as_link_resumed_sqlite() {
    every_park_and_a_reconnect(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_park_reaches_the_app_once_verified_and_a_reconnect_as_link_resumed_postgres() {
    every_park_and_a_reconnect(true).await;
}

async fn backlog_in_order(pg: bool) {
    let Some(rx) = Receiver::start("fail") else {
        return;
    };
    let Ok(db) = backend(pg).await else { return };
    let links: Vec<SimLink> = (0..4)
        .map(|i| SimLink::healthy(id(&format!("mk_ev_backlog_{i}"))))
        .collect();
    let ids: Vec<String> = links.iter().map(|l| l.id.to_string()).collect();
    let cfg = SimConfig {
        windows: fast_windows(),
        links,
        ..SimConfig::default()
    };
    let d = TestDaemon::start_with(cfg, &ids, "\"accounts\"", &events_toml(&rx.url), on(&db)).await;
    let store = store_of(&d, &db).await;
    let order = ["link.needs_user_action", "link.resumed", "link.deleted"];
    // Three transitions per link, as a webhook and an operator make them.
    for l in &ids {
        let now = chrono::Utc::now();
        let park = |s: LinkState, why: &str| LinkPatch {
            state: Some((s, Some(why.to_owned()))),
            ..LinkPatch::default()
        };
        let link = id(l);
        let needs = park(LinkState::NeedsUserAction, "needs_user_action: item_locked");
        assert!(store.apply_patch(&link, &needs, now).await.unwrap());
        assert!(store.set_paused(&link, false, now).await.unwrap());
        let gone = park(LinkState::Deleted, "deleted: webhook");
        assert!(store.apply_patch(&link, &gone, now).await.unwrap());
    }
    // Down for a while: several tries fail.
    assert!(
        wait_until(PATIENCE, || rx.seen().len() >= 8).await,
        "tries while down"
    );
    assert!(rx.accepted().is_empty());
    rx.set_mode("ok");
    assert!(
        wait_until(PATIENCE, || ids_by_event(&rx.accepted()).len() == 12).await,
        "the backlog drains: {:#?}",
        rx.seen()
    );
    let seen = rx.seen();
    assert!(seen.iter().all(|s| s.verified));
    for l in &ids {
        // Each link's events were accepted in order, and an event was
        // first tried only after the one before it was accepted.
        let mine: Vec<&Seen> = seen.iter().filter(|s| s.link() == l).collect();
        let accepted: Vec<&str> = mine
            .iter()
            .filter(|s| s.status == 204)
            .map(|s| s.kind())
            .collect();
        assert_eq!(accepted, order, "{l}: {mine:#?}");
        for k in 1..order.len() {
            let first_try = mine.iter().position(|s| s.kind() == order[k]).unwrap();
            let before_ok = mine
                .iter()
                .position(|s| s.kind() == order[k - 1] && s.status == 204)
                .unwrap();
            assert!(
                before_ok < first_try,
                "{l}: {} tried before {} was delivered",
                order[k],
                order[k - 1]
            );
        }
    }
    let (_, result) = d.stop().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_each_links_backlog_in_order_sqlite() {
    backlog_in_order(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_each_links_backlog_in_order_postgres() {
    backlog_in_order(true).await;
}

/// Two replicas' delivery tasks on one PostgreSQL database: each event is
/// delivered by one of them, exactly once when the receiver answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once_between_them() {
    let Some(rx) = Receiver::start("ok") else {
        return;
    };
    let Ok(Some(db)) = backend(true).await else {
        return;
    };
    let store = db.open().await;
    let links: Vec<String> = (0..30).map(|i| format!("mk_ev_rep_{i:02}")).collect();
    let specs: Vec<_> = links
        .iter()
        .map(|l| crate::store_common::spec(l, "accounts"))
        .collect();
    let now = chrono::Utc::now();
    store.sync_config("r1", &specs, now).await.unwrap();
    store.set_event_endpoint(Some(&rx.url)).await.unwrap();
    let cfg = linkfresh::config::EventsConfig {
        url: rx.url.clone(),
        secret: linkfresh::secret::Secret::new(crate::receiver::SECRET),
        stale_after: Vec::new(),
        retry_for: std::time::Duration::from_secs(60),
        backoff_base: std::time::Duration::from_millis(100),
        backoff_max: std::time::Duration::from_millis(400),
        timeout: std::time::Duration::from_secs(2),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(linkfresh::events::deliver::run(
                store,
                cfg.clone(),
                cancel.clone(),
            ))
        })
        .collect();
    for l in &links {
        let park = LinkPatch {
            state: Some((LinkState::Deleted, Some("deleted: webhook".into()))),
            ..LinkPatch::default()
        };
        assert!(store.apply_patch(&id(l), &park, now).await.unwrap());
    }
    assert!(
        wait_until(PATIENCE, || ids_by_event(&rx.accepted()).len()
            == links.len())
        .await,
        "all delivered: {}",
        rx.seen().len()
    );
    cancel.cancel();
    for r in replicas {
        r.await.unwrap();
    }
    let seen = rx.seen();
    let distinct: BTreeSet<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(seen.len(), links.len(), "no event sent twice: {seen:#?}");
    assert_eq!(distinct.len(), links.len());
}

async fn one_budget_exhausted_per_episode(pg: bool) {
    let Some(rx) = Receiver::start("ok") else {
        return;
    };
    let Ok(db) = backend(pg).await else { return };
    let links: Vec<SimLink> = (0..4)
        .map(|i| SimLink::healthy(id(&format!("mk_ev_budget_{i}"))))
        .collect();
    let ids: Vec<String> = links.iter().map(|l| l.id.to_string()).collect();
    let cfg = SimConfig {
        windows: fast_windows(),
        links,
        ..SimConfig::default()
    };
    // One POST a minute: the first link is sent, the cap is full and the
    // others wait for the rest of the test, one exhaustion episode.
    let toml = format!(
        "{}[budget]\nposts_per_day = 1\nwindow = \"60s\"\n",
        events_toml(&rx.url)
    );
    let d = TestDaemon::start_with(cfg, &ids, "\"accounts\"", &toml, on(&db)).await;
    let budget = |rx: &Receiver| {
        rx.accepted()
            .into_iter()
            .filter(|s| s.kind() == "budget.exhausted")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(PATIENCE, || !budget(&rx).is_empty()).await,
        "budget.exhausted arrives: {:#?}",
        rx.seen()
    );
    // Rounds go on while the links wait: still one event.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let seen = budget(&rx);
    assert_eq!(seen.len(), 1, "one event per episode: {seen:#?}");
    let data = &seen[0].body["data"];
    assert_eq!(data["used"], 1);
    assert_eq!(data["limit"], 1);
    assert_eq!(data["window_seconds"], 60);
    assert!(data["waiting"].as_u64().is_some_and(|w| w >= 1), "{data}");
    assert!(data["reason"].is_string());
    assert!(seen[0].verified);
    let (_, result) = d.stop().await;
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_exhaustion_episode_reaches_the_app_once_sqlite() {
    one_budget_exhausted_per_episode(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_exhaustion_episode_reaches_the_app_once_postgres() {
    one_budget_exhausted_per_episode(true).await;
}
