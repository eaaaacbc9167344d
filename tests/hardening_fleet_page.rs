//! Issue 14, item 14, over plain HTTP (so it is pinned where Chromium is
//! missing): the fleet page's cards agree with its own table and say when
//! they were computed, "as of HH:MM:SS", at most a few seconds before the
//! page. Windows of 30 minutes make the fleet quiet after one round, so the
//! agreement is exact.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fleet_page.rs"]
mod fleet_page;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use daemon::{TestDaemon, http_get, link_ids};
use fleet_page::FleetPage;
use linkfresh::domain::LinkId;
use linkfresh::sim::{SimConfig, SimLink, SimLinkState, Windows};

/// Starts four healthy links and one MoneyKit has deleted, on 30-minute
/// windows, and waits until each has had its one answer.
pub async fn quiet_fleet() -> (TestDaemon, chrono::DateTime<Utc>) {
    let mut links = link_ids("mk_agree", 4);
    links.push("mk_agree_gone".into());
    let mut d = TestDaemon::start(
        SimConfig {
            windows: Windows::uniform(Duration::from_secs(1800)),
            links: vec![
                SimLink::healthy(LinkId::parse("mk_agree_gone").unwrap())
                    .with_state(SimLinkState::Deleted),
            ],
            ..SimConfig::default()
        },
        &links,
        "\"accounts\", \"transactions\"",
        "",
    )
    .await;
    let mut answered = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while answered.len() < links.len() {
        assert!(Instant::now() < deadline, "answered only {answered:?}");
        if let Ok(Some(a)) =
            tokio::time::timeout(Duration::from_millis(200), d.activity.recv()).await
        {
            answered.insert(a.link.to_string());
        }
    }
    (d, Utc::now())
}

/// GETs `/` until its figures are from after `quiet` (a second later, so
/// the last outcome is surely committed), within a deadline.
pub async fn page_after(addr: std::net::SocketAddr, quiet: chrono::DateTime<Utc>) -> FleetPage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(addr, "/").await;
        assert_eq!(status, 200, "{body}");
        let page = FleetPage::parse(&body);
        if page.as_of.unwrap_or(page.rendered_at) > quiet + TimeDelta::seconds(1) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the figures never got past {quiet}: {page:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_pages_cards_agree_with_its_table_and_say_as_of_when() {
    let (d, quiet) = quiet_fleet().await;
    let page = page_after(d.addr, quiet).await;
    page.assert_cards_agree_with_table();
    // The deleted link is parked on its first answer, before any POST.
    assert_eq!(page.posts_last_hour, 4, "{page:#?}");
    assert_eq!(page.cards["deleted"], 1, "{page:#?}");
    assert_eq!(page.cards["active"], 4, "{page:#?}");
    assert_eq!(page.never.values().sum::<u64>(), 2, "{page:#?}");
    assert_eq!(page.due_next_hour, 4, "{page:#?}");
    let as_of = page
        .as_of
        .expect("the page says as of when its figures are");
    assert!(
        page.rendered_at - as_of <= TimeDelta::seconds(5),
        "figures as of {as_of} on a page of {}",
        page.rendered_at
    );
    d.stop().await.1.unwrap();
}
