//! The batched intent, outcome and claim paths against the same calls one
//! by one.

use super::*;

/// The batched paths (several intents, several outcomes in one call) must do
/// exactly what the same calls one by one do, including a 429's restore in
/// the middle of a batch, two outcomes of one link, and an unknown link.
pub async fn batches_of_intents_and_outcomes_match_one_by_one(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[
                spec("mk_a", "accounts,transactions"),
                spec("mk_b", "identity"),
                spec("mk_c", "accounts"),
            ],
            t(0),
        )
        .await
        .unwrap();
    let early = intent(&store, "mk_b", "identity", t(10)).await;
    store
        .record_outcomes(&[outcome(early, "mk_b", "accepted", 202, t(11))])
        .await
        .unwrap();
    let intents: Vec<Intent> = [
        ("mk_a", "accounts,transactions"),
        ("mk_b", "identity"),
        ("mk_c", "accounts"),
    ]
    .into_iter()
    .map(|(l, p)| Intent {
        link: id(l),
        products: products(p),
        at: t(100),
        claim: None,
    })
    .collect();
    let ids: Vec<i64> = store
        .record_intents(&intents)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.expect("an unguarded intent is always written"))
        .collect();
    assert_eq!(ids.len(), 3);
    for (raw, attempt) in [("mk_a", ids[0]), ("mk_b", ids[1]), ("mk_c", ids[2])] {
        let h = store.attempts(&id(raw), 1).await.unwrap();
        assert_eq!(
            h[0].id, attempt,
            "ids come back in the order of the intents"
        );
        assert_eq!(h[0].intent_at, t(100));
    }
    let b_prev = store.attempts(&id("mk_b"), 1).await.unwrap()[0]
        .prev_requested
        .clone();
    assert_eq!(b_prev, [(Product::Identity, Some(t(10)))]);
    for (raw, p) in [("mk_a", Product::Transactions), ("mk_c", Product::Accounts)] {
        assert_eq!(
            schedule(&link(&store, raw).await, p).last_requested_at,
            Some(t(100))
        );
    }

    let mut a_ok = outcome(ids[0], "mk_a", "accepted", 202, t(101));
    a_ok.patch = LinkPatch {
        failures: Some(0),
        backoff_until: Some(None),
        products: vec![(
            Product::Accounts,
            ProductPatch {
                server_refreshed_at: Some(t(99)),
                refresh_requested: Some(false),
                ..ProductPatch::default()
            },
        )],
        ..LinkPatch::default()
    };
    let mut b_429 = outcome(ids[1], "mk_b", "rate_limited", 429, t(101));
    b_429.patch = LinkPatch {
        restore_requested: true,
        backoff_until: Some(Some(t(700))),
        failures: Some(1),
        ..LinkPatch::default()
    };
    let mut c_ok = outcome(ids[2], "mk_c", "accepted", 202, t(102));
    c_ok.patch.failures = Some(0);
    c_ok.detail = Some("fine".into());
    // A second outcome of mk_a in the same batch: applied after the first.
    let mut a_park = outcome(ids[0], "mk_a", "forbidden", 403, t(103));
    a_park.patch.products = vec![(
        Product::Transactions,
        ProductPatch {
            parked_reason: Some(Some("forbidden".into())),
            ..ProductPatch::default()
        },
    )];
    a_park.patch.state = Some((LinkState::Active, Some("one product parked".into())));
    let ghost = outcome(999_999, "mk_ghost", "accepted", 202, t(104));
    store
        .record_outcomes(&[a_ok, b_429, c_ok, a_park, ghost])
        .await
        .unwrap();

    let a = link(&store, "mk_a").await;
    assert_eq!(a.reason.as_deref(), Some("one product parked"));
    assert_eq!(a.failures, 0);
    assert_eq!(
        schedule(&a, Product::Accounts).server_refreshed_at,
        Some(t(99))
    );
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(100))
    );
    assert_eq!(
        schedule(&a, Product::Transactions).parked_reason.as_deref(),
        Some("forbidden")
    );
    let history = store.attempts(&id("mk_a"), 1).await.unwrap();
    assert_eq!(
        history[0].outcome.as_deref(),
        Some("forbidden"),
        "the later outcome wins"
    );
    assert_eq!(history[0].finished_at, Some(t(103)));
    let b = link(&store, "mk_b").await;
    assert_eq!(
        schedule(&b, Product::Identity).last_requested_at,
        Some(t(10)),
        "429 restored"
    );
    assert_eq!(b.backoff_until, Some(t(700)));
    assert_eq!(b.failures, 1);
    let c = link(&store, "mk_c").await;
    assert_eq!(c.updated_at, t(102));
    let h = store.attempts(&id("mk_c"), 1).await.unwrap();
    assert_eq!(
        (h[0].outcome.as_deref(), h[0].status, h[0].detail.as_deref()),
        (Some("accepted"), Some(202), Some("fine"))
    );
    assert!(store.load_link(&id("mk_ghost")).await.unwrap().is_none());
}

/// A batch of claims of distinct links (the daemon's usual call, which goes
/// through the batched path) decides each claim exactly as one by one: a
/// fresh claim, a stale one, one held off by another replica's lease, an
/// unknown link and an unguarded intent, side by side; and a batch of
/// outcomes releases only the leases of the attempts' own replicas.
pub async fn a_batch_of_claims_decides_each_as_one_by_one(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[
                spec("mk_fresh", "accounts"),
                spec("mk_stale", "accounts,transactions"),
                spec("mk_leased", "accounts"),
                spec("mk_free", "identity"),
                spec("mk_known", "accounts"),
            ],
            t(0),
        )
        .await
        .unwrap();
    let stale = intent(&store, "mk_stale", "accounts", t(50)).await;
    store
        .record_outcomes(&[outcome(stale, "mk_stale", "accepted", 202, t(51))])
        .await
        .unwrap();
    let known = claim(&store, "mk_known", "accounts", t(60), None, "r-a").await;
    store
        .record_outcomes(&[outcome(known.unwrap(), "mk_known", "accepted", 202, t(61))])
        .await
        .unwrap();
    let leased = claim(&store, "mk_leased", "accounts", t(90), None, "r-b").await;
    let leased = leased.expect("a fresh link can be claimed");
    let (start, _) = store.claims_since(i64::MAX).await.unwrap();

    let ids = store
        .record_intents(&[
            claimed("mk_fresh", "accounts", t(100), None, "r-a"),
            claimed(
                "mk_stale",
                "accounts,transactions",
                t(100),
                Some(t(20)),
                "r-a",
            ),
            claimed("mk_leased", "accounts", t(100), None, "r-a"),
            claimed("mk_ghost", "accounts", t(100), None, "r-a"),
            Intent {
                link: id("mk_free"),
                products: products("identity"),
                at: t(100),
                claim: None,
            },
            claimed("mk_known", "accounts", t(100), Some(t(60)), "r-a"),
        ])
        .await
        .unwrap();
    assert!(ids[0].is_some(), "fresh claim");
    assert_eq!(ids[1], None, "stale claim");
    assert_eq!(ids[2], None, "held off by r-b's lease");
    assert_eq!(ids[3], None, "unknown link");
    assert!(ids[4].is_some(), "unguarded intent");
    assert!(ids[5].is_some(), "claim knowing the stored time");
    // Refused claims wrote nothing; accepted ones moved the times.
    let s = link(&store, "mk_stale").await;
    assert_eq!(
        schedule(&s, Product::Accounts).last_requested_at,
        Some(t(50))
    );
    assert_eq!(schedule(&s, Product::Transactions).last_requested_at, None);
    assert_eq!(store.attempts(&id("mk_stale"), 10).await.unwrap().len(), 1);
    let l = link(&store, "mk_leased").await;
    assert_eq!(
        schedule(&l, Product::Accounts).last_requested_at,
        Some(t(90))
    );
    assert_eq!(store.attempts(&id("mk_leased"), 10).await.unwrap().len(), 1);
    for (raw, p) in [
        ("mk_fresh", Product::Accounts),
        ("mk_free", Product::Identity),
        ("mk_known", Product::Accounts),
    ] {
        assert_eq!(
            schedule(&link(&store, raw).await, p).last_requested_at,
            Some(t(100))
        );
    }
    // The accepted claims are stamped for the other replicas' poll.
    let (after, seen) = store.claims_since(start).await.unwrap();
    assert!(after > start);
    for raw in ["mk_fresh", "mk_known"] {
        assert!(seen.iter().any(|l| l.id.as_str() == raw), "{raw} not seen");
    }
    // The claims took r-a's lease: r-c is held off until the outcomes.
    for raw in ["mk_fresh", "mk_known"] {
        assert_eq!(
            claim(&store, raw, "accounts", t(101), Some(t(100)), "r-c").await,
            None
        );
    }

    // A batch of outcomes (distinct links: the batched path) releases r-a's
    // leases and stamps them; r-b's outcome releases r-b's lease, and a
    // late outcome of a replica that lost its lease releases nothing.
    let (before, _) = store.claims_since(i64::MAX).await.unwrap();
    store
        .record_outcomes(&[
            outcome(ids[0].unwrap(), "mk_fresh", "accepted", 202, t(102)),
            outcome(ids[4].unwrap(), "mk_free", "accepted", 202, t(102)),
            outcome(ids[5].unwrap(), "mk_known", "accepted", 202, t(102)),
            outcome(leased, "mk_leased", "accepted", 202, t(102)),
        ])
        .await
        .unwrap();
    let (released, seen) = store.claims_since(before).await.unwrap();
    assert!(released > before, "releasing the leases is seen too");
    for raw in ["mk_fresh", "mk_known", "mk_leased"] {
        assert!(
            seen.iter().any(|l| l.id.as_str() == raw),
            "{raw} release not seen"
        );
    }
    for raw in ["mk_fresh", "mk_known"] {
        assert!(
            claim(&store, raw, "accounts", t(103), Some(t(100)), "r-c")
                .await
                .is_some(),
            "{raw}: lease released"
        );
    }
    let taken = claim(&store, "mk_leased", "accounts", t(103), Some(t(90)), "r-c").await;
    assert!(taken.is_some(), "r-b's lease released");
    // r-a's late outcomes (its attempts on mk_fresh and mk_known were
    // finished already, but a retried write repeats them) leave r-c's leases.
    store
        .record_outcomes(&[
            outcome(ids[0].unwrap(), "mk_fresh", "accepted", 202, t(104)),
            outcome(ids[5].unwrap(), "mk_known", "accepted", 202, t(104)),
        ])
        .await
        .unwrap();
    for raw in ["mk_fresh", "mk_known", "mk_leased"] {
        assert_eq!(
            claim(&store, raw, "accounts", t(105), Some(t(103)), "r-a").await,
            None,
            "{raw}: r-c's lease holds"
        );
    }
    assert_bulk_load_matches_single_loads(&store).await;
}
