//! The fleet queries behave alike on SQLite and PostgreSQL: counts by
//! state, attempt classes, the due histogram, data age and keyset search.

use crate::store_common::TestDb;
use chrono::{TimeDelta, TimeZone, Utc};
use linkfresh::domain::{LinkId, LinkState, Product, ProductSet};
use linkfresh::store::fleet::LinkSearch;
use linkfresh::store::{Intent, LinkPatch, LinkSource, LinkSpec, Outcome};

async fn fleet_queries_answer_from_the_stored_state(db: TestDb) {
    let store = db.open().await;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let both = ProductSet::parse_list("accounts,transactions").unwrap();
    let specs: Vec<LinkSpec> = (0..10)
        .map(|i| LinkSpec {
            id: LinkId::parse(&format!("mk_q{i:02}")).unwrap(),
            products: both,
            cadence: None,
            source: LinkSource::Config,
        })
        .collect();
    store.sync_config("r1", &specs, t0).await.unwrap();
    store.set_paused(&specs[1].id, true, t0).await.unwrap();
    store.remove_link(&specs[2].id, t0).await.unwrap();

    let c = store.fleet_counts().await.unwrap();
    assert_eq!(
        (
            c.by_state["active"],
            c.by_state["paused"],
            c.removed,
            c.total()
        ),
        (8, 1, 1, 9)
    );

    // Four POSTs: accepted, 429, server error, no answer yet.
    let intents: Vec<Intent> = (0..4)
        .map(|i| Intent {
            link: specs[i + 3].id.clone(),
            products: both,
            at: t0 + TimeDelta::minutes(i as i64 * 10),
            claim: None,
        })
        .collect();
    let ids = store.record_intents(&intents).await.unwrap();
    let outcomes: Vec<Outcome> = ["accepted", "rate_limited", "server_error"]
        .iter()
        .enumerate()
        .map(|(i, label)| Outcome {
            attempt: ids[i].unwrap(),
            link: intents[i].link.clone(),
            label: (*label).into(),
            status: None,
            detail: None,
            at: intents[i].at,
            patch: LinkPatch::default(),
        })
        .collect();
    store.record_outcomes(&outcomes).await.unwrap();
    let a = store.attempt_counts_since(t0).await.unwrap();
    assert_eq!((a.sent, a.rate_limited, a.errors, a.pending), (4, 1, 1, 1));
    let a = store
        .attempt_counts_since(t0 + TimeDelta::minutes(15))
        .await
        .unwrap();
    assert_eq!(a.sent, 2);

    // Due times: two links in minute 0 (both products each), one in minute 5.
    let now = t0 + TimeDelta::hours(1);
    let mut dues = Vec::new();
    for (i, off) in [(3, 10), (4, 50), (5, 310)] {
        for p in both.iter() {
            dues.push((specs[i].id.clone(), p, Some(now + TimeDelta::seconds(off))));
        }
    }
    store.set_next_due(&dues).await.unwrap();
    let h = store
        .due_histogram(now, now + TimeDelta::minutes(10), TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(h, vec![2, 0, 0, 0, 0, 1, 0, 0, 0, 0]);

    let ages = store.data_age(now).await.unwrap();
    let acc = ages
        .iter()
        .find(|a| a.product == Product::Accounts)
        .unwrap();
    assert_eq!((acc.rows, acc.never), (10, 6));
    assert_eq!(acc.max, Some(TimeDelta::hours(1)));
    assert!(acc.p50.unwrap() <= TimeDelta::minutes(50));

    let page = |text: &str, state, after: Option<&str>, limit| LinkSearch {
        text: text.into(),
        state,
        removed: false,
        after: after.map(str::to_owned),
        limit,
    };
    let r = store
        .search_links(&page("q0", None, None, 3))
        .await
        .unwrap();
    let ids: Vec<&str> = r.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["mk_q00", "mk_q01", "mk_q03"]);
    let r = store
        .search_links(&page("", None, Some("mk_q03"), 100))
        .await
        .unwrap();
    assert_eq!(r.len(), 6);
    let r = store
        .search_links(&page("", Some(LinkState::Paused), None, 100))
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["mk_q01"]
    );
    let r = store
        .search_links(&page("q_", None, None, 100))
        .await
        .unwrap();
    assert!(r.is_empty(), "LIKE wildcards must be escaped");
    let mut removed = page("", None, None, 100);
    removed.removed = true;
    assert_eq!(store.search_links(&removed).await.unwrap().len(), 1);
    assert_eq!(store.link_summaries().await.unwrap().len(), 10);
}

#[tokio::test]
async fn fleet_queries_on_sqlite() {
    fleet_queries_answer_from_the_stored_state(TestDb::sqlite().await.unwrap()).await;
}

#[tokio::test]
async fn fleet_queries_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    fleet_queries_answer_from_the_stored_state(db).await;
}

/// Issue 14: a link whose due time has come (the daemon is sending it, or
/// has and its next due time is not flushed yet) is due now, not gone from
/// the chart; a removed link's due time no longer counts.
async fn a_link_already_due_counts_in_the_first_minute_until_it_is_removed(db: TestDb) {
    let store = db.open().await;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let both = ProductSet::parse_list("accounts,transactions").unwrap();
    let specs: Vec<LinkSpec> = (0..3)
        .map(|i| LinkSpec {
            id: LinkId::parse(&format!("mk_d{i:02}")).unwrap(),
            products: both,
            cadence: None,
            source: LinkSource::Config,
        })
        .collect();
    store.sync_config("r1", &specs, t0).await.unwrap();
    let now = t0 + TimeDelta::hours(1);
    let mut dues = Vec::new();
    for (i, off) in [(0, -2), (1, -3600), (2, 90)] {
        for p in both.iter() {
            dues.push((specs[i].id.clone(), p, Some(now + TimeDelta::seconds(off))));
        }
    }
    store.set_next_due(&dues).await.unwrap();
    let histogram = || store.due_histogram(now, now + TimeDelta::minutes(3), TimeDelta::minutes(1));
    assert_eq!(histogram().await.unwrap(), vec![2, 1, 0]);

    store.remove_link(&specs[1].id, now).await.unwrap();
    assert_eq!(histogram().await.unwrap(), vec![1, 1, 0]);
    store.sync_config("r2", &specs[1..], now).await.unwrap();
    assert_eq!(histogram().await.unwrap(), vec![0, 1, 0]);
}

#[tokio::test]
async fn a_link_already_due_counts_in_the_first_minute_until_it_is_removed_on_sqlite() {
    a_link_already_due_counts_in_the_first_minute_until_it_is_removed(
        TestDb::sqlite().await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn a_link_already_due_counts_in_the_first_minute_until_it_is_removed_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_link_already_due_counts_in_the_first_minute_until_it_is_removed(db).await;
}
