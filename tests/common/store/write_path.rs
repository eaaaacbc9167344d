//! Conformance checks of the write path's bulk statements (PostgreSQL
//! binds them as column arrays, SQLite as multi-row `VALUES`): a run of
//! outcomes must set every field exactly as the same outcomes one at a
//! time, and an intent must never name a link the store does not hold.

use super::*;

/// Every settable field of a product patch, with distinct values per link.
fn full_patch(base: i64) -> LinkPatch {
    LinkPatch {
        backoff_until: Some(Some(t(base + 400))),
        failures: Some(3),
        products: vec![
            (
                Product::Accounts,
                ProductPatch {
                    last_requested_at: Some(Some(t(base + 90))),
                    server_refreshed_at: Some(t(base + 95)),
                    server_attempted_at: Some(t(base + 96)),
                    next_due_at: Some(Some(t(base + 200))),
                    failures: Some(2),
                    backoff_until: Some(Some(t(base + 300))),
                    parked_reason: Some(Some("forbidden".into())),
                    refresh_requested: Some(true),
                },
            ),
            (
                Product::Transactions,
                ProductPatch {
                    next_due_at: Some(None),
                    refresh_requested: Some(false),
                    parked_reason: Some(None),
                    ..ProductPatch::default()
                },
            ),
            // Not a product of the link: its row is made by the patch.
            (
                Product::Identity,
                ProductPatch {
                    last_requested_at: Some(Some(t(base + 80))),
                    next_due_at: Some(Some(t(base + 250))),
                    ..ProductPatch::default()
                },
            ),
        ],
        ..LinkPatch::default()
    }
}

/// Rows of `link`'s identity product (not a product of the link) as
/// [`full_patch`] sets them, read with SQL: a link's record lists only its
/// own products.
async fn patched_identity_rows(db: &TestDb, link: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM schedules WHERE link_id = '{link}' AND product = 'identity' \
         AND next_due_at IS NOT NULL AND last_requested_at IS NOT NULL"
    );
    let sql = sqlx::AssertSqlSafe(sql);
    if db.url.starts_with("postgres") {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    }
}

/// A run of outcomes of distinct links (one bulk statement per table)
/// stores every link and product field as the same outcomes written one by
/// one do.
pub async fn a_run_of_outcomes_sets_every_field_as_one_by_one(db: &TestDb) {
    let store = db.open().await;
    let both = "accounts,transactions";
    let names = ["mk_bulk_a", "mk_bulk_b", "mk_one_a", "mk_one_b"];
    let specs: Vec<LinkSpec> = names.iter().map(|n| spec(n, both)).collect();
    store.sync_config("r1", &specs, t(0)).await.unwrap();
    store
        .set_next_due(&[(id("mk_bulk_b"), Product::Transactions, Some(t(50)))])
        .await
        .unwrap();
    store
        .set_next_due(&[(id("mk_one_b"), Product::Transactions, Some(t(50)))])
        .await
        .unwrap();
    let mut done = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let attempt = intent(&store, name, both, t(100)).await;
        let mut o = outcome(attempt, name, "accepted", 202, t(101));
        o.patch = full_patch(if n % 2 == 0 { 0 } else { 1000 });
        done.push(o);
    }
    store.record_outcomes(&done[..2]).await.unwrap();
    store.record_outcomes(&done[2..3]).await.unwrap();
    store.record_outcomes(&done[3..]).await.unwrap();
    for (bulk, one) in [("mk_bulk_a", "mk_one_a"), ("mk_bulk_b", "mk_one_b")] {
        let (b, o) = (link(&store, bulk).await, link(&store, one).await);
        assert_eq!(b.schedules, o.schedules, "{bulk} against {one}");
        for name in [bulk, one] {
            assert_eq!(
                patched_identity_rows(db, name).await,
                1,
                "{name}: the row of a product the patch adds"
            );
        }
        assert_eq!(
            (b.backoff_until, b.failures, b.updated_at),
            (o.backoff_until, o.failures, o.updated_at)
        );
        let h = (
            store.attempts(&id(bulk), 1).await.unwrap(),
            store.attempts(&id(one), 1).await.unwrap(),
        );
        assert_eq!(
            (&h.0[0].outcome, h.0[0].status, h.0[0].finished_at),
            (&h.1[0].outcome, h.1[0].status, h.1[0].finished_at)
        );
    }
    let b = link(&store, "mk_bulk_b").await;
    let accounts = schedule(&b, Product::Accounts);
    assert_eq!(
        (
            accounts.last_requested_at,
            accounts.server_refreshed_at,
            accounts.server_attempted_at,
            accounts.next_due_at,
            accounts.failures,
            accounts.backoff_until,
            accounts.parked_reason.as_deref(),
            accounts.refresh_requested,
        ),
        (
            Some(t(1090)),
            Some(t(1095)),
            Some(t(1096)),
            Some(t(1200)),
            2,
            Some(t(1300)),
            Some("forbidden"),
            true
        )
    );
    let transactions = schedule(&b, Product::Transactions);
    assert_eq!(transactions.next_due_at, None, "due time cleared");
    assert_eq!(transactions.last_requested_at, Some(t(100)));
    assert_eq!((b.backoff_until, b.failures), (Some(t(1400)), 3));
}

/// An intent without a claim for a link the store does not hold is
/// refused as a whole and leaves no attempt behind (attempts carry no
/// foreign key on PostgreSQL: the schedule rows the same transaction
/// writes keep this).
pub async fn an_intent_for_an_unknown_link_fails_and_writes_nothing(db: &TestDb) {
    let store = db.open().await;
    store
        .sync_config("r1", &[spec("mk_known", "accounts")], t(0))
        .await
        .unwrap();
    let ghost = Intent {
        link: id("mk_ghost"),
        products: products("accounts"),
        at: t(10),
        claim: None,
    };
    let known = Intent {
        link: id("mk_known"),
        products: products("accounts"),
        at: t(10),
        claim: None,
    };
    assert!(store.record_intents(&[known, ghost]).await.is_err());
    assert!(
        store
            .attempts(&id("mk_ghost"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .attempts(&id("mk_known"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let k = link(&store, "mk_known").await;
    assert_eq!(schedule(&k, Product::Accounts).last_requested_at, None);
}
