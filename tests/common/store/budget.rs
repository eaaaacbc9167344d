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

/// `[budget]` across replicas: a capped batch commits intents only while
/// the store holds fewer than the cap after `since`, counting every
/// process's, and leaves those past the cap unclaimed (their links stay
/// free for the next batch). Two handles racing their batches (two
/// replicas) never commit more than the cap between them: each replica's
/// budget gate only learns the others' spending about once a second.
pub async fn a_capped_batch_never_commits_past_the_cap_even_when_replicas_race(db: &TestDb) {
    use linkfresh::store::PostCap;

    let store = db.open().await;
    let names: Vec<String> = (0..48).map(|i| format!("mk_cap{i:02}")).collect();
    let specs: Vec<_> = names.iter().map(|n| spec(n, "accounts")).collect();
    store.sync_config("r1", &specs, t(0)).await.unwrap();
    intent(&store, &names[0], "accounts", t(100)).await;

    // Three of four fit beside the one already spent; the fourth is refused
    // unclaimed, so a later uncapped claim of it is taken.
    let cap = PostCap {
        since: t(50),
        limit: 4,
    };
    let batch: Vec<_> = names[1..5]
        .iter()
        .map(|n| claimed(n, "accounts", t(110), None, "replica-1"))
        .collect();
    let ids = store
        .record_batch_capped(&[], &[], &batch, Some(cap))
        .await
        .unwrap();
    let admitted: Vec<bool> = ids.iter().map(Option::is_some).collect();
    assert_eq!(admitted, [true, true, true, false], "{ids:?}");
    let full = store
        .record_batch_capped(
            &[],
            &[],
            &[claimed(&names[5], "accounts", t(111), None, "replica-1")],
            Some(cap),
        )
        .await
        .unwrap();
    assert_eq!(full, [None], "the cap is spent");
    assert!(
        claim(&store, &names[4], "accounts", t(112), None, "replica-2")
            .await
            .is_some(),
        "an intent past the cap took no lease"
    );
    // Only intents after `since` count: from t(105), 4 are spent (110 x3, 112).
    let later = PostCap {
        since: t(105),
        limit: 5,
    };
    let ids = store
        .record_batch_capped(
            &[],
            &[],
            &[claimed(&names[5], "accounts", t(113), None, "replica-1")],
            Some(later),
        )
        .await
        .unwrap();
    assert!(ids[0].is_some(), "the one left under the cap is admitted");

    // Six replicas, each with its own connections, race batches of 4
    // distinct links at once against a cap with room for 10.
    let mut replicas = Vec::new();
    for _ in 0..6 {
        let s = db.open().await;
        // Connected before the race, so that none starts late.
        s.record_batch_capped(&[], &[], &[], None).await.unwrap();
        replicas.push(s);
    }
    let race = PostCap {
        since: t(200),
        limit: 10,
    };
    let batches: Vec<Vec<_>> = (0..6)
        .map(|r| {
            names[6 + r * 4..10 + r * 4]
                .iter()
                .map(|n| claimed(n, "accounts", t(300), None, &format!("replica-{r}")))
                .collect()
        })
        .collect();
    let mut racing = tokio::task::JoinSet::new();
    for (s, b) in replicas.into_iter().zip(batches) {
        racing.spawn(async move { s.record_batch_capped(&[], &[], &b, Some(race)).await });
    }
    let mut per_replica = Vec::new();
    while let Some(done) = racing.join_next().await {
        per_replica.push(done.unwrap().unwrap().iter().flatten().count());
    }
    let admitted: usize = per_replica.iter().sum();
    assert_eq!(admitted, 10, "the cap holds across racing replicas");
}
