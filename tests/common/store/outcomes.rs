//! Intents and outcomes one at a time: what counts as sent, what a 429
//! puts back, max-merged server times, the daemon's own patches, parking.

use super::*;

pub async fn an_intent_counts_as_sent_even_if_the_process_dies_before_the_outcome(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[spec("mk_a", "accounts,transactions,identity")],
            t(0),
        )
        .await
        .unwrap();
    intent(&store, "mk_a", "accounts", t(50)).await;
    let attempt = intent(&store, "mk_a", "accounts,transactions", t(100)).await;
    drop(store); // "crash": no outcome, no graceful close

    let store = db.open().await;
    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(100))
    );
    assert_eq!(
        schedule(&a, Product::Transactions).last_requested_at,
        Some(t(100))
    );
    assert_eq!(schedule(&a, Product::Identity).last_requested_at, None);
    let history = store.attempts(&id("mk_a"), 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].id, attempt, "newest first");
    assert_eq!(history[0].outcome, None);
    assert_eq!(
        history[0].prev_requested,
        [
            (Product::Accounts, Some(t(50))),
            (Product::Transactions, None)
        ]
    );
}

pub async fn a_429_outcome_puts_back_the_previous_request_times(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,transactions")], t(0))
        .await
        .unwrap();
    let first = intent(&store, "mk_a", "accounts", t(100)).await;
    store
        .record_outcomes(&[outcome(first, "mk_a", "accepted", 202, t(101))])
        .await
        .unwrap();
    let second = intent(&store, "mk_a", "accounts,transactions", t(4000)).await;
    let mut limited = outcome(second, "mk_a", "rate_limited", 429, t(4001));
    limited.patch = LinkPatch {
        restore_requested: true,
        backoff_until: Some(Some(t(4600))),
        failures: Some(1),
        ..LinkPatch::default()
    };
    store.record_outcomes(&[limited]).await.unwrap();

    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(100))
    );
    assert_eq!(schedule(&a, Product::Transactions).last_requested_at, None);
    assert_eq!(a.backoff_until, Some(t(4600)));
    assert_eq!(a.failures, 1);
    let history = store.attempts(&id("mk_a"), 1).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome.as_deref(), Some("rate_limited"));
    assert_eq!(history[0].status, Some(429));
    assert_eq!(history[0].finished_at, Some(t(4001)));
}

pub async fn server_times_are_max_merged_and_never_move_backwards(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts")], t(0))
        .await
        .unwrap();
    let report = |refreshed: i64, attempted: i64| LinkPatch {
        products: vec![(
            Product::Accounts,
            ProductPatch {
                server_refreshed_at: Some(t(refreshed)),
                server_attempted_at: Some(t(attempted)),
                ..ProductPatch::default()
            },
        )],
        ..LinkPatch::default()
    };
    assert!(
        store
            .apply_patch(&id("mk_a"), &report(500, 600), t(700))
            .await
            .unwrap()
    );
    assert!(
        store
            .apply_patch(&id("mk_a"), &report(400, 900), t(800))
            .await
            .unwrap()
    );
    let s = link(&store, "mk_a").await.schedules[0].clone();
    assert_eq!(
        s.server_refreshed_at,
        Some(t(500)),
        "an older report does not win"
    );
    assert_eq!(s.server_attempted_at, Some(t(900)), "a newer report does");
    assert_bulk_load_matches_single_loads(&store).await;
    assert!(
        !store
            .apply_patch(&id("mk_nope"), &report(1, 1), t(1))
            .await
            .unwrap()
    );
}

pub async fn the_daemons_own_patches_share_a_round_and_do_not_signal_a_change(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,identity")], t(0))
        .await
        .unwrap();
    let (start, _) = store.changes_since(0).await.unwrap();
    let read = |link: &str| OwnPatch {
        link: id(link),
        patch: LinkPatch {
            products: vec![(
                Product::Identity,
                ProductPatch {
                    server_refreshed_at: Some(t(50)),
                    ..ProductPatch::default()
                },
            )],
            ..LinkPatch::default()
        },
        at: t(100),
    };
    let ids = store
        .record_batch(
            &[],
            &[read("mk_nope"), read("mk_a")],
            &[Intent {
                link: id("mk_a"),
                products: products("accounts"),
                at: t(101),
                claim: None,
            }],
        )
        .await
        .expect("a patch of an unknown link is skipped, not an error");
    assert_eq!(ids.len(), 1);
    assert!(ids[0].is_some(), "the intent of the same round is written");
    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Identity).server_refreshed_at,
        Some(t(50))
    );
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(101))
    );
    assert_eq!(
        store.changes_since(start).await.unwrap(),
        (start, vec![]),
        "the daemon already holds what it wrote itself"
    );
}

pub async fn outcomes_park_links_and_products_and_resume_unparks_them(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,identity")], t(0))
        .await
        .unwrap();
    let attempt = intent(&store, "mk_a", "accounts,identity", t(10)).await;
    let mut forbidden = outcome(attempt, "mk_a", "forbidden", 403, t(11));
    forbidden.patch.products = vec![(
        Product::Identity,
        ProductPatch {
            parked_reason: Some(Some("forbidden".into())),
            ..ProductPatch::default()
        },
    )];
    store.record_outcomes(&[forbidden]).await.unwrap();
    let attempt = intent(&store, "mk_a", "accounts", t(4000)).await;
    let mut gone = outcome(attempt, "mk_a", "not_found", 404, t(4001));
    gone.patch.state = Some((LinkState::NotFound, Some("MoneyKit answered 404".into())));
    store.record_outcomes(&[gone]).await.unwrap();

    let a = link(&store, "mk_a").await;
    assert_eq!(a.state, LinkState::NotFound);
    assert_eq!(a.reason.as_deref(), Some("MoneyKit answered 404"));
    assert_eq!(
        schedule(&a, Product::Identity).parked_reason.as_deref(),
        Some("forbidden")
    );

    assert!(store.set_paused(&id("mk_a"), false, t(5000)).await.unwrap());
    let a = link(&store, "mk_a").await;
    assert_eq!((a.state, a.reason.clone()), (LinkState::Active, None));
    assert_eq!(schedule(&a, Product::Identity).parked_reason, None);
}
