//! `linkfresh demo`: the simulator and the daemon in one process, with
//! windows of seconds and a few links that misbehave, printing one line per
//! request so a newcomer sees what linkfresh does without credentials.
//!
//! Outbound events (issue 18) are on: with `--events URL` they go to the
//! user's receiver (signed with [`DEMO_SECRET`], which the demo prints and
//! `examples/events_receiver.py` uses by default); without it a built-in
//! receiver verifies and prints each one, so the `link.needs_user_action`
//! of the demo's broken link shows up seconds after its 422.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Failure;

#[path = "demo_receiver.rs"]
mod receiver;
use crate::app::{Application, Options};
use crate::config;
use crate::daemon::Activity;
use crate::domain::{LinkId, ProductSet};
use crate::shutdown::shutdown_signal;
use crate::sim::{Faults, SimConfig, SimLink, SimLinkState, Windows};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::duration::parse_duration_bounded)]
    duration: Option<Duration>,
    /// Send the demo's outbound events to this URL (signed with the demo
    /// secret it prints) instead of printing them.
    #[arg(long = "events", value_name = "URL")]
    events: Option<String>,
}

/// The signing secret of the demo's events: `whsec_` and the base64 of
/// `linkfresh-demo-secret-do-not-use`. Public on purpose: only for the demo.
pub const DEMO_SECRET: &str = "whsec_bGlua2ZyZXNoLWRlbW8tc2VjcmV0LWRvLW5vdC11c2U=";

const HEALTHY: [&str; 5] = [
    "mk_demo_alice",
    "mk_demo_bob",
    "mk_demo_carol",
    "mk_demo_dave",
    "mk_demo_erin",
];

fn sim_config() -> SimConfig {
    let id = |s: &str| LinkId::parse(s).expect("demo ids are valid");
    let mut links: Vec<SimLink> = HEALTHY.iter().map(|s| SimLink::healthy(id(s))).collect();
    links.push(SimLink::healthy(id("mk_demo_deleted")).with_state(SimLinkState::Deleted));
    links.push(SimLink::healthy(id("mk_demo_missing")).with_state(SimLinkState::NotFound));
    let mut reconnect =
        SimLink::healthy(id("mk_demo_reconnect")).with_state(SimLinkState::NeedsUserAction);
    reconnect.link_error_code = Some("auth_expired".into());
    links.push(reconnect);
    let mut no_identity = SimLink::healthy(id("mk_demo_no_identity"));
    no_identity.forbidden_products = ProductSet::parse_list("identity").expect("valid");
    links.push(no_identity);
    SimConfig {
        token_ttl: Duration::from_secs(20),
        windows: Windows {
            accounts: Duration::from_secs(6),
            transactions: Duration::from_secs(6),
            account_numbers: Duration::from_secs(30),
            identity: Duration::from_secs(30),
            ..Windows::uniform(Duration::from_secs(30))
        },
        links,
        faults: Faults {
            rate_429: 0.03,
            retry_after: Some(Duration::from_secs(4)),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

fn daemon_toml(base_url: &str, db: &std::path::Path, sim: &SimConfig, events: &str) -> String {
    let mut links = String::new();
    for l in &sim.links {
        links += &format!(
            "[[links]]\nid = \"{}\"\nproducts = [\"accounts\", \"transactions\", \"account_numbers\", \"identity\"]\n",
            l.id
        );
    }
    format!(
        r#"[moneykit]
base_url = "{base_url}"
client_id = "{id}"
client_secret = "{secret}"
max_requests_per_second = 20
[database]
url = "sqlite://{db}"
[limits]
accounts = "6s"
transactions = "6s"
account_numbers = "30s"
identity = "30s"
investments = "30s"
enrichment = "30s"
margin = "300ms"
[schedule]
coalesce = "1s"
backoff_base = "2s"
backoff_max = "12s"
first_spread = "3s"
[server]
listen = "127.0.0.1:0"
[events]
url = "{events}"
secret = "{DEMO_SECRET}"
stale_after = {{ transactions = "20s" }}
backoff_base = "1s"
backoff_max = "5s"
{links}"#,
        id = sim.client_id,
        secret = sim.client_secret,
        db = db.display(),
    )
}

fn print_line(a: &Activity) {
    let now = chrono::Utc::now().format("%H:%M:%S");
    let next = match a.next_due {
        Some(t) => format!("next due {}", t.format("%H:%M:%S")),
        None => format!("{} (not refreshed)", a.state),
    };
    let products = if a.products.is_empty() {
        "(GET /links/{id})".to_owned()
    } else {
        a.products.clone()
    };
    let detail = a
        .detail
        .as_deref()
        .map(|d| format!(" — {d}"))
        .unwrap_or_default();
    println!(
        "{now}  {:<22} {:<48} {:<20} {next}{detail}",
        a.link.as_str(),
        products,
        a.outcome
    );
}

/// Runs `demo`.
pub async fn run(args: &DemoArgs) -> Result<(), Failure> {
    let sim_cfg = sim_config();
    let sim = crate::sim::spawn(sim_cfg.clone()).await;
    let (events_url, receiver) = match &args.events {
        Some(url) => (url.clone(), None),
        None => {
            let (url, task) = receiver::spawn()
                .await
                .map_err(|e| anyhow::anyhow!("cannot start the demo's events receiver: {e}"))?;
            (url, Some(task))
        }
    };
    let dir = std::env::temp_dir().join(format!("linkfresh-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let path = dir.join("linkfresh.toml");
    std::fs::write(
        &path,
        daemon_toml(&sim.base_url(), &dir.join("demo.db"), &sim_cfg, &events_url),
    )
    .map_err(anyhow::Error::from)?;
    let config = config::load(&path)?;
    println!(
        "linkfresh demo: a MoneyKit simulator at {} and the daemon against it.",
        sim.base_url()
    );
    println!(
        "Windows: accounts/transactions 6 s, account_numbers/identity 30 s. Links: 5 healthy, one deleted (410),"
    );
    println!(
        "one unknown (404), one needing the user (422), one without identity permission (403); some random 429s."
    );
    match &args.events {
        Some(url) => println!(
            "Events go to {url}, signed with secret {DEMO_SECRET} (examples/events_receiver.py uses it)."
        ),
        None => println!(
            "Events (EVENT lines) go to a built-in receiver that verifies and prints them; --events URL sends them to yours."
        ),
    }
    println!("Press Ctrl-C to stop.\n");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Application::build(
        config,
        Options {
            activity: Some(tx),
            ..Options::default()
        },
    )
    .await?;
    println!("daemon metrics at http://{}/metrics\n", app.local_addr());
    let cancel = tokio_util::sync::CancellationToken::new();
    let stopper = cancel.clone();
    let duration = args.duration;
    tokio::spawn(async move {
        match duration {
            Some(d) => {
                tokio::select! { () = shutdown_signal() => {}, () = tokio::time::sleep(d) => {} }
            }
            None => shutdown_signal().await,
        }
        stopper.cancel();
    });
    let printer = tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            print_line(&a);
        }
    });
    let result = app.run_until_stopped(cancel).await;
    let _ = printer.await;
    if let Some(task) = receiver {
        task.abort();
    }
    let stats = sim.stats();
    println!(
        "\nsimulator saw: {} refresh POSTs, {} requests inside a window, {} before a Retry-After ended, {} tokens issued",
        stats.total("refresh"),
        stats.violations,
        stats.retry_after_violations,
        stats.tokens_issued
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(Failure::from)
}
