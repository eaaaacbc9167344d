//! The budget's count: POSTs per time bucket, every process's, or all but
//! one replica's.

use super::*;

pub async fn the_budget_counts_posts_per_bucket_and_can_leave_out_one_replica(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[spec("mk_a", "accounts"), spec("mk_b", "accounts")],
            t(0),
        )
        .await
        .unwrap();
    for at in [100, 101, 130] {
        intent(&store, "mk_a", "accounts", t(at)).await;
    }
    claim(&store, "mk_b", "accounts", t(105), None, "replica-1")
        .await
        .expect("a first claim is taken");
    claim(
        &store,
        "mk_b",
        "accounts",
        t(140),
        Some(t(105)),
        "replica-2",
    )
    .await
    .expect("a claim after the lease is taken");
    let ten = chrono::TimeDelta::seconds(10);
    // Buckets of 10 s, stamped with their latest intent, oldest first.
    assert_eq!(
        store.posts_since(t(99), ten, None).await.unwrap(),
        vec![(t(105), 3), (t(130), 1), (t(140), 1)]
    );
    // `since` itself is out.
    assert_eq!(
        store.posts_since(t(100), ten, None).await.unwrap(),
        vec![(t(105), 2), (t(130), 1), (t(140), 1)]
    );
    // A replica counts the others' intents (and unclaimed ones) here.
    assert_eq!(
        store
            .posts_since(t(99), ten, Some("replica-1"))
            .await
            .unwrap(),
        vec![(t(101), 2), (t(130), 1), (t(140), 1)]
    );
    assert_eq!(
        store
            .posts_since(t(99), ten, Some("replica-2"))
            .await
            .unwrap(),
        vec![(t(105), 3), (t(130), 1)]
    );
    assert!(
        store
            .posts_since(t(140), ten, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `budget.exhausted`: nothing without `[events]`; with it, one row per
/// episode (a second call in the same budget bucket, as another replica
/// would make, writes nothing), a new one for a later episode, and the
/// fleet-wide rows hold no link's id.
pub async fn a_budget_exhaustion_episode_writes_one_event_and_none_without_events(db: &TestDb) {
    use linkfresh::store::outbox::FLEET_LINK_ID;

    let store = db.open().await;
    let day = std::time::Duration::from_secs(86_400);
    // A day's bucket is a minute: t(20) .. t(79) is one bucket.
    assert!(
        !store
            .record_budget_exhausted(t(60), 10, 10, day, 3)
            .await
            .unwrap(),
        "nothing is written without [events]"
    );
    assert!(store.list_events(false, 10).await.unwrap().is_empty());

    store
        .set_event_endpoint(Some("http://127.0.0.1:9/hooks"))
        .await
        .unwrap();
    assert!(
        store
            .record_budget_exhausted(t(60), 10, 10, day, 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_budget_exhausted(t(61), 10, 10, day, 5)
            .await
            .unwrap(),
        "a second replica's call for the same episode writes nothing"
    );
    let events = store.list_events(false, 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.kind, "budget.exhausted");
    assert_eq!(e.link, FLEET_LINK_ID);
    assert!(LinkId::parse(&e.link).is_err(), "no link can have that id");
    assert_eq!(e.created_at, t(60));
    let body: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(body["type"], "budget.exhausted");
    assert_eq!(body["data"]["used"], 10);
    assert_eq!(body["data"]["limit"], 10);
    assert_eq!(body["data"]["window_seconds"], 86_400);
    assert_eq!(body["data"]["waiting"], 3);

    assert!(
        store
            .record_budget_exhausted(t(300), 10, 10, day, 1)
            .await
            .unwrap(),
        "a later episode is a new event"
    );
    assert_eq!(store.list_events(false, 10).await.unwrap().len(), 2);
    // An episode starting at the end of a bucket (t(0) is 40 s past a
    // minute, so t(380) starts one),
    // seen by another replica a moment later in the next bucket: one event.
    assert!(
        store
            .record_budget_exhausted(t(379), 10, 10, day, 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_budget_exhausted(t(381), 10, 10, day, 1)
            .await
            .unwrap(),
        "a replica that saw the episode in the next bucket writes nothing"
    );
    assert_eq!(store.list_events(false, 10).await.unwrap().len(), 3);
}
