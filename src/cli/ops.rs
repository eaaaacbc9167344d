//! Commands that read or change the store while the daemon may be running:
//! `status`, `explain`, `pause`, `resume`, `refresh`. They go through the
//! same `Store` the daemon uses; the daemon notices changes within a second.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ConfigArg, Failure, table};
use crate::config::Config;
use crate::daemon::link_specs;
use crate::daemon::table::Entry;
use crate::domain::{LinkId, LinkState, Product, ProductSet};
use crate::policy::{Evaluation, Rules, Why, evaluate};
use crate::store::{self, LinkRecord, Store};

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON (stable; see README) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `explain`, `pause` and `resume`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The link id.
    link: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// Arguments of `refresh`.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// The link id.
    link: String,
    /// Products to refresh (comma separated; default: all of the link's).
    #[arg(long, value_name = "a,b")]
    products: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

/// Opens the store and makes sure the configured links are in it (an
/// idempotent sync; a no-op when the daemon already synced this revision).
async fn open(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    let store = store::connect(&config.database.url)
        .await
        .with_context(|| {
            format!(
                "while opening the store {}",
                super::redact_url(&config.database.url)
            )
        })?;
    store
        .sync_config(&config.revision, &link_specs(config), Utc::now())
        .await
        .context("while syncing the configured links into the store")?;
    Ok(store)
}

fn parse_link(raw: &str) -> Result<LinkId, Failure> {
    LinkId::parse(raw).map_err(|e| Failure::Usage(e.to_string()))
}

fn unknown(id: &LinkId, config: &Config) -> Failure {
    Failure::Usage(format!(
        "no link {id} in the store; it is neither in {} nor added through the API",
        config.path.display()
    ))
}

/// One product's line in `status --json`.
#[derive(Debug, Serialize)]
pub struct ProductStatus {
    /// The product.
    pub product: Product,
    /// Send time of our last request that may have reached MoneyKit.
    pub last_requested_at: Option<DateTime<Utc>>,
    /// Latest refreshed/attempted time the server reported.
    pub server_seen_at: Option<DateTime<Utc>>,
    /// End of its window.
    pub window_end: Option<DateTime<Utc>>,
    /// When it is due (None: parked or inactive).
    pub next_due_at: Option<DateTime<Utc>>,
    /// Why it is or is not sent now (`kind`, `until`, `with`).
    pub why: Why,
    /// The same, in words.
    pub why_text: String,
}

/// One link in `status --json`.
#[derive(Debug, Serialize)]
pub struct LinkStatus {
    /// The link id.
    pub link: LinkId,
    /// Its state.
    pub state: LinkState,
    /// Why it is parked or paused, if it is.
    pub reason: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// Link-level backoff end.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Per product.
    pub products: Vec<ProductStatus>,
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The reason in words, as `status` and `explain` print it.
pub fn why_text(why: &Why, state: LinkState, reason: Option<&str>, parked: Option<&str>) -> String {
    match why {
        Why::DueNow => "due now".into(),
        Why::Window { until } => format!("window until {}", fmt_time(*until)),
        Why::Cadence { until } => format!("cadence (every/cron) until {}", fmt_time(*until)),
        Why::FirstPhase { until } => format!("first request phased to {}", fmt_time(*until)),
        Why::Backoff { until } => format!("backoff after rate_limit until {}", fmt_time(*until)),
        Why::LinkBackoff { until } => format!("backoff after failures until {}", fmt_time(*until)),
        Why::Coalescing { with, until } => {
            format!("coalescing with {with} until {}", fmt_time(*until))
        }
        Why::RidingAlong { until } => {
            format!("riding along with the next POST at {}", fmt_time(*until))
        }
        Why::Parked => format!("parked: {}", parked.unwrap_or("forbidden")),
        Why::Inactive => match state {
            LinkState::Active => "removed from the configuration".into(),
            LinkState::Paused => "paused by an operator".into(),
            _ => format!("parked: {}", reason.unwrap_or(state.as_str())),
        },
    }
}

/// The policy's view of one stored link (`explain`, `status`, the fleet page
/// and the admin API all show this, so they never disagree).
pub fn link_status(rec: &LinkRecord, rules: &Rules, now: DateTime<Utc>) -> LinkStatus {
    let entry = Entry::from_record(rec);
    let Evaluation { products, .. } = evaluate(&entry.schedule, rules, now);
    LinkStatus {
        link: rec.id.clone(),
        state: rec.state,
        reason: rec.reason.clone(),
        failures: rec.failures,
        backoff_until: rec.backoff_until,
        products: products
            .iter()
            .zip(&entry.schedule.products)
            .map(|(plan, state)| {
                let parked = rec
                    .schedules
                    .iter()
                    .find(|s| s.product == plan.product)
                    .and_then(|s| s.parked_reason.as_deref());
                ProductStatus {
                    product: plan.product,
                    last_requested_at: state.last_requested_at,
                    server_seen_at: state.server_seen_at,
                    window_end: plan.window_end,
                    next_due_at: plan.due_at,
                    why: plan.why,
                    why_text: why_text(&plan.why, rec.state, rec.reason.as_deref(), parked),
                }
            })
            .collect(),
    }
}

/// Runs `status`.
pub async fn status(args: &StatusArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let store = open(&config).await?;
    let now = Utc::now();
    let links: Vec<LinkStatus> = store
        .load_links()
        .await
        .context("while reading links")?
        .iter()
        .map(|r| link_status(r, &config.rules, now))
        .collect();
    if args.json {
        let doc = serde_json::json!({ "generated_at": now, "links": links });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    let opt = |t: Option<DateTime<Utc>>| t.map(fmt_time).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = links
        .iter()
        .flat_map(|l| {
            l.products.iter().map(move |p| {
                vec![
                    l.link.to_string(),
                    l.state.to_string(),
                    p.product.to_string(),
                    opt(p.last_requested_at),
                    opt(p.next_due_at),
                    p.why_text.clone(),
                ]
            })
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "LINK",
                "STATE",
                "PRODUCT",
                "LAST REQUESTED",
                "NEXT DUE",
                "WHY"
            ],
            &rows
        )
    );
    Ok(())
}

/// Runs `explain LINK`.
pub async fn explain(args: &LinkArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let id = parse_link(&args.link)?;
    let store = open(&config).await?;
    let rec = store
        .load_link(&id)
        .await
        .context("while reading the link")?
        .ok_or_else(|| unknown(&id, &config))?;
    let now = Utc::now();
    let status = link_status(&rec, &config.rules, now);
    println!(
        "link {} — state {}{}",
        rec.id,
        rec.state,
        rec.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    if rec.removed {
        println!("removed from the configuration: not refreshed (history kept)");
    }
    if let Some(b) = rec.backoff_until.filter(|b| *b > now) {
        println!(
            "link backoff until {} after {} consecutive failures",
            fmt_time(b),
            rec.failures
        );
    }
    for p in &status.products {
        let last = p
            .last_requested_at
            .map(fmt_time)
            .unwrap_or_else(|| "never".into());
        let due = p.next_due_at.map(fmt_time).unwrap_or_else(|| "-".into());
        println!(
            "  {:<16} last requested {last}; due {due}; {}",
            p.product.as_str(),
            p.why_text
        );
    }
    let attempts = store
        .attempts(&id, 5)
        .await
        .context("while reading history")?;
    if !attempts.is_empty() {
        println!("recent attempts:");
        for a in attempts {
            println!(
                "  {}  {:<40} {}{}",
                fmt_time(a.intent_at),
                a.products.to_list(),
                a.outcome
                    .as_deref()
                    .unwrap_or("no outcome (counted as sent)"),
                a.detail.map(|d| format!(" — {d}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Runs `pause LINK` (`paused = true`) or `resume LINK`.
pub async fn pause(args: &LinkArgs, paused: bool) -> Result<(), Failure> {
    let config = args.config.load()?;
    let id = parse_link(&args.link)?;
    let store = open(&config).await?;
    if !store
        .set_paused(&id, paused, Utc::now())
        .await
        .context("while updating the link")?
    {
        return Err(unknown(&id, &config));
    }
    println!("{id}: {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

/// Runs `refresh LINK [--products]`.
pub async fn refresh(args: &RefreshArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let id = parse_link(&args.link)?;
    let products = match &args.products {
        Some(list) => {
            ProductSet::parse_list(list).map_err(|e| Failure::Usage(format!("--products: {e}")))?
        }
        None => ProductSet::EMPTY,
    };
    let store = open(&config).await?;
    let rec = store
        .load_link(&id)
        .await
        .context("while reading the link")?
        .ok_or_else(|| unknown(&id, &config))?;
    let not_configured: ProductSet = products
        .iter()
        .filter(|p| !rec.products.contains(*p))
        .collect();
    if !not_configured.is_empty() {
        return Err(Failure::Usage(format!(
            "--products: {not_configured} not among {id}'s products ({})",
            rec.products
        )));
    }
    store
        .request_refresh(&id, products, Utc::now())
        .await
        .context("while updating the link")?;
    let rec = store
        .load_link(&id)
        .await
        .context("while reading the link")?
        .ok_or_else(|| unknown(&id, &config))?;
    let status = link_status(&rec, &config.rules, Utc::now());
    for p in status
        .products
        .iter()
        .filter(|p| products.is_empty() || products.contains(p.product))
    {
        let when = p
            .window_end
            .filter(|w| *w > Utc::now())
            .map(fmt_time)
            .unwrap_or_else(|| "now".into());
        println!(
            "{id} {}: refresh requested; goes out {when} (the window allows no sooner)",
            p.product
        );
    }
    Ok(())
}
