//! Issue 14, item 14, over plain HTTP (so it is pinned where Chromium is
//! missing): the fleet page's cards agree with its own table and say when
//! they were computed, "as of HH:MM:SS", at most a few seconds before the
//! page. Windows of 30 minutes make the fleet quiet after one round, so the
//! agreement is exact.

use crate::fleet_page;

use chrono::TimeDelta;
use fleet_page::{page_after, quiet_fleet};

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
