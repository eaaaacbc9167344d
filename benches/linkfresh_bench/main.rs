//! `linkfresh-bench`: end-to-end benchmarks of the daemon against the MoneyKit
//! simulator, each as a separate process on loopback, exactly as deployed:
//!
//! ```text
//! cargo build --release
//! cargo run --release --bin linkfresh-bench -- SCENARIO [options]
//! ```
//!
//! Scenarios: `fleet-1m`, `throughput`, `lateness`, `efficiency`, `demand`,
//! `scaleout` (needs `--pg-url`), `all` (every scenario but `scaleout`).
//! Every scenario prints a table (figure, value, target, verdict) and one JSON
//! line starting with `{"scenario":` for scripts. See `benches/PERFORMANCE.md`.
//!
//! The harness starts `linkfresh sim --listen ADDR --config FILE` (the `[sim]`
//! table) and `linkfresh run --config FILE` (the same file), both from the
//! directory of this binary, so build both with `--release` first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use linkfresh::domain::{LinkId, Product, ProductSet};
use linkfresh::moneykit::{ClientConfig, MoneyKit, RefreshOutcome};
use linkfresh::secret::Secret;

mod demand;
mod efficiency;
mod events;
mod fleet;
mod helpers;
mod lateness;
mod pgstat;
mod procs;
mod report;
mod scaleout;
mod scaleout_phase;
mod setup;
mod throughput;

use demand::*;
use efficiency::*;
use events::*;
use fleet::*;
use helpers::*;
use lateness::*;
use pgstat::*;
use procs::*;
use report::*;
use scaleout::*;
use scaleout_phase::*;
use setup::*;
use throughput::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1,000,000 links x 4 products: check time, start to first POST, peak RSS, store size.
    #[value(name = "fleet-1m")]
    Fleet1m,
    /// Sustained durable POSTs/s with the fleet always due, against a bare HTTP loop.
    Throughput,
    /// 100,000 links on 60 s windows: send time minus due time.
    Lateness,
    /// 1,000 links x 4 products on compressed windows, against the Python SDK loop.
    Efficiency,
    /// The same fleet on 1 SQLite daemon, 1 and 3 PostgreSQL replicas, then
    /// a failover (kill -9 one of three, start a fourth); needs `--pg-url`.
    Scaleout,
    /// 10,000 links, demand from the app (activity, refresh on login) vs
    /// everyone hourly vs a budget of half the demand; 100 hour-equivalents.
    Demand,
    /// Every scenario in turn, except `scaleout` (it needs a PostgreSQL server).
    All,
}

/// End-to-end benchmarks of linkfresh against its MoneyKit simulator.
#[derive(Debug, Parser)]
#[command(name = "linkfresh-bench")]
struct Args {
    /// Which scenario to run.
    scenario: Scenario,
    /// Fleet size (default per scenario: 1,000,000 / 20,000 / 100,000 / 1,000 / 10,000).
    #[arg(long)]
    links: Option<usize>,
    /// Measured duration in seconds (default per scenario: 30 / 60 / 180 / 300;
    /// demand: 100 hour-equivalents).
    #[arg(long)]
    duration: Option<u64>,
    /// The hourly window in seconds (default per scenario: 3600 / 1 / 60 / 6 / 6;
    /// scaleout 1);
    /// daily products get 24 times this.
    #[arg(long)]
    window: Option<f64>,
    /// `max_in_flight` of the daemon and the concurrency of the bare loop.
    #[arg(long, default_value_t = 64)]
    in_flight: u32,
    /// Seconds of the bare HTTP loop (throughput).
    #[arg(long, default_value_t = 20)]
    bare_seconds: u64,
    /// Baseline period in seconds (efficiency; default: the hourly window).
    #[arg(long)]
    baseline_period: Option<f64>,
    /// `RUST_LOG` of the daemon (its default `info` logs one line per POST).
    #[arg(long, default_value = "warn")]
    daemon_log: String,
    /// Work directory (kept); default: a fresh temporary one, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Outbound events per POST (throughput, lateness): 0 = `[events]` off;
    /// e.g. 0.01 for 1 % (see `events.rs`).
    #[arg(long, default_value_t = 0.0)]
    events_rate: f64,
    /// Python interpreter for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// PostgreSQL server for `scaleout` (a user allowed to create
    /// databases); each phase runs on a fresh database on it, dropped at
    /// the end. Its query (`sslmode=...`) is passed on to the daemons as it is.
    #[arg(long)]
    pg_url: Option<String>,
    /// Phases of `scaleout`, comma-separated: sqlite, pg1, pg3, failover,
    /// rate (3 replicas held to `max_requests_per_second = 100`).
    #[arg(long, default_value = "sqlite,pg1,pg3,failover,rate")]
    phases: String,
    /// Fleet size of `scaleout`'s failover phase: its target (lease + one
    /// window) assumes replicas that keep up with their links; on a fleet
    /// they cannot (20,000 links at 1 s windows) every link already waits
    /// a cycle of a few seconds, which the gap would measure instead.
    #[arg(long, default_value_t = 1000)]
    failover_links: usize,
    /// The `linkfresh` binary to run (default: the one next to this binary),
    /// so that one harness can measure an older build side by side.
    #[arg(long)]
    linkfresh_bin: Option<PathBuf>,
}

const CLIENT_ID: &str = "bench_client";
const CLIENT_SECRET: &str = "bench_secret";
const ALL4: &str = "accounts,transactions,account_numbers,identity";

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(bin) = &args.linkfresh_bin {
        set_linkfresh_bin(bin.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Fleet1m,
            Scenario::Throughput,
            Scenario::Lateness,
            Scenario::Efficiency,
            Scenario::Demand,
        ],
        s => vec![s],
    };
    for s in scenarios {
        let name = format!("{s:?}").to_lowercase();
        let (dir, keep) = match &args.dir {
            Some(d) => (d.join(&name), true),
            None => (
                std::env::temp_dir().join(format!("linkfresh-bench-{}-{name}", std::process::id())),
                false,
            ),
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let report = rt.block_on(async {
            match s {
                Scenario::Fleet1m => fleet(&args, &dir).await,
                Scenario::Throughput => throughput(&args, &dir).await,
                Scenario::Lateness => lateness(&args, &dir).await,
                Scenario::Efficiency => efficiency(&args, &dir).await,
                Scenario::Scaleout => scaleout(&args, &dir).await,
                Scenario::Demand => demand(&args, &dir).await,
                Scenario::All => unreachable!(),
            }
        });
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        report?.print();
    }
    Ok(())
}
