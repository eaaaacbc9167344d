//! Operator controls, pruning, due times and removal through the API.

use super::*;

pub async fn operator_controls_bump_the_change_sequence_for_the_daemon(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[
                spec("mk_a", "accounts,transactions"),
                spec("mk_b", "accounts"),
            ],
            t(0),
        )
        .await
        .unwrap();
    let (start, changed) = store.changes_since(0).await.unwrap();
    assert!(changed.is_empty(), "config sync is not an operator change");

    assert!(store.set_paused(&id("mk_a"), true, t(1)).await.unwrap());
    let (after_pause, changed) = store.changes_since(start).await.unwrap();
    assert!(after_pause > start);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].state, LinkState::Paused);
    assert_eq!(changed[0].change_seq, after_pause);

    assert!(
        store
            .request_refresh(&id("mk_b"), ProductSet::EMPTY, t(2))
            .await
            .unwrap()
    );
    assert!(
        store
            .request_refresh(&id("mk_a"), products("transactions,identity"), t(3))
            .await
            .unwrap()
    );
    let (after_refresh, changed) = store.changes_since(after_pause).await.unwrap();
    assert!(after_refresh > after_pause);
    let ids: Vec<&str> = changed.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["mk_a", "mk_b"]);
    let a = &changed[0];
    assert!(schedule(a, Product::Transactions).refresh_requested);
    assert!(!schedule(a, Product::Accounts).refresh_requested);
    assert!(schedule(&changed[1], Product::Accounts).refresh_requested);
    assert_bulk_load_matches_single_loads(&store).await;

    assert!(store.set_paused(&id("mk_a"), false, t(4)).await.unwrap());
    let (after_resume, changed) = store.changes_since(after_refresh).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].state, LinkState::Active);
    assert_eq!(
        store.changes_since(after_resume).await.unwrap(),
        (after_resume, vec![])
    );

    assert!(!store.set_paused(&id("mk_nope"), true, t(5)).await.unwrap());
    assert!(
        !store
            .request_refresh(&id("mk_nope"), ProductSet::EMPTY, t(5))
            .await
            .unwrap()
    );
    assert_eq!(
        store.changes_since(after_resume).await.unwrap().0,
        after_resume
    );
}

pub async fn pruning_removes_only_attempts_older_than_the_cutoff(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts")], t(0))
        .await
        .unwrap();
    for at in [100, 200, 300, 400] {
        intent(&store, "mk_a", "accounts", t(at)).await;
    }
    assert_eq!(store.prune_attempts(t(300)).await.unwrap(), 2);
    let left: Vec<DateTime<Utc>> = store
        .attempts(&id("mk_a"), 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.intent_at)
        .collect();
    assert_eq!(left, [t(400), t(300)]);
    assert_eq!(store.prune_attempts(t(300)).await.unwrap(), 0);
    let next = intent(&store, "mk_a", "accounts", t(500)).await;
    let ids: Vec<i64> = store
        .attempts(&id("mk_a"), 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert!(
        ids[1..].iter().all(|old| *old < next),
        "attempt ids are never reused"
    );
}

pub async fn due_times_and_removal_by_api_are_stored(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,transactions")], t(0))
        .await
        .unwrap();
    store
        .set_next_due(&[
            (id("mk_a"), Product::Accounts, Some(t(3600))),
            (id("mk_a"), Product::Transactions, None),
        ])
        .await
        .unwrap();
    let a = link(&store, "mk_a").await;
    assert_eq!(schedule(&a, Product::Accounts).next_due_at, Some(t(3600)));
    assert_eq!(schedule(&a, Product::Transactions).next_due_at, None);

    assert!(store.remove_link(&id("mk_a"), t(10)).await.unwrap());
    assert!(!store.remove_link(&id("mk_a"), t(11)).await.unwrap());
    assert!(store.load_links().await.unwrap().is_empty());
    assert!(link(&store, "mk_a").await.removed);
    store.ping().await.unwrap();
}
