//! Claims between replicas: stale views, leases, two replicas at once.

use super::*;

pub async fn a_claim_on_a_stale_view_is_refused_and_writes_nothing(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_a", "accounts,transactions")], t(0))
        .await
        .unwrap();
    // Never requested: a claim knowing nothing passes, and takes the lease.
    let first = claim(&store, "mk_a", "accounts", t(100), None, "r-a").await;
    let first = first.expect("a fresh link can be claimed");
    // Another replica still believing "never requested" is refused, even
    // with the lease released: the stored time moved past what it knows.
    store
        .record_outcomes(&[outcome(first, "mk_a", "accepted", 202, t(101))])
        .await
        .unwrap();
    assert_eq!(
        claim(&store, "mk_a", "accounts", t(4000), None, "r-b").await,
        None
    );
    // Knowing an older time is just as stale; a product never requested
    // does not rescue the claim of the batch it is in.
    assert_eq!(
        claim(
            &store,
            "mk_a",
            "accounts,transactions",
            t(4000),
            Some(t(50)),
            "r-b"
        )
        .await,
        None
    );
    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(100))
    );
    assert_eq!(schedule(&a, Product::Transactions).last_requested_at, None);
    assert_eq!(store.attempts(&id("mk_a"), 10).await.unwrap().len(), 1);

    // Knowing the stored time (even with sub-millisecond digits the store
    // does not keep) passes; a refused entry does not spoil its batch.
    let known = t(100) + chrono::TimeDelta::microseconds(300);
    let ids = store
        .record_intents(&[
            claimed("mk_a", "accounts", t(4000), Some(t(50)), "r-b"),
            claimed("mk_a", "accounts,transactions", t(4000), Some(known), "r-b"),
        ])
        .await
        .unwrap();
    assert_eq!(ids[0], None);
    assert!(ids[1].is_some());
    let a = link(&store, "mk_a").await;
    assert_eq!(
        schedule(&a, Product::Accounts).last_requested_at,
        Some(t(4000))
    );
    assert_eq!(
        schedule(&a, Product::Transactions).last_requested_at,
        Some(t(4000))
    );
    assert_eq!(store.attempts(&id("mk_a"), 10).await.unwrap().len(), 2);
    // Unknown and removed links cannot be claimed.
    assert_eq!(
        claim(&store, "mk_nope", "accounts", t(4000), None, "r-b").await,
        None
    );
}

pub async fn a_lease_holds_off_other_replicas_until_released_or_expired(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[spec("mk_a", "accounts"), spec("mk_b", "accounts")],
            t(0),
        )
        .await
        .unwrap();
    let (start, none) = store.claims_since(i64::MAX).await.unwrap();
    assert!(none.is_empty());
    let a = claim(&store, "mk_a", "accounts", t(100), None, "r-a")
        .await
        .unwrap();
    let (after_claim, seen) = store.claims_since(start).await.unwrap();
    assert!(after_claim > start);
    assert_eq!(seen.len(), 1, "other replicas learn of the claim");
    assert_eq!(
        schedule(&seen[0], Product::Accounts).last_requested_at,
        Some(t(100))
    );

    // A 429 restores the times, but until the outcome is written the lease
    // (until t(115)) keeps everybody else off, even knowing the right time.
    assert_eq!(
        claim(&store, "mk_a", "accounts", t(110), None, "r-b").await,
        None
    );
    assert_eq!(
        claim(&store, "mk_a", "accounts", t(110), Some(t(100)), "r-b").await,
        None
    );
    let mut limited = outcome(a, "mk_a", "rate_limited", 429, t(111));
    limited.patch.restore_requested = true;
    store.record_outcomes(&[limited]).await.unwrap();
    let (after_release, seen) = store.claims_since(after_claim).await.unwrap();
    assert!(
        after_release > after_claim,
        "releasing the lease is seen too"
    );
    assert!(seen.iter().any(|l| l.id.as_str() == "mk_a"));
    let b = claim(&store, "mk_a", "accounts", t(112), None, "r-b").await;
    let b = b.expect("released: the restored time is what r-b knows");

    // r-b dies with its request in the air: its lease runs out at t(127),
    // and r-b's time counts as sent.
    assert_eq!(
        claim(&store, "mk_a", "accounts", t(120), Some(t(112)), "r-c").await,
        None
    );
    assert!(
        claim(&store, "mk_a", "accounts", t(128), Some(t(112)), "r-c")
            .await
            .is_some()
    );
    // A late outcome of r-b does not release r-c's lease.
    store
        .record_outcomes(&[outcome(b, "mk_a", "accepted", 202, t(129))])
        .await
        .unwrap();
    assert_eq!(
        claim(&store, "mk_a", "accounts", t(130), Some(t(128)), "r-a").await,
        None
    );
    // The owner itself is not held off by its own lease; a claimed intent
    // keeps the time it moved, for a 429's restore.
    let c = claim(&store, "mk_a", "accounts", t(131), Some(t(128)), "r-c")
        .await
        .expect("the owner's own lease does not hold it off");
    assert_eq!(
        store.attempts(&id("mk_a"), 1).await.unwrap()[0].prev_requested,
        [(Product::Accounts, Some(t(128)))]
    );
    let mut limited = outcome(c, "mk_a", "rate_limited", 429, t(132));
    limited.patch.restore_requested = true;
    store.record_outcomes(&[limited]).await.unwrap();
    assert!(
        claim(&store, "mk_a", "accounts", t(133), Some(t(128)), "r-c")
            .await
            .is_some(),
        "the 429 put back t(128)"
    );
    assert!(
        claim(&store, "mk_b", "accounts", t(131), None, "r-a")
            .await
            .is_some()
    );
    assert_bulk_load_matches_single_loads(&store).await;
}

pub async fn two_replicas_claiming_the_same_links_at_once_never_both_win(db: &TestDb) {
    let first = db.open().await;
    let second = db.open().await;
    let links: Vec<LinkSpec> = (0..60)
        .map(|i| spec(&format!("mk_race_{i:03}"), "accounts,transactions"))
        .collect();
    first.sync_config("r1", &links, t(0)).await.unwrap();
    for round in 0..3i64 {
        let at = t(1000 * (round + 1));
        let known = (round > 0).then(|| t(1000 * round));
        // Each replica claims every link, in its own order, in batches.
        let batch = |reverse: bool, owner: &'static str| {
            let mut intents: Vec<Intent> = links
                .iter()
                .map(|l| claimed(l.id.as_str(), "accounts,transactions", at, known, owner))
                .collect();
            if reverse {
                intents.reverse();
            }
            intents
        };
        let (a, b) = (batch(false, "r-a"), batch(true, "r-b"));
        let (a_ids, b_ids) = tokio::join!(
            async {
                let mut out = Vec::new();
                for chunk in a.chunks(7) {
                    out.extend(first.record_intents(chunk).await.unwrap());
                }
                out
            },
            async {
                let mut out = Vec::new();
                for chunk in b.chunks(5) {
                    out.extend(second.record_intents(chunk).await.unwrap());
                }
                out.reverse();
                out
            }
        );
        let mut wins = 0;
        for (i, (x, y)) in a_ids.iter().zip(&b_ids).enumerate() {
            assert!(
                x.is_none() || y.is_none(),
                "round {round}: both replicas claimed link {i}"
            );
            wins += usize::from(x.is_some() || y.is_some());
            // Outcomes release the leases for the next round.
            for (attempt, store) in [(x, &first), (y, &second)] {
                if let Some(attempt) = attempt {
                    store
                        .record_outcomes(&[outcome(
                            *attempt,
                            links[i].id.as_str(),
                            "accepted",
                            202,
                            at,
                        )])
                        .await
                        .unwrap();
                }
            }
        }
        // SKIP LOCKED may refuse both for a link locked at that instant;
        // most links go to someone.
        assert!(
            wins >= links.len() / 2,
            "round {round}: only {wins} claimed"
        );
        for l in &links {
            let rec = first.load_link(&l.id).await.unwrap().unwrap();
            let requested = schedule(&rec, Product::Accounts).last_requested_at;
            assert!(requested == Some(at) || requested == known, "{requested:?}");
        }
    }
}
