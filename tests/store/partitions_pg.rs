//! Partitioned ownership on PostgreSQL (issue 16): the partition count is
//! fixed per database, heartbeats split the partitions evenly and move few,
//! the database hashes links as the policy does, an intent is fenced by its
//! partition's epoch and lease, and an older config revision never
//! overwrites a newer link set.

use std::time::Duration;

use linkfresh::policy::partitions::{assign, partition_of};
use linkfresh::store::ownership::{Fence, Ownership};
use linkfresh::store::{Store, StoreError};

use crate::store_common::{TestDb, claimed, spec, t};

const LEASE: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);

fn own(store: &dyn Store) -> &dyn Ownership {
    store
        .ownership()
        .expect("PostgreSQL has partitioned ownership")
}

/// How many partitions each of `replicas` holds, after each ticked `rounds`
/// times, giving back what it was leaving at its next tick (as a replica
/// whose share shrank at once does).
async fn tick_all(store: &dyn Store, replicas: &[&str], rounds: usize) -> Vec<usize> {
    let mut held = vec![0; replicas.len()];
    let mut leaving: Vec<Vec<u32>> = vec![Vec::new(); replicas.len()];
    for _ in 0..rounds {
        for (i, r) in replicas.iter().enumerate() {
            let tick = own(store)
                .tick(r, LEASE, SETTLE, &leaving[i], assign)
                .await
                .unwrap();
            held[i] = tick.held.len() + tick.leaving.len();
            leaving[i] = tick.leaving.iter().map(|l| l.0).collect();
        }
    }
    held
}

#[tokio::test]
async fn the_partition_count_is_fixed_by_the_first_replica_and_another_is_refused_naming_both() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    own(&*store).join(16).await.unwrap();
    own(&*store).join(16).await.unwrap();
    let err = own(&*store).join(64).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::PartitionsMismatch {
                configured: 64,
                stored: 16
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("partitions = 64") && text.contains("16"),
        "{text}"
    );
    assert_eq!(
        own(&*store)
            .tick("r0", LEASE, SETTLE, &[], assign)
            .await
            .unwrap()
            .partitions,
        16
    );
}

#[tokio::test]
async fn replicas_split_the_partitions_evenly_and_a_fourth_takes_a_quarter_moving_no_more() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    own(&*store).join(64).await.unwrap();
    // The first tick of each takes what is free; the second lets the
    // first replicas give back what the later ones are due.
    let mut three = tick_all(&*store, &["r0", "r1", "r2"], 3).await;
    three.sort_unstable();
    assert_eq!(three, vec![21, 21, 22]);
    let before = own(&*store).view().await.unwrap();
    let four = tick_all(&*store, &["r0", "r1", "r2", "r3"], 3).await;
    assert_eq!(four, vec![16, 16, 16, 16]);
    let after = own(&*store).view().await.unwrap();
    assert!(after.unheld.is_empty(), "{after:?}");
    let holder = |v: &linkfresh::store::ownership::FleetView, part: u32| {
        v.replicas
            .iter()
            .find(|r| r.partitions.contains(&part))
            .map(|r| r.id.clone())
    };
    let moved = (0..64)
        .filter(|p| holder(&before, *p) != holder(&after, *p))
        .count();
    assert_eq!(moved, 16, "only the fourth replica's quarter moves");
    assert!(
        after.replicas.iter().all(|r| r.rebalances >= 1),
        "{after:?}"
    );
    // r3's partitions were given back by replicas that had shrunk their
    // share first: they count toward its limits at once.
    let r3 = own(&*store)
        .tick("r3", LEASE, SETTLE, &[], assign)
        .await
        .unwrap();
    assert_eq!((r3.held.len(), r3.settled, r3.partitions), (16, 16, 64));
    // r3 lapses (a 1 ms lease): the others take its partitions, but count
    // them only `settle` after its lease ended (its last requests).
    own(&*store)
        .tick("r3", Duration::from_millis(1), SETTLE, &[], assign)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let three = tick_all(&*store, &["r0", "r1", "r2"], 3).await;
    assert_eq!(three.iter().sum::<usize>(), 64, "{three:?}");
    let (mut held, mut settled, mut at_once) = (0, 0, 0);
    for r in ["r0", "r1", "r2"] {
        let t = own(&*store)
            .tick(r, LEASE, SETTLE, &[], assign)
            .await
            .unwrap();
        held += t.held.len();
        settled += t.settled as usize;
        at_once += own(&*store)
            .tick(r, LEASE, Duration::ZERO, &[], assign)
            .await
            .unwrap()
            .settled as usize;
    }
    assert_eq!((held, settled, at_once), (64, 48, 64));
    // A clean leave frees its partitions for the next ticks at once.
    own(&*store).leave("r0").await.unwrap();
    let mut two = tick_all(&*store, &["r1", "r2"], 3).await;
    two.sort_unstable();
    assert_eq!(two, vec![32, 32]);
}

/// A survivor's heartbeat that runs just before a dead replica's lease
/// ends must still wake as that lease ends: the tick itself says when, and
/// a look at the fleet taken after the end can no longer tell (it shows the
/// dead replica's partitions as unheld, not as its own).
#[tokio::test]
async fn a_tick_tells_when_another_replicas_lease_ends_even_once_it_has() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    own(&*store).join(16).await.unwrap();
    let short = Duration::from_millis(600);
    tick_all(&*store, &["alive", "dying"], 3).await;
    // The dying replica renews for the last time, with a short lease.
    let last = own(&*store)
        .tick("dying", short, SETTLE, &[], assign)
        .await
        .unwrap();
    assert_eq!(last.held.len(), 8, "{last:?}");
    let alive = own(&*store)
        .tick("alive", LEASE, SETTLE, &[], assign)
        .await
        .unwrap();
    let left = alive.next_lapse.expect("another replica holds partitions");
    assert!(left <= short && left > Duration::ZERO, "{left:?}");
    // Past that end a fresh look no longer attributes the partitions to the
    // dead replica: only the tick's answer could have woken the survivor.
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let view = own(&*store).view().await.unwrap();
    let dying = view.replicas.iter().find(|r| r.id == "dying").unwrap();
    assert!(
        dying.lease_left_ms < 0 && dying.partitions.is_empty(),
        "{view:?}"
    );
    // The survivor's next tick takes them and has no other lease to wait for.
    let after = own(&*store)
        .tick("alive", LEASE, SETTLE, &[], assign)
        .await
        .unwrap();
    assert_eq!(
        (after.held.len(), after.next_lapse),
        (16, None),
        "{after:?}"
    );
}

#[tokio::test]
async fn the_database_hashes_links_into_the_partitions_the_policy_computes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    own(&*store).join(8).await.unwrap();
    let specs: Vec<_> = (0..200)
        .map(|i| spec(&format!("mk_part_{i:03}"), "accounts"))
        .chain([spec("mk_é", "accounts")])
        .collect();
    store.sync_config("r", &specs, t(0)).await.unwrap();
    for part in [0u32, 5] {
        let mut ids = Vec::new();
        let mut after = String::new();
        while let Some((page, last)) = own(&*store)
            .load_partitions_page(&[part], &after)
            .await
            .unwrap()
        {
            ids.extend(page.into_iter().map(|l| l.id.to_string()));
            after = last;
        }
        let expected: Vec<String> = {
            let mut e: Vec<String> = specs
                .iter()
                .map(|s| s.id.to_string())
                .filter(|id| partition_of(id, 8) == part)
                .collect();
            e.sort();
            e
        };
        assert!(!expected.is_empty());
        assert_eq!(ids, expected, "partition {part}");
    }
}

#[tokio::test]
async fn an_intent_is_written_only_while_its_replica_holds_the_partition_at_its_epoch() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    own(&*store).join(4).await.unwrap();
    store
        .sync_config("r", &[spec("mk_f", "accounts")], t(0))
        .await
        .unwrap();
    let part = partition_of("mk_f", 4);
    let first = own(&*store)
        .tick("r0", LEASE, SETTLE, &[], assign)
        .await
        .unwrap();
    let epoch = first.held.iter().find(|(p, _)| *p == part).unwrap().1;
    let fenced = |owner: &str, at: i64, epoch: i64| {
        let mut i = claimed("mk_f", "accounts", t(at), None, owner);
        if let Some(c) = i.claim.as_mut() {
            c.fence = Some(Fence { part, epoch });
            c.lease_until = t(at);
        }
        i
    };
    let ok = store
        .record_intents(&[fenced("r0", 10, epoch)])
        .await
        .unwrap();
    assert!(ok[0].is_some(), "the holder at its epoch writes");
    let known = |at: i64| {
        let mut i = fenced("r0", at, epoch);
        if let Some(c) = i.claim.as_mut() {
            c.known = vec![(linkfresh::domain::Product::Accounts, Some(t(10)))];
        }
        i
    };
    // r0 leaves; r1 takes the partition at a new epoch.
    own(&*store).leave("r0").await.unwrap();
    let second = own(&*store)
        .tick("r1", LEASE, SETTLE, &[], assign)
        .await
        .unwrap();
    let new_epoch = second.held.iter().find(|(p, _)| *p == part).unwrap().1;
    assert!(new_epoch > epoch);
    let refused = store.record_intents(&[known(20)]).await.unwrap();
    assert_eq!(refused, vec![None], "the old holder is fenced off");
    let mut other = fenced("r1", 20, new_epoch);
    if let Some(c) = other.claim.as_mut() {
        c.known = vec![(linkfresh::domain::Product::Accounts, Some(t(10)))];
    }
    let ok = store.record_intents(&[other]).await.unwrap();
    assert!(ok[0].is_some(), "the new holder writes");
    // A lease that lapsed refuses even though nobody took the partition.
    own(&*store).leave("r1").await.unwrap();
    let short = own(&*store)
        .tick("r2", Duration::from_millis(100), SETTLE, &[], assign)
        .await
        .unwrap();
    let epoch = short.held.iter().find(|(p, _)| *p == part).unwrap().1;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut late = fenced("r2", 30, epoch);
    if let Some(c) = late.claim.as_mut() {
        c.known = vec![(linkfresh::domain::Product::Accounts, Some(t(20)))];
    }
    assert_eq!(store.record_intents(&[late]).await.unwrap(), vec![None]);
}

#[tokio::test]
async fn a_config_with_an_older_revision_number_never_overwrites_a_newer_link_set() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    let new = [spec("mk_new", "accounts")];
    let old = [spec("mk_old", "accounts")];
    let report = store
        .sync_config_numbered(2, "rev-b", &new, t(0))
        .await
        .unwrap();
    assert_eq!((report.added, report.behind), (1, None));
    let report = store
        .sync_config_numbered(1, "rev-a", &old, t(1))
        .await
        .unwrap();
    assert_eq!(report.behind, Some(2), "{report:?}");
    let ids: Vec<String> = store
        .load_links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id.to_string())
        .collect();
    assert_eq!(ids, vec!["mk_new".to_owned()]);
    // A config without a number (0) is older than revision 2 as well.
    assert_eq!(
        store.sync_config("rev-a", &old, t(2)).await.unwrap().behind,
        Some(2)
    );
    // The same number syncs (last one wins), a higher one too.
    let report = store
        .sync_config_numbered(3, "rev-a", &old, t(3))
        .await
        .unwrap();
    assert_eq!((report.added, report.removed, report.behind), (1, 1, None));
}
