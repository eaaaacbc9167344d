//! Commands that read or change the store while the daemon may be running:
//! `status`, `explain`, `pause`, `resume`, `refresh`, `remove`. They go through the
//! same `Store` the daemon uses; the daemon notices changes within a second.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{ConfigArg, Failure, table};
use crate::config::Config;
use crate::daemon::link_specs;
use crate::domain::{LinkId, ProductSet};
use crate::explain::{LinkStatus, budget_usage, fmt_time, link_status, link_status_within};
use crate::store::{self, LinkSource, Store};

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
        .sync_config_numbered(
            config.revision_number,
            &config.revision,
            &link_specs(config.links.clone()),
            Utc::now(),
        )
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

/// The POSTs the budget has spent in its window (empty without a budget).
async fn spent(
    store: &dyn crate::store::Store,
    config: &crate::config::Config,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, u32)>, Failure> {
    match &config.budget {
        Some(b) => Ok(budget_usage(store, &b.budget, now)
            .await
            .context("while counting the POSTs of the budget's window")?),
        None => Ok(Vec::new()),
    }
}

/// Runs `status`.
pub async fn status(args: &StatusArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let store = open(&config).await?;
    let now = Utc::now();
    let usage = spent(&*store, &config, now).await?;
    let budget = config.budget.as_ref().map(|b| (&b.budget, &usage[..]));
    let links: Vec<LinkStatus> = store
        .load_links()
        .await
        .context("while reading links")?
        .iter()
        .map(|r| link_status_within(r, &config.rules, budget, now))
        .collect();
    let fleet = match store.ownership() {
        Some(ownership) => Some(
            ownership
                .view()
                .await
                .context("while reading the replicas")?,
        ),
        None => None,
    };
    if args.json {
        let doc = serde_json::json!({ "generated_at": now, "links": links, "replicas": fleet });
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
    if let Some(fleet) = fleet {
        print!("{}", replicas_table(&fleet));
    }
    Ok(())
}

/// The replicas sharing a PostgreSQL store, their partitions and lease
/// ages, under the links of `status`.
fn replicas_table(fleet: &crate::store::ownership::FleetView) -> String {
    let secs = |ms: i64| format!("{:.1}s", ms as f64 / 1000.0);
    let rows: Vec<Vec<String>> = fleet
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.partitions.len().to_string(),
                crate::store::ownership::ranges(&r.partitions),
                secs(r.heartbeat_age_ms),
                secs(r.lease_left_ms),
            ]
        })
        .collect();
    format!(
        "\nreplicas ({} partitions, unheld: {}):\n{}",
        fleet.partitions,
        crate::store::ownership::ranges(&fleet.unheld),
        table::render(
            &[
                "REPLICA",
                "PARTITIONS",
                "HELD",
                "HEARTBEAT AGE",
                "LEASE LEFT"
            ],
            &rows
        )
    )
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
    let usage = spent(&*store, &config, now).await?;
    let budget = config.budget.as_ref().map(|b| (&b.budget, &usage[..]));
    let status = link_status_within(&rec, &config.rules, budget, now);
    println!(
        "link {} — state {}{}",
        rec.id,
        rec.state,
        rec.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    println!(
        "profile {}; last activity {}{}",
        status.profile,
        status
            .last_activity_at
            .map(fmt_time)
            .unwrap_or_else(|| "never".into()),
        if rec.tags.is_empty() {
            String::new()
        } else {
            format!("; tags {}", rec.tags.join(" "))
        }
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

/// Runs `remove LINK`: the offline counterpart of `DELETE /api/links/{id}`,
/// so an API-managed link can be removed without the daemon (or its admin
/// token). Config-managed links are refused: the next sync would bring them
/// back, so the config file is where they are removed.
pub async fn remove(args: &LinkArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let id = parse_link(&args.link)?;
    let store = open(&config).await?;
    let rec = store
        .load_link(&id)
        .await
        .context("while reading the link")?
        .filter(|r| !r.removed)
        .ok_or_else(|| unknown(&id, &config))?;
    if rec.source == LinkSource::Config {
        return Err(Failure::Usage(format!(
            "link {id} is listed in the configuration file {}; remove it there (and reload) instead",
            config.path.display()
        )));
    }
    if !store
        .remove_link(&id, Utc::now())
        .await
        .context("while removing the link")?
    {
        return Err(unknown(&id, &config));
    }
    println!("{id}: removed ({} link; history kept)", rec.source.as_str());
    Ok(())
}

/// Runs `touch LINK`: stores "the user is active now" in the store, as
/// `POST /api/links/{id}/activity` does; a running daemon picks it up within
/// a second (its change poll). Always written: an operator's touch is rare.
pub async fn touch(args: &LinkArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let id = parse_link(&args.link)?;
    let store = open(&config).await?;
    let now = Utc::now();
    match store
        .record_activity(&id, now, chrono::TimeDelta::zero())
        .await
        .context("while updating the link")?
    {
        crate::store::Activity::UnknownLink => return Err(unknown(&id, &config)),
        crate::store::Activity::Recorded | crate::store::Activity::Recent => {}
    }
    let rec = store
        .load_link(&id)
        .await
        .context("while reading the link")?
        .ok_or_else(|| unknown(&id, &config))?;
    let status = link_status(&rec, &config.rules, now);
    println!("{id}: active now (profile {})", status.profile);
    for p in &status.products {
        println!("  {:<16} {}", p.product.as_str(), p.why_text);
    }
    Ok(())
}
