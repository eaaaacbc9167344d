//! The store conformance suite: one set of behaviours every backend must
//! show, written once and run against SQLite and PostgreSQL by
//! `conformance_tests!` in `tests/store_sqlite.rs` and `tests/store_postgres.rs`.
//! Each test gets its own fresh database so tests run in parallel.
#![allow(dead_code)]

#[path = "optional.rs"]
mod optional;
#[path = "store_write_path.rs"]
mod write_path;
#[allow(unused_imports)] // fleet_store.rs uses none of them
pub use write_path::*;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use linkfresh::domain::{LinkId, LinkState, Product, ProductSet};
use linkfresh::store::{
    Claim, Intent, LinkPatch, LinkRecord, LinkSource, LinkSpec, Outcome, OwnPatch, ProductPatch,
    ProductRecord, Store,
};

/// A fresh, empty database for one test, removed when dropped.
pub struct TestDb {
    /// What `linkfresh::store::connect` is given.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A new SQLite file in a temporary folder.
    pub async fn sqlite() -> Option<TestDb> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("linkfresh.db").display()
        );
        Some(TestDb {
            url,
            _dir: Some(dir),
            pg: None,
        })
    }

    /// A new PostgreSQL database on the server named by `LINKFRESH_TEST_PG_URL`
    /// or `DATABASE_URL`; when neither is set, `None` (skip, loudly) or a
    /// failure under `LINKFRESH_REQUIRE_ALL=1` (see `optional.rs`).
    pub async fn postgres() -> Option<TestDb> {
        let admin = optional::available(optional::Suite::Postgres)?;
        let name = format!("lf_test_{:016x}", rand::random::<u64>());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("connect to the PostgreSQL test server");
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .unwrap();
        let url = with_database(&admin, &name);
        Some(TestDb {
            url,
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    /// Connects as the daemon would (running migrations).
    pub async fn open(&self) -> Arc<dyn Store> {
        linkfresh::store::connect(&self.url).await.unwrap()
    }
}

/// Replaces the database name (path) of a PostgreSQL URL, keeping its query.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let host_end = rest
        .find('/')
        .map(|i| base.len() - rest.len() + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Best effort, on its own thread: Drop cannot await, and this also
        // runs when a test panicked.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Generates one `#[tokio::test]` per conformance check for a backend.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(db) = $fixture().await {
                    store_common::$name(&db).await;
                }
            }
        )*
    };
}

pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

pub fn id(raw: &str) -> LinkId {
    LinkId::parse(raw).unwrap()
}

pub fn products(list: &str) -> ProductSet {
    ProductSet::parse_list(list).unwrap()
}

pub fn spec(raw: &str, list: &str) -> LinkSpec {
    LinkSpec {
        id: id(raw),
        products: products(list),
        cadence: None,
        source: LinkSource::Config,
    }
}

fn schedule(link: &LinkRecord, p: Product) -> &ProductRecord {
    link.schedules
        .iter()
        .find(|s| s.product == p)
        .unwrap_or_else(|| panic!("{} has no schedule for {p}", link.id))
}

async fn link(store: &Arc<dyn Store>, raw: &str) -> LinkRecord {
    store
        .load_link(&id(raw))
        .await
        .unwrap()
        .expect("link is stored")
}

/// The bulk loader (one JSON page per query) must agree with the one-link
/// loader (a plain join) on every field.
async fn assert_bulk_load_matches_single_loads(store: &Arc<dyn Store>) {
    let all = store.load_links().await.unwrap();
    assert!(!all.is_empty());
    for l in &all {
        assert_eq!(Some(l.clone()), store.load_link(&l.id).await.unwrap());
    }
}

async fn intent(store: &Arc<dyn Store>, raw: &str, list: &str, at: DateTime<Utc>) -> i64 {
    store
        .record_intents(&[Intent {
            link: id(raw),
            products: products(list),
            at,
            claim: None,
        }])
        .await
        .unwrap()[0]
        .expect("an unguarded intent is always written")
}

/// A claimed intent of `owner` believing `known` for every product, leased
/// for 15 s; the attempt, or `None` if refused.
pub fn claimed(
    raw: &str,
    list: &str,
    at: DateTime<Utc>,
    known: Option<DateTime<Utc>>,
    owner: &str,
) -> Intent {
    Intent {
        link: id(raw),
        products: products(list),
        at,
        claim: Some(Claim {
            known: products(list).iter().map(|p| (p, known)).collect(),
            owner: owner.to_owned(),
            lease_until: at + chrono::TimeDelta::seconds(15),
        }),
    }
}

async fn claim(
    store: &Arc<dyn Store>,
    raw: &str,
    list: &str,
    at: DateTime<Utc>,
    known: Option<DateTime<Utc>>,
    owner: &str,
) -> Option<i64> {
    store
        .record_intents(&[claimed(raw, list, at, known, owner)])
        .await
        .unwrap()[0]
}

fn outcome(attempt: i64, raw: &str, label: &str, status: u16, at: DateTime<Utc>) -> Outcome {
    Outcome {
        attempt,
        link: id(raw),
        label: label.to_owned(),
        status: Some(status),
        detail: None,
        at,
        patch: LinkPatch::default(),
    }
}

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
    // The owner itself is not held off by its own lease.
    assert!(
        claim(&store, "mk_a", "accounts", t(131), Some(t(128)), "r-c")
            .await
            .is_some()
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
