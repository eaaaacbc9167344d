//! `linkfresh plan`: the POSTs the daemon would send over a horizon,
//! computed by the same policy code the daemon runs.
//!
//! The plan is bounded, not streamed: it is refused up front (exit 2) when
//! its estimated size exceeds [`MAX_PLANNED_POSTS`]. Streaming would keep
//! memory flat, but a plan of millions of POSTs is still minutes of output
//! nobody reads, and the simulation's queue and the JSON document's
//! `total_posts`/`products_requested` (stable, before `posts`) need the
//! whole run anyway. The estimate is an upper bound computed from the
//! config alone: per link, the horizon divided by its shortest spacing
//! (window plus margin), plus one first POST.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{ConfigArg, Failure, table};
use crate::config::Config;
use crate::domain::{Product, ProductSet};
use crate::duration::{self, parse_duration_bounded};
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
    /// How far ahead to plan (at most 10 years, and at most about
    /// 1,000,000 POSTs).
    #[arg(long, default_value = "24h", value_parser = parse_duration_bounded)]
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
    /// POSTs and money per day per profile, and what the budget defers.
    pub cost: super::plan_cost::PlanCost,
    /// The POSTs in time order.
    pub posts: Vec<PlannedPostJson>,
}

/// The most POSTs a plan may hold (estimated before planning): a plan of
/// 16 links with 3 s windows over 30 days grew to 2.8 GB.
pub(crate) const MAX_PLANNED_POSTS: u64 = 1_000_000;

/// An upper bound of the POSTs over `horizon`: per link, one first POST plus
/// the horizon divided by its shortest spacing (window plus margin).
pub(crate) fn estimated_posts(config: &Config, horizon: TimeDelta) -> u64 {
    let horizon_ms = u64::try_from(horizon.num_milliseconds()).unwrap_or(0);
    config
        .links
        .iter()
        .map(|l| {
            let shortest = l
                .products
                .iter()
                .map(|p| config.rules.limits.spacing(p).num_milliseconds())
                .min()
                .unwrap_or(i64::MAX);
            let shortest = u64::try_from(shortest).unwrap_or(1).max(1);
            1 + horizon_ms / shortest
        })
        .fold(0u64, u64::saturating_add)
}

/// Runs `plan`.
pub fn run(args: &PlanArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let horizon = duration::to_delta(args.horizon);
    let estimate = estimated_posts(&config, horizon);
    if estimate > MAX_PLANNED_POSTS {
        return Err(Failure::Usage(format!(
            "--horizon {}: the plan would hold up to {estimate} POSTs ({} links); at most {MAX_PLANNED_POSTS} are planned, so give a shorter --horizon",
            humantime::format_duration(args.horizon),
            config.links.len()
        )));
    }
    let now = Utc::now();
    let mut links: Vec<LinkSchedule> = config
        .links
        .iter()
        .map(|l| LinkSchedule {
            hash: link_hash(&l.id),
            first_seen_at: now,
            runnable: true,
            backoff_until: None,
            last_activity_at: None,
            products: l
                .products
                .iter()
                .map(|p| ProductState {
                    cadence: l.cadence_in(&config.rules, p),
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
    let cost = super::plan_cost::cost(&config, &posts, horizon);
    if args.json {
        let doc = PlanJson {
            from: now,
            horizon_seconds: horizon.num_seconds(),
            total_posts: posts.len(),
            products_requested,
            cost,
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
        super::plan_cost::print(&cost);
    }
    Ok(())
}
