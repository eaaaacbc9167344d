//! Discovery against the simulator's paged `GET /links` (500 per page):
//! a few thousand links are stored as discovered, links that appear between
//! passes are added, links that vanish are parked only after
//! `GET /links/{id}` confirms it, and config-managed links are left alone.

use crate::daemon;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use daemon::TestDaemon;
use linkfresh::domain::{LinkId, LinkState};
use linkfresh::sim::{SimConfig, SimLink, SimLinkState};
use linkfresh::store::fleet::LinkSummary;
use linkfresh::store::{self, LinkSource, Store};

fn sim_links(n: usize, tagged_every: usize) -> Vec<SimLink> {
    (0..n)
        .map(|i| {
            let mut l = SimLink::healthy(LinkId::parse(&format!("mk_disc_{i:05}")).unwrap());
            if tagged_every > 0 && i % tagged_every == 0 {
                l.tags = vec!["keep".into()];
            }
            l
        })
        .collect()
}

async fn open(d: &TestDaemon) -> std::sync::Arc<dyn Store> {
    store::connect(&format!(
        "sqlite://{}",
        d.dir.path().join("lf.db").display()
    ))
    .await
    .unwrap()
}

async fn summaries(store: &dyn Store) -> HashMap<String, LinkSummary> {
    store
        .link_summaries()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id.as_str().to_owned(), s))
        .collect()
}

/// Polls the store until `check` holds (or `limit` passes); the last view.
async fn wait_for(
    store: &dyn Store,
    limit: Duration,
    check: impl Fn(&HashMap<String, LinkSummary>) -> bool,
) -> HashMap<String, LinkSummary> {
    let deadline = Instant::now() + limit;
    loop {
        let now = summaries(store).await;
        if check(&now) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn discovered(m: &HashMap<String, LinkSummary>) -> usize {
    m.values()
        .filter(|s| s.source == LinkSource::Discovery && !s.removed)
        .count()
}

const DISCOVERY: &str = "[discovery]\nenabled = true\nevery = \"1s\"\nproducts = [\"accounts\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_keeps_every_listed_link_and_parks_the_ones_that_vanish() {
    const N: usize = 2500;
    let cfg = SimConfig {
        links: sim_links(N, 0),
        ..SimConfig::default()
    };
    // One link is configured explicitly: discovery must leave it alone.
    let d = TestDaemon::start(
        cfg,
        &["mk_disc_00007".to_owned()],
        "\"accounts\", \"transactions\"",
        DISCOVERY,
    )
    .await;
    let store = open(&d).await;
    let m = wait_for(&*store, Duration::from_secs(40), |m| discovered(m) == N - 1).await;
    assert_eq!(
        discovered(&m),
        N - 1,
        "not every listed link was discovered"
    );
    let configured = &m["mk_disc_00007"];
    assert_eq!(configured.source, LinkSource::Config);
    assert_eq!(configured.products.len(), 2);
    assert!(
        m.values()
            .filter(|s| s.source == LinkSource::Discovery)
            .all(|s| s.products.to_list() == "accounts")
    );
    let lists: u64 = d
        .sim
        .stats()
        .requests
        .get("list_links")
        .map(|by| by.values().sum())
        .unwrap_or(0);
    assert!(lists >= 5, "{:?}", d.sim.stats().requests);

    // Between passes: three links appear, two vanish (404 and 410).
    for i in 0..3 {
        d.sim.set_link(SimLink::healthy(
            LinkId::parse(&format!("mk_new_{i}")).unwrap(),
        ));
    }
    d.sim.set_link_fault(
        &LinkId::parse("mk_disc_00100").unwrap(),
        SimLinkState::NotFound,
    );
    d.sim.set_link_fault(
        &LinkId::parse("mk_disc_02000").unwrap(),
        SimLinkState::Deleted,
    );
    let m = wait_for(&*store, Duration::from_secs(20), |m| {
        (0..3).all(|i| m.contains_key(&format!("mk_new_{i}")))
            && m["mk_disc_00100"].state == LinkState::NotFound
            && m["mk_disc_02000"].state == LinkState::Deleted
    })
    .await;
    for i in 0..3 {
        let s = &m[&format!("mk_new_{i}")];
        assert_eq!(
            (s.source, s.state),
            (LinkSource::Discovery, LinkState::Active)
        );
    }
    assert_eq!(
        m["mk_disc_00100"].state,
        LinkState::NotFound,
        "{:?}",
        m["mk_disc_00100"]
    );
    // Parked by discovery's confirming GET, or by the daemon's own refresh
    // if that reached the link first: either way with a not_found reason.
    let reason = m["mk_disc_00100"].reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("GET /links") || reason.starts_with("not_found"),
        "{reason}"
    );
    assert_eq!(
        m["mk_disc_02000"].state,
        LinkState::Deleted,
        "{:?}",
        m["mk_disc_02000"]
    );
    // Everything else is untouched.
    let active = m.values().filter(|s| s.state == LinkState::Active).count();
    assert_eq!(active, N + 3 - 2);

    // A parked link that comes back in the listing is kept fresh again.
    d.sim.set_link_fault(
        &LinkId::parse("mk_disc_00100").unwrap(),
        SimLinkState::Healthy,
    );
    let m = wait_for(&*store, Duration::from_secs(10), |m| {
        m["mk_disc_00100"].state == LinkState::Active
    })
    .await;
    assert_eq!(m["mk_disc_00100"].state, LinkState::Active);
    let (sim, result) = d.stop().await;
    result.unwrap();
    assert_eq!(sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tags_filter_keeps_only_the_tagged_links() {
    let cfg = SimConfig {
        links: sim_links(600, 3),
        ..SimConfig::default()
    };
    let extra = format!("{DISCOVERY}tags = [\"keep\"]\n");
    let d = TestDaemon::start(cfg, &[], "\"accounts\"", &extra).await;
    let store = open(&d).await;
    let m = wait_for(&*store, Duration::from_secs(30), |m| discovered(m) == 200).await;
    assert_eq!(discovered(&m), 200);
    assert!(
        m.keys()
            .all(|id| id[8..].parse::<usize>().unwrap() % 3 == 0),
        "an untagged link was kept"
    );
    d.stop().await.1.unwrap();
}
