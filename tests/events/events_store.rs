//! The outbox in the store, on SQLite and PostgreSQL: events are born with
//! the transitions that cause them (and only then), claims hand each
//! link's head to one replica at a time, stale episodes open and close
//! once, failed events can be replayed.

use std::time::Duration;

use linkfresh::domain::{LinkState, Product};
use linkfresh::store::outbox::Settle;
use linkfresh::store::{LinkPatch, OwnPatch, ProductPatch, Store};

use crate::store_common::{TestDb, id, spec, t};

async fn fresh(db: &TestDb, links: &[&str]) -> std::sync::Arc<dyn Store> {
    let store = db.open().await;
    let specs: Vec<_> = links
        .iter()
        .map(|l| spec(l, "accounts,transactions"))
        .collect();
    store.sync_config("r1", &specs, t(0)).await.unwrap();
    store
        .set_event_endpoint(Some("http://127.0.0.1:9/hooks"))
        .await
        .unwrap();
    store
}

fn state(s: LinkState, why: &str) -> LinkPatch {
    LinkPatch {
        state: Some((s, Some(why.to_owned()))),
        ..LinkPatch::default()
    }
}

async fn kinds(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    for e in store.list_events(false, 100).await.unwrap() {
        out.push(format!("{} {}", e.kind, e.link));
    }
    out
}

async fn transitions_only(db: &TestDb) {
    let store = fresh(db, &["mk_a", "mk_b"]).await;
    let needs = state(
        LinkState::NeedsUserAction,
        "needs_user_action: auth_expired",
    );
    assert!(store.apply_patch(&id("mk_a"), &needs, t(1)).await.unwrap());
    // A repeated 422 is not a new episode.
    assert!(store.apply_patch(&id("mk_a"), &needs, t(2)).await.unwrap());
    // The daemon's own patch (a re-check) in a round of the writer.
    let own = OwnPatch {
        link: id("mk_b"),
        patch: state(LinkState::NotFound, "not_found: gone"),
        at: t(3),
    };
    store
        .record_batch(&[], std::slice::from_ref(&own), &[])
        .await
        .unwrap();
    store.record_batch(&[], &[own], &[]).await.unwrap();
    let forbid = LinkPatch {
        products: vec![(
            Product::parse("transactions").unwrap(),
            ProductPatch {
                parked_reason: Some(Some("forbidden: no".into())),
                ..ProductPatch::default()
            },
        )],
        ..LinkPatch::default()
    };
    assert!(store.apply_patch(&id("mk_a"), &forbid, t(4)).await.unwrap());
    assert!(store.apply_patch(&id("mk_a"), &forbid, t(5)).await.unwrap());
    // An operator's resume of the parked link.
    assert!(store.set_paused(&id("mk_a"), false, t(6)).await.unwrap());
    assert!(store.set_paused(&id("mk_a"), false, t(7)).await.unwrap());
    assert_eq!(
        kinds(&*store).await,
        [
            "link.needs_user_action mk_a",
            "link.not_found mk_b",
            "product.forbidden mk_a",
            "link.resumed mk_a"
        ]
    );
    let first = &store.list_events(false, 1).await.unwrap()[0];
    let body: serde_json::Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(body["data"]["link_error_code"], "auth_expired");
    let at = t(1).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(body["timestamp"], at.as_str());
    // Without [events], changes write no events.
    store.set_event_endpoint(None).await.unwrap();
    let gone = state(LinkState::Deleted, "deleted: webhook");
    assert!(store.apply_patch(&id("mk_b"), &gone, t(8)).await.unwrap());
    assert_eq!(kinds(&*store).await.len(), 4);
}

async fn claims(db: &TestDb) {
    let store = fresh(db, &["mk_a", "mk_b"]).await;
    for l in ["mk_a", "mk_b"] {
        let needs = state(LinkState::NeedsUserAction, "needs_user_action: x");
        assert!(store.apply_patch(&id(l), &needs, t(1)).await.unwrap());
        assert!(store.set_paused(&id(l), false, t(2)).await.unwrap());
    }
    let lease = Duration::from_secs(30);
    let a = store.claim_events("A", t(10), lease, 10).await.unwrap();
    let heads: Vec<(&str, &str)> = a
        .iter()
        .map(|e| (e.link.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        heads,
        [
            ("mk_a", "link.needs_user_action"),
            ("mk_b", "link.needs_user_action")
        ],
        "only each link's oldest"
    );
    assert!(
        store
            .claim_events("B", t(11), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased to A"
    );
    assert!(
        !store
            .settle_event(a[0].seq, "B", &Settle::Delivered, t(12))
            .await
            .unwrap()
    );
    assert!(
        store
            .settle_event(a[0].seq, "A", &Settle::Delivered, t(12))
            .await
            .unwrap()
    );
    let b = store.claim_events("B", t(13), lease, 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].link.as_str(), b[0].kind.as_str()),
        ("mk_a", "link.resumed")
    );
    assert!(
        store
            .settle_event(b[0].seq, "B", &Settle::Delivered, t(14))
            .await
            .unwrap()
    );
    // A dies holding mk_b's head: after the lease, B takes it over.
    let later = store.claim_events("B", t(45), lease, 10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].id, a[1].id, "the same id on every try");
    let (pending, oldest) = store.pending_events().await.unwrap();
    assert_eq!((pending, oldest), (2, Some(t(1))));
    // Given up: listed as failed, replayed with its id.
    assert!(
        store
            .settle_event(later[0].seq, "B", &Settle::Failed("HTTP 500".into()), t(46))
            .await
            .unwrap()
    );
    let failed = store.list_events(true, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(store.replay_event(&failed[0].id, t(47)).await.unwrap());
    let replayed = store.claim_events("B", t(48), lease, 10).await.unwrap();
    assert_eq!(replayed[0].id, failed[0].id);
    assert_eq!(
        replayed[0].retry_since,
        t(47),
        "a replay gets a whole retry_for"
    );
    assert_eq!(replayed[0].created_at, t(1));
    let back = Settle::Release;
    assert!(
        store
            .settle_event(replayed[0].seq, "B", &back, t(48))
            .await
            .unwrap()
    );
    assert!(
        !store.replay_event(&failed[0].id, t(47)).await.unwrap(),
        "no longer failed"
    );
    assert!(store.list_events(true, 10).await.unwrap().is_empty());
}

async fn stale_episodes(db: &TestDb) {
    let store = fresh(db, &["mk_a"]).await;
    let tx = Product::parse("transactions").unwrap();
    let after = [(tx, Duration::from_secs(3600))];
    assert_eq!(
        store.sweep_stale(&after, t(1800)).await.unwrap(),
        0,
        "young"
    );
    assert_eq!(
        store.sweep_stale(&after, t(7200)).await.unwrap(),
        1,
        "stale"
    );
    assert_eq!(
        store.sweep_stale(&after, t(9000)).await.unwrap(),
        0,
        "once per episode"
    );
    let refreshed = LinkPatch {
        products: vec![(
            tx,
            ProductPatch {
                server_refreshed_at: Some(t(9500)),
                ..ProductPatch::default()
            },
        )],
        ..LinkPatch::default()
    };
    assert!(
        store
            .apply_patch(&id("mk_a"), &refreshed, t(9500))
            .await
            .unwrap()
    );
    assert_eq!(
        store.sweep_stale(&after, t(9600)).await.unwrap(),
        1,
        "fresh"
    );
    assert_eq!(store.sweep_stale(&after, t(9700)).await.unwrap(), 0);
    assert_eq!(
        store.sweep_stale(&after, t(9500 + 3601)).await.unwrap(),
        1,
        "a new episode"
    );
    let events = store.list_events(false, 10).await.unwrap();
    let k: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(k, ["data.stale", "data.fresh", "data.stale"]);
    let body: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(body["data"]["product"], "transactions");
}

macro_rules! both {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = crate::store_common::TestDb::sqlite().await {
                        super::$body(&db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = crate::store_common::TestDb::postgres().await {
                        super::$body(&db).await;
                    }
                }
            )*
        }
    };
}

both!(
    a_transition_writes_one_event_with_its_change_and_a_repeat_none => transitions_only,
    claims_hand_each_links_oldest_event_to_one_replica_at_a_time => claims,
    stale_data_opens_one_episode_and_a_refresh_closes_it => stale_episodes,
);
