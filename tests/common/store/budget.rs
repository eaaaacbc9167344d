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
