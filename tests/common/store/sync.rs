//! The configuration sync: skipping a synced revision, links dropped and
//! back, a link's products changed.

use super::*;

pub async fn syncing_the_same_revision_twice_is_skipped_and_changes_no_rows(db: &TestDb) {
    let store = db.open().await;
    let mut links = vec![
        spec("mk_a", "accounts,transactions"),
        spec("mk_b", "identity"),
        spec("mk_c", "accounts"),
    ];
    links[0].cadence = Some(r#"{"every":{"transactions":"4h"},"note":"it's \"quoted\""}"#.into());
    let first = store.sync_config("rev1", &links, t(0)).await.unwrap();
    assert_eq!((first.added, first.changed, first.removed), (3, 0, 0));
    assert!(!first.skipped_same_revision);
    let before = store.load_links().await.unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(before[0].schedules.len(), 2);
    assert_eq!(
        before[0].cadence, links[0].cadence,
        "cadence is kept verbatim"
    );

    let again = store.sync_config("rev1", &links, t(10)).await.unwrap();
    assert!(again.skipped_same_revision);
    assert_eq!(store.load_links().await.unwrap(), before);

    // A new revision with the same links is a no-op diff, not a rewrite.
    let other = store.sync_config("rev2", &links, t(20)).await.unwrap();
    assert!(!other.skipped_same_revision);
    assert_eq!(
        (other.added, other.changed, other.removed, other.unchanged),
        (0, 0, 0, 3)
    );
    assert_eq!(store.load_links().await.unwrap(), before);
}

pub async fn links_dropped_from_config_keep_their_history_and_come_back(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[spec("mk_a", "accounts"), spec("mk_b", "accounts")],
            t(0),
        )
        .await
        .unwrap();
    let mut api = spec("mk_api", "transactions");
    api.source = LinkSource::Api;
    store.upsert_link(&api, t(1)).await.unwrap();
    let attempt = intent(&store, "mk_b", "accounts", t(5)).await;
    store
        .record_outcomes(&[outcome(attempt, "mk_b", "accepted", 202, t(6))])
        .await
        .unwrap();

    let report = store
        .sync_config("r2", &[spec("mk_a", "accounts")], t(10))
        .await
        .unwrap();
    assert_eq!(report.removed, 1, "only the config-managed mk_b is removed");
    let loaded: Vec<String> = store
        .load_links()
        .await
        .unwrap()
        .iter()
        .map(|l| l.id.to_string())
        .collect();
    assert_eq!(loaded, ["mk_a", "mk_api"]);
    let b = link(&store, "mk_b").await;
    assert!(b.removed);
    assert_eq!(
        schedule(&b, Product::Accounts).last_requested_at,
        Some(t(5))
    );
    assert_eq!(store.attempts(&id("mk_b"), 10).await.unwrap().len(), 1);

    let back = store
        .sync_config(
            "r3",
            &[spec("mk_a", "accounts"), spec("mk_b", "accounts")],
            t(20),
        )
        .await
        .unwrap();
    assert_eq!((back.added, back.unchanged), (1, 1));
    let b = link(&store, "mk_b").await;
    assert!(!b.removed);
    assert_eq!(
        schedule(&b, Product::Accounts).last_requested_at,
        Some(t(5))
    );
    assert!(link(&store, "mk_api").await.source == LinkSource::Api);
}

pub async fn changing_a_links_products_keeps_the_stored_times(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,transactions")], t(0))
        .await
        .unwrap();
    intent(&store, "mk_a", "accounts,transactions", t(100)).await;

    let report = store
        .sync_config("r2", &[spec("mk_a", "accounts,identity")], t(200))
        .await
        .unwrap();
    assert_eq!(report.changed, 1);
    let a = link(&store, "mk_a").await;
    assert_eq!(a.products, products("accounts,identity"));
    let listed: Vec<Product> = a.schedules.iter().map(|s| s.product).collect();
    assert_eq!(listed, [Product::Accounts, Product::Identity]);
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(100))
    );
    assert_eq!(schedule(&a, Product::Identity).last_requested_at, None);

    store
        .sync_config("r3", &[spec("mk_a", "accounts,transactions")], t(300))
        .await
        .unwrap();
    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Transactions).last_requested_at,
        Some(t(100)),
        "a product dropped and added back remembers when it was last requested"
    );
}
