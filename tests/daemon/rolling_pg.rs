//! A fleet's configuration on PostgreSQL (issue 16): a replica on an older
//! config revision never overwrites the newer link set (rolling updates),
//! and one configured with another partition count than the database's
//! stops with exit 2. Skipped, loudly, unless `LINKFRESH_TEST_PG_URL` or
//! `DATABASE_URL` names a server.

use crate::daemon;
use crate::partitions_pg::{config, start};
use crate::store_common;

use std::time::Duration;

use daemon::{link_ids, wait_until_async};
use linkfresh::sim::{self, SimConfig};
use store_common::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_an_older_config_revision_never_overwrites_the_newer_link_set() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (cfg, sim, dir) = crate::partitions_pg::fast_sim().await;
    let new_links = link_ids("mk_new", 6);
    let old_links = link_ids("mk_old", 6);
    let new = config(
        dir.path(),
        &sim,
        &cfg,
        &db.url,
        &new_links,
        &[],
        "revision = 2\n",
    );
    let old = config(
        dir.path(),
        &sim,
        &cfg,
        &db.url,
        &old_links,
        &[],
        "revision = 1\n",
    );
    let (mut newer, _) = start(&new, "new");
    let store = db.open().await;
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            store.load_links().await.unwrap().len() == 6
        })
        .await
    );
    let (mut older, _) = start(&old, "old");
    assert!(
        daemon::wait_until(Duration::from_secs(10), || older.log().contains("behind")
            && older.log().contains("linkfresh is running"))
        .await,
        "{}",
        older.log()
    );
    // A reload of the old config is refused the same way.
    older.signal("HUP");
    assert!(
        daemon::wait_until(Duration::from_secs(10), || older
            .log()
            .matches("behind")
            .count()
            >= 2)
        .await,
        "{}",
        older.log()
    );
    let ids: Vec<String> = store
        .load_links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id.to_string())
        .collect();
    assert_eq!(ids, new_links);
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            sim.stats().count("refresh", 202) >= 6
        })
        .await,
        "{:#?}\n{}\n{}",
        sim.stats(),
        newer.log(),
        older.log()
    );
    let stats = sim.stats();
    assert!(
        stats.posts_per_link.keys().all(|l| l.starts_with("mk_new")),
        "{stats:#?}"
    );
    for d in [&mut newer, &mut older] {
        d.signal("TERM");
        assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{}", d.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_configured_with_another_partition_count_exits_2_naming_both() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let cfg = SimConfig::default();
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let links = link_ids("mk_count", 2);
    let store = db.open().await;
    store.ownership().unwrap().join(64).await.unwrap();
    let path = config(dir.path(), &sim, &cfg, &db.url, &links, &[], "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("lease = ", "partitions = 32\nlease = ");
    std::fs::write(&path, text).unwrap();
    let (mut d, _) = start(&path, "count");
    assert_eq!(d.wait(Duration::from_secs(15)), Some(2), "{}", d.log());
    let log = d.log();
    assert!(
        log.contains("[database] partitions = 32") && log.contains("split into 64"),
        "{log}"
    );
}
