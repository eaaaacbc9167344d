//! Claim throughput of replicas sharing one database: three store handles
//! (three "replicas", each with its own connection pool) claim every link
//! with guarded intents and release them with outcomes, in batches as the
//! daemon's dispatcher and writer do.
//!
//! Two rounds: *partitioned* (each replica claims its own third: the
//! steady state once the jitter has spread the work) and *contended* (every
//! replica tries every link, from a different starting point, so two of
//! three claims are refused: the worst case). Prints links claimed and
//! released per second, and how many claims were refused.
//!
//! ```text
//! cargo run --release --example claim_bench -- [LINKS] postgres://postgres@127.0.0.1/test
//! ```
//! The database must exist; the bench adds `LINKS` links named `mk_claim_*`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use linkfresh::domain::{LinkId, ProductSet};
use linkfresh::store::{self, Claim, Intent, LinkPatch, LinkSource, LinkSpec, Outcome, Store};

/// Intents per transaction (the dispatcher batches up to 512).
const BATCH: usize = 256;
const REPLICAS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let url = args
        .next()
        .or_else(|| std::env::var("LINKFRESH_TEST_PG_URL").ok())
        .ok_or_else(|| anyhow::anyhow!("give a postgres:// URL"))?;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..REPLICAS {
        stores.push(store::connect(&url).await?);
    }
    println!("{n} links, {REPLICAS} replicas on {}", stores[0].describe());
    let products = ProductSet::parse_list("accounts,transactions")?;
    let ids: Vec<LinkId> = (0..n)
        .map(|i| LinkId::parse(&format!("mk_claim_{i:08}")).unwrap())
        .collect();
    let specs: Vec<LinkSpec> = ids
        .iter()
        .map(|id| LinkSpec {
            id: id.clone(),
            products,
            cadence: None,
            source: LinkSource::Config,
        })
        .collect();
    let t = Instant::now();
    stores[0]
        .sync_config(&format!("claim-bench-{n}"), &specs, Utc::now())
        .await?;
    println!("sync_config: {:.2?}", t.elapsed());
    let ids = Arc::new(ids);

    for contended in [false, true] {
        // What every replica believes: the stored times right now.
        let known: Arc<Vec<Option<chrono::DateTime<Utc>>>> = Arc::new({
            let mut known = vec![None; n];
            for l in stores[0].load_links().await? {
                if let Ok(i) = ids.binary_search(&l.id) {
                    known[i] = l.schedules.iter().filter_map(|s| s.last_requested_at).max();
                }
            }
            known
        });
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (r, store) in stores.iter().enumerate() {
            let (store, ids, known) = (store.clone(), ids.clone(), known.clone());
            tasks.push(tokio::spawn(async move {
                let order: Vec<usize> = if contended {
                    (0..n).map(|i| (i + r * n / REPLICAS) % n).collect()
                } else {
                    (0..n).filter(|i| i % REPLICAS == r).collect()
                };
                run_replica(
                    &*store,
                    &format!("bench-{r}"),
                    &ids,
                    &known,
                    &order,
                    products,
                )
                .await
            }));
        }
        let mut won = 0;
        let mut refused = 0;
        for task in tasks {
            let (w, f) = task.await??;
            won += w;
            refused += f;
        }
        let took = start.elapsed();
        println!(
            "{}: {won} claimed+released, {refused} refused in {took:.2?}: {:.0} links/s ({:.0} claim attempts/s)",
            if contended {
                "contended  "
            } else {
                "partitioned"
            },
            won as f64 / took.as_secs_f64(),
            (won + refused) as f64 / took.as_secs_f64(),
        );
        assert_eq!(won, n, "every link is claimed exactly once per round");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Claims the links in `order` in batches and releases each won batch with
/// outcomes; (claimed, refused).
async fn run_replica(
    store: &dyn Store,
    owner: &str,
    ids: &[LinkId],
    known: &[Option<chrono::DateTime<Utc>>],
    order: &[usize],
    products: ProductSet,
) -> anyhow::Result<(usize, usize)> {
    let (mut won, mut refused) = (0, 0);
    for chunk in order.chunks(BATCH) {
        let now = Utc::now();
        let intents: Vec<Intent> = chunk
            .iter()
            .map(|&i| Intent {
                link: ids[i].clone(),
                products,
                at: now,
                claim: Some(Claim {
                    known: products.iter().map(|p| (p, known[i])).collect(),
                    owner: owner.to_owned(),
                    lease_until: now + TimeDelta::seconds(15),
                    fence: None,
                }),
            })
            .collect();
        let attempts = store.record_intents(&intents).await?;
        let outcomes: Vec<Outcome> = chunk
            .iter()
            .zip(&attempts)
            .filter_map(|(&i, a)| {
                a.map(|attempt| Outcome {
                    attempt,
                    link: ids[i].clone(),
                    label: "accepted".into(),
                    status: Some(202),
                    detail: None,
                    at: Utc::now(),
                    patch: LinkPatch::default(),
                })
            })
            .collect();
        won += outcomes.len();
        refused += chunk.len() - outcomes.len();
        if !outcomes.is_empty() {
            store.record_outcomes(&outcomes).await?;
        }
    }
    Ok((won, refused))
}
