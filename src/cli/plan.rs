//! `linkfresh plan`: the POSTs the daemon would send over a horizon,
//! computed by the same policy code the daemon runs.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{ConfigArg, Failure, table};
use crate::domain::{Product, ProductSet};
use crate::policy::phase::link_hash;
use crate::policy::plan::simulate;
use crate::policy::{LinkSchedule, ProductState};

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON (stable; see README) instead of a table.
    #[arg(long)]
    json: bool,
    /// How far ahead to plan.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    horizon: std::time::Duration,
}

/// One planned POST, as printed by `plan --json`.
#[derive(Debug, Serialize)]
pub struct PlannedPostJson {
    /// Send time.
    pub at: DateTime<Utc>,
    /// Link id.
    pub link: String,
    /// Products in the POST.
    pub products: ProductSet,
    /// Earliest due time among them.
    pub due_at: DateTime<Utc>,
}

/// The whole `plan --json` document.
#[derive(Debug, Serialize)]
pub struct PlanJson {
    /// Start of the plan.
    pub from: DateTime<Utc>,
    /// Horizon in seconds.
    pub horizon_seconds: i64,
    /// Number of POSTs.
    pub total_posts: usize,
    /// Product refreshes per product.
    pub products_requested: std::collections::BTreeMap<Product, usize>,
    /// The POSTs in time order.
    pub posts: Vec<PlannedPostJson>,
}

/// Runs `plan`.
pub fn run(args: &PlanArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let horizon = TimeDelta::from_std(args.horizon)
        .map_err(|_| Failure::Usage("--horizon is too long".into()))?;
    let now = Utc::now();
    let mut links: Vec<LinkSchedule> = config
        .links
        .iter()
        .map(|l| LinkSchedule {
            hash: link_hash(&l.id),
            first_seen_at: now,
            runnable: true,
            backoff_until: None,
            products: l
                .products
                .iter()
                .map(|p| ProductState {
                    cadence: l.cadence_of(p),
                    ..ProductState::new(p)
                })
                .collect(),
        })
        .collect();
    let posts = simulate(&mut links, &config.rules, now, horizon);
    let mut products_requested = std::collections::BTreeMap::new();
    for post in &posts {
        for p in post.products.iter() {
            *products_requested.entry(p).or_insert(0) += 1;
        }
    }
    if args.json {
        let doc = PlanJson {
            from: now,
            horizon_seconds: horizon.num_seconds(),
            total_posts: posts.len(),
            products_requested,
            posts: posts
                .iter()
                .map(|p| PlannedPostJson {
                    at: p.at,
                    link: config.links[p.link].id.to_string(),
                    products: p.products,
                    due_at: p.due_at,
                })
                .collect(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?
        );
    } else {
        let rows: Vec<Vec<String>> = posts
            .iter()
            .map(|p| {
                vec![
                    p.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    config.links[p.link].id.to_string(),
                    p.products.to_list(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["AT (UTC)", "LINK", "PRODUCTS"], &rows)
        );
        println!(
            "{} POSTs over {}",
            posts.len(),
            humantime::format_duration(args.horizon)
        );
    }
    Ok(())
}
