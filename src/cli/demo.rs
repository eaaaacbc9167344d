//! `linkfresh demo`: the simulator and the daemon in one process, with
//! windows of seconds and a few links that misbehave, printing one line per
//! request so a newcomer sees what linkfresh does without credentials.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Failure;
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
}

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

fn daemon_toml(base_url: &str, db: &std::path::Path, sim: &SimConfig) -> String {
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
    let dir = std::env::temp_dir().join(format!("linkfresh-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let path = dir.join("linkfresh.toml");
    std::fs::write(
        &path,
        daemon_toml(&sim.base_url(), &dir.join("demo.db"), &sim_cfg),
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
