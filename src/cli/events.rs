//! `linkfresh events`: the outbox as an operator sees it — pending events
//! with their ages and last errors, `--failed` for those given up on,
//! `--replay ID` to queue a failed one again, `--enable` to send again
//! after the receiver answered 410 Gone.

use anyhow::Context;
use chrono::Utc;

use super::{ConfigArg, Failure};
use crate::store::{self, Store};

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// List the failed events (given up after `[events] retry_for`) instead
    /// of the pending ones.
    #[arg(long)]
    failed: bool,
    /// Queue the failed event with this id again (same id: receivers that
    /// saw it already drop it).
    #[arg(long, value_name = "ID", conflicts_with_all = ["failed", "enable"])]
    replay: Option<String>,
    /// Send again after the receiver answered 410 Gone.
    #[arg(long)]
    enable: bool,
    /// How many events to list.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    config: ConfigArg,
}

/// Runs `events`.
pub async fn run(args: &EventsArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let store = store::connect(&config.database.url)
        .await
        .with_context(|| {
            format!(
                "while opening the store {}",
                super::redact_url(&config.database.url)
            )
        })?;
    if let Some(id) = &args.replay {
        if !store
            .replay_event(id, Utc::now())
            .await
            .map_err(anyhow::Error::from)?
        {
            return Err(Failure::Usage(format!(
                "no failed event {id}; `linkfresh events --failed` lists them"
            )));
        }
        println!("event {id} queued again");
        return Ok(());
    }
    if args.enable {
        if !store
            .disable_event_endpoint(None)
            .await
            .map_err(anyhow::Error::from)?
        {
            return Err(Failure::Usage(
                "no events endpoint in the store: [events] is not configured (or the daemon has not run with it yet)".into(),
            ));
        }
        println!("events endpoint enabled");
        return Ok(());
    }
    list(&*store, args.failed, args.limit).await
}

async fn list(store: &dyn Store, failed: bool, limit: u32) -> Result<(), Failure> {
    match store.event_endpoint().await.map_err(anyhow::Error::from)? {
        None => println!("events: not configured (no [events] url when the daemon last started)"),
        Some(ep) => match ep.disabled {
            Some(why) => println!(
                "events endpoint {}: DISABLED ({why}); `linkfresh events --enable` to send again",
                super::redact_url(&ep.url)
            ),
            None => println!("events endpoint {}: enabled", super::redact_url(&ep.url)),
        },
    }
    let events = store
        .list_events(failed, limit)
        .await
        .map_err(anyhow::Error::from)?;
    let what = if failed { "failed" } else { "pending" };
    if events.is_empty() {
        println!("no {what} events");
        return Ok(());
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = events
        .into_iter()
        .map(|e| {
            let age =
                std::time::Duration::from_secs((now - e.created_at).num_seconds().max(0) as u64);
            vec![
                e.id,
                e.kind,
                e.link,
                humantime::format_duration(age).to_string(),
                e.attempts.to_string(),
                e.last_error.unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table::render(
            &["ID", "TYPE", "LINK", "AGE", "ATTEMPTS", "LAST ERROR"],
            &rows
        )
    );
    Ok(())
}
