//! A fleet starting cold (issue 16, memory): replicas started together on
//! one PostgreSQL database split the links without one of them loading the
//! whole fleet first. Before `[database] initial_settle`, the first replica
//! to beat saw no other live replica, took every partition, loaded every
//! link and gave two thirds back a third of a lease later: its peak memory
//! was the fleet's, not its share's. Skipped, loudly, unless
//! `LINKFRESH_TEST_PG_URL` or `DATABASE_URL` names a server.

use crate::daemon;
use crate::partitions_pg::{config, links_loaded, refresh_posts, start, until_shares, view};
use crate::store_common;

use std::time::{Duration, Instant};

use daemon::{link_ids, wait_until, wait_until_async};
use store_common::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_each_load_their_share_never_the_whole_fleet() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let _fleet = crate::PG_FLEET.lock().await;
    let (cfg, sim, dir) = crate::partitions_pg::fast_sim().await;
    let links = link_ids("mk_cold", 90);
    let config = config(dir.path(), &sim, &cfg, &db.url, &links, &[], "");
    let started = Instant::now();
    let mut replicas: Vec<_> = (0..3).map(|i| start(&config, &format!("c{i}"))).collect();
    let store = db.open().await;
    assert!(
        until_shares(&store, Duration::from_secs(15), &[22, 21, 21]).await,
        "{:#?}\n{}",
        view(&store).await,
        replicas[0].0.log()
    );
    // Every link loaded by someone (each replica logs its loads when done).
    assert!(
        wait_until(Duration::from_secs(10), || {
            replicas.iter().map(|(d, _)| links_loaded(d)).sum::<usize>() >= links.len()
        })
        .await,
        "{:?}",
        replicas
            .iter()
            .map(|(d, _)| links_loaded(d))
            .collect::<Vec<_>>()
    );
    let loaded: Vec<usize> = replicas.iter().map(|(d, _)| links_loaded(d)).collect();
    eprintln!(
        "links each replica loaded at start (of {}): {loaded:?}",
        links.len()
    );
    for ((d, _), n) in replicas.iter().zip(&loaded) {
        assert!(
            *n <= links.len() / 2,
            "a replica loaded {n} of {} links: {loaded:?}\n{}",
            links.len(),
            d.log()
        );
    }
    // Each sends for its share soon after start: the settle costs seconds,
    // not a lease.
    for (d, port) in &replicas {
        assert!(
            wait_until_async(Duration::from_secs(10), || async {
                refresh_posts(*port).await > 0
            })
            .await,
            "{}",
            d.log()
        );
    }
    eprintln!(
        "every replica had sent a POST {:?} after they were started",
        started.elapsed()
    );
    let stats = sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");
    for (d, _) in &mut replicas {
        d.stop_cleanly();
    }
}
