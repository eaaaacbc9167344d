//! The store conformance suite: one set of behaviours every backend must
//! show, written once and run against SQLite and PostgreSQL by
//! `conformance_tests!` in `tests/store/store_sqlite.rs` and
//! `tests/store/store_postgres.rs`, one file per concern below.
//! Each test gets its own fresh database so tests run in parallel.
#![allow(dead_code)]

#[path = "../optional.rs"]
pub mod optional;

mod batches;
mod budget;
mod claims;
mod controls;
mod demand;
mod outcomes;
mod sync;
mod write_path;

// The checks, for `conformance_tests!`; binaries that only borrow the
// fixtures (`tests/daemon`) leave them unused.
#[allow(unused_imports)]
pub use self::{
    batches::*, budget::*, claims::*, controls::*, demand::*, outcomes::*, sync::*, write_path::*,
};

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
            fence: None,
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
