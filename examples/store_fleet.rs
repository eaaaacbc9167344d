//! Times the store on a large fleet: `sync_config` (first, unchanged, 1%
//! changed), `load_links` and a full `set_next_due`, on a fresh SQLite file or
//! on the URL given.
//!
//! ```text
//! cargo run --release --example store_fleet -- [LINKS] [URL]
//! ```

use std::time::Instant;

use chrono::Utc;
use linkfresh::domain::{LinkId, Product, ProductSet};
use linkfresh::store::{self, Intent, LinkSource, LinkSpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let url = args.next().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("fleet.db").display()
        )
    });
    let store = store::connect(&url).await?;
    println!("{} links on {}", n, store.describe());

    let both = ProductSet::parse_list("accounts,transactions")?;
    let mut links: Vec<LinkSpec> = (0..n)
        .map(|i| LinkSpec {
            id: LinkId::parse(&format!("mk_{i:022}")).unwrap(),
            products: if i % 10 == 0 {
                both.union(ProductSet::of(Product::Identity))
            } else {
                both
            },
            cadence: None,
            source: LinkSource::Config,
        })
        .collect();

    let t = Instant::now();
    let r = store.sync_config("rev1", &links, Utc::now()).await?;
    println!("sync_config, all new:        {:>8.2?}  {r:?}", t.elapsed());

    let t = Instant::now();
    let r = store.sync_config("rev1", &links, Utc::now()).await?;
    println!(
        "sync_config, same revision:  {:>8.2?}  skipped={}",
        t.elapsed(),
        r.skipped_same_revision
    );

    let t = Instant::now();
    let r = store.sync_config("rev2", &links, Utc::now()).await?;
    println!(
        "sync_config, nothing changed:{:>8.2?}  unchanged={}",
        t.elapsed(),
        r.unchanged
    );

    for spec in links.iter_mut().step_by(100) {
        spec.products.insert(Product::Investments);
    }
    links.truncate(n - n / 100);
    let t = Instant::now();
    let r = store.sync_config("rev3", &links, Utc::now()).await?;
    println!(
        "sync_config, 1% changed, 1% removed: {:>8.2?}  {r:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let loaded = store.load_links().await?;
    let schedules: usize = loaded.iter().map(|l| l.schedules.len()).sum();
    println!(
        "load_links:                  {:>8.2?}  {} links, {schedules} schedules",
        t.elapsed(),
        loaded.len()
    );

    let now = Utc::now();
    let updates: Vec<_> = loaded
        .iter()
        .flat_map(|l| {
            l.schedules
                .iter()
                .map(|s| (l.id.clone(), s.product, Some(now)))
        })
        .collect();
    let t = Instant::now();
    store.set_next_due(&updates).await?;
    println!(
        "set_next_due, every product: {:>8.2?}  {} rows",
        t.elapsed(),
        updates.len()
    );

    let intents: Vec<Intent> = loaded
        .iter()
        .take(1_000)
        .map(|l| Intent {
            link: l.id.clone(),
            products: l.products,
            at: now,
            claim: None,
        })
        .collect();
    let t = Instant::now();
    store.record_intents(&intents).await?;
    println!("record_intents, 1,000 in one commit: {:>8.2?}", t.elapsed());
    Ok(())
}
