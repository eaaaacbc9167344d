//! The PostgreSQL write path against a plan cached while the attempts
//! table was small, one of the two traps that made one replica a fifth of
//! a SQLite daemon (issue 16; the other, sqlx 0.9.0 leaving Nagle's
//! algorithm on, is pinned by the `sqlx` version in `Cargo.toml`).
//! Skipped, loudly, without a PostgreSQL server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkfresh::store::{Intent, Store};
use sqlx::{Connection, PgConnection, Row};

use crate::store_common::{TestDb, claimed, spec, t};

const LINKS: usize = 40;

async fn sync_links(store: &Arc<dyn Store>) {
    let specs: Vec<_> = (0..LINKS)
        .map(|n| spec(&format!("mk_{n}"), "accounts,transactions"))
        .collect();
    store.sync_config("r1", &specs, t(0)).await.unwrap();
}

/// One round as a replica's writer commits them: every link's claimed
/// intent (round `n` knows round `n - 1`'s), then every link's outcome,
/// as batches.
async fn round(store: &Arc<dyn Store>, n: i64) {
    let known = (n > 1).then(|| t(10 * (n - 1)));
    let intents: Vec<Intent> = (0..LINKS)
        .map(|l| {
            claimed(
                &format!("mk_{l}"),
                "accounts,transactions",
                t(10 * n),
                known,
                "r1",
            )
        })
        .collect();
    let ids = store.record_intents(&intents).await.unwrap();
    let outcomes: Vec<_> = ids
        .into_iter()
        .zip(&intents)
        .map(|(attempt, i)| linkfresh::store::Outcome {
            attempt: attempt.expect("the claim holds"),
            link: i.link.clone(),
            label: "accepted".into(),
            status: Some(202),
            detail: None,
            at: t(10 * n + 1),
            patch: Default::default(),
        })
        .collect();
    store.record_outcomes(&outcomes).await.unwrap();
}

/// A second session on the test's database, to look at it from outside.
async fn observer(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

/// A replica started on an empty database: the outcomes' statement was
/// planned (and the plan kept by the session) while `attempts` held a few
/// rows, as a hash join over a scan of the whole table; as the table grew,
/// every round read all of it (5 ms a round at 55,000 rows, growing with
/// the table: 0.7 of one replica's database time in the benchmark).
/// Recording a round must read the attempts it finishes, not the table.
#[tokio::test]
async fn recording_outcomes_never_reads_the_whole_attempts_table_however_it_grew() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    sync_links(&store).await;
    // Enough rounds for the session to settle on a plan for each statement.
    for n in 1..=30 {
        round(&store, n).await;
    }
    let mut obs = observer(&db).await;
    const GROWN: i64 = 200_000;
    sqlx::query(
        "INSERT INTO attempts (link_id, products, intent_at, prev_requested, outcome) \
         SELECT 'mk_0', 1, g, '{}', 'accepted' FROM generate_series(1, $1) AS g",
    )
    .bind(GROWN)
    .execute(&mut obs)
    .await
    .unwrap();
    round(&store, 31).await;
    // The store's sessions report their table statistics when they end.
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let others: i64 = sqlx::query(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut obs)
        .await
        .unwrap()
        .get(0);
        if others == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store's sessions did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut obs)
        .await
        .unwrap();
    let read: i64 = sqlx::query(
        "SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'attempts'",
    )
    .fetch_one(&mut obs)
    .await
    .unwrap()
    .get(0);
    assert!(
        read < GROWN,
        "the write path read {read} attempt rows by scanning the table (it holds over {GROWN})"
    );
}
