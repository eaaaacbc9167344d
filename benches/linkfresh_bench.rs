//! `linkfresh-bench`: end-to-end benchmarks of the daemon against the MoneyKit
//! simulator, each as a separate process on loopback, exactly as deployed:
//!
//! ```text
//! cargo build --release
//! cargo run --release --bin linkfresh-bench -- SCENARIO [options]
//! ```
//!
//! Scenarios: `fleet-1m`, `throughput`, `lateness`, `efficiency`, `all`.
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
    /// Every scenario in turn.
    All,
}

/// End-to-end benchmarks of linkfresh against its MoneyKit simulator.
#[derive(Debug, Parser)]
#[command(name = "linkfresh-bench")]
struct Args {
    /// Which scenario to run.
    scenario: Scenario,
    /// Fleet size (default per scenario: 1,000,000 / 20,000 / 100,000 / 1,000).
    #[arg(long)]
    links: Option<usize>,
    /// Measured duration in seconds (default per scenario: 30 / 60 / 180 / 300).
    #[arg(long)]
    duration: Option<u64>,
    /// The hourly window in seconds (default per scenario: 3600 / 1 / 60 / 6);
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
    /// Python interpreter for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
}

const CLIENT_ID: &str = "bench_client";
const CLIENT_SECRET: &str = "bench_secret";
const ALL4: &str = "accounts,transactions,account_numbers,identity";

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Fleet1m,
            Scenario::Throughput,
            Scenario::Lateness,
            Scenario::Efficiency,
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

// ---------------------------------------------------------------- reporting

struct Report {
    scenario: &'static str,
    rows: Vec<(String, String, String, Option<bool>)>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn new(scenario: &'static str) -> Self {
        let mut json = serde_json::Map::new();
        json.insert("scenario".into(), json!(scenario));
        json.insert("machine".into(), json!(machine()));
        Self {
            scenario,
            rows: Vec::new(),
            json,
        }
    }

    /// A figure with an optional target and verdict; `key` also goes into the JSON.
    fn row(
        &mut self,
        key: &str,
        label: &str,
        value: Value,
        shown: String,
        target: &str,
        ok: Option<bool>,
    ) {
        self.json.insert(key.into(), value);
        if let Some(ok) = ok {
            self.json.insert(format!("{key}_ok"), json!(ok));
        }
        self.rows.push((label.into(), shown, target.into(), ok));
    }

    fn info(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let w2 = self
            .rows
            .iter()
            .map(|r| r.2.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!("\n== {} ==\n", self.scenario);
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:<w2$}  verdict",
            "figure", "value", "target"
        );
        for (label, value, target, ok) in &self.rows {
            let verdict = match ok {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "",
            };
            let _ = writeln!(out, "{label:<w0$}  {value:>w1$}  {target:<w2$}  {verdict}");
        }
        print!("{out}");
        println!("{}", Value::Object(self.json.clone()));
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} cpus, {mem_gib:.0} GiB, {model}")
}

// ---------------------------------------------------------------- processes

fn linkfresh_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("linkfresh");
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` first",
            bin.display()
        );
    }
    Ok(bin)
}

fn free_addr() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .stdout(std::fs::File::create(dir.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(&log)?)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            child,
            name: name.into(),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait up to `limit`; true if it exited by itself.
    fn stop(&mut self, limit: Duration) -> bool {
        if !self.alive() {
            return true;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {limit:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// User+system CPU seconds a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn store_bytes(db: &Path) -> u64 {
    let s = db.to_string_lossy();
    file_size(db)
        + file_size(Path::new(&format!("{s}-wal")))
        + file_size(Path::new(&format!("{s}-shm")))
}

// ---------------------------------------------------------------- configuration

/// Windows and schedule scaled from MoneyKit's real ones: `hour` seconds
/// stand for an hour (daily products: 24 times that).
struct Setup {
    hour: f64,
    links: usize,
    products: &'static str,
    prefix: &'static str,
    max_rps: u32,
    in_flight: u32,
    margin_ms: u64,
    coalesce_ms: u64,
    first_spread_ms: u64,
    list_sim_links: bool,
}

fn ms(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round().max(1.0) as u64)
}

fn link_id(prefix: &str, i: usize) -> String {
    format!("{prefix}_{i:07}")
}

/// Writes `links.txt` and `linkfresh.toml` (daemon config plus `[sim]`).
fn write_config(
    dir: &Path,
    s: &Setup,
    base_url: &str,
    listen: std::net::SocketAddr,
) -> Result<PathBuf> {
    let mut links = String::with_capacity(s.links * 64);
    for i in 0..s.links {
        links.push_str(&link_id(s.prefix, i));
        links.push(' ');
        links.push_str(s.products);
        links.push('\n');
    }
    std::fs::write(dir.join("links.txt"), links)?;
    let (h, d) = (ms(s.hour), ms(s.hour * 24.0));
    let db = dir.join("linkfresh.db");
    let mut cfg = format!(
        r#"links_file = "links.txt"

[moneykit]
base_url = "{base_url}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
request_timeout = "10s"
max_requests_per_second = {max_rps}
max_in_flight = {in_flight}

[database]
url = "sqlite://{db}"

[limits]
accounts = "{h}"
transactions = "{h}"
account_numbers = "{d}"
identity = "{d}"
investments = "{d}"
enrichment = "{d}"
margin = "{margin}ms"

[schedule]
coalesce = "{coalesce}ms"
backoff_base = "{backoff_base}"
backoff_max = "{backoff_max}"
first_spread = "{first_spread}ms"

[server]
listen = "{listen}"

[sim]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
token_ttl = "1h"

[sim.windows]
accounts = "{h}"
transactions = "{h}"
account_numbers = "{d}"
identity = "{d}"
investments = "{d}"
enrichment = "{d}"
"#,
        max_rps = s.max_rps,
        in_flight = s.in_flight,
        db = db.display(),
        margin = s.margin_ms,
        coalesce = s.coalesce_ms,
        backoff_base = ms(s.hour / 60.0),
        backoff_max = ms(s.hour * 6.0),
        first_spread = s.first_spread_ms,
    );
    if s.list_sim_links {
        for i in 0..s.links {
            let _ = write!(cfg, "\n[[sim.links]]\nid = \"{}\"\n", link_id(s.prefix, i));
        }
    }
    let path = dir.join("linkfresh.toml");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

fn start_daemon(dir: &Path, config: &Path, log: &str, name: &str) -> Result<Proc> {
    let mut cmd = Command::new(linkfresh_bin()?);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", log);
    Proc::spawn(name, cmd, dir)
}

// ---------------------------------------------------------------- HTTP helpers

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

async fn get_json(c: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(c.get(url).send().await?.error_for_status()?.json().await?)
}

async fn wait_up(c: &reqwest::Client, url: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = c.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{url} did not answer within {limit:?}")
}

/// `requests[endpoint][status]` of `/_sim/stats`.
fn count(stats: &Value, endpoint: &str, status: Option<&str>) -> u64 {
    let Some(m) = stats["requests"][endpoint].as_object() else {
        return 0;
    };
    m.iter()
        .filter(|(k, _)| status.is_none_or(|s| s == k.as_str()))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

fn sum_map(v: &Value) -> u64 {
    v.as_object()
        .map_or(0, |m| m.values().map(|v| v.as_u64().unwrap_or(0)).sum())
}

fn client(base_url: &str) -> Result<MoneyKit> {
    Ok(MoneyKit::new(ClientConfig {
        base_url: base_url.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        api_version: "2023-02-18".into(),
        request_timeout: Duration::from_secs(10),
        scope: None,
    })?)
}

/// Percentile (0..=1) of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `linkfresh_due_lag_seconds` buckets from `/metrics`: (le, cumulative count).
fn lag_histogram(text: &str) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("linkfresh_due_lag_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, tail)) = rest.split_once("\"}") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let n = tail.trim().parse::<f64>().unwrap_or(0.0) as u64;
        out.push((le, n));
    }
    out
}

/// The smallest bucket bound holding quantile `q` of the histogram delta.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
            (*le, n.saturating_sub(b))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, n)| *n);
    if total == 0 {
        return f64::NAN;
    }
    let want = (total as f64 * q).ceil() as u64;
    delta
        .iter()
        .find(|(_, n)| *n >= want)
        .map_or(f64::INFINITY, |(le, _)| *le)
}

async fn open_store(db: &Path) -> Result<sqlx::SqlitePool> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .read_only(true);
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------- fleet-1m

async fn fleet(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(1_000_000);
    let run_secs = args.duration.unwrap_or(30);
    let hour = args.window.unwrap_or(3600.0);
    let c = http();
    let mut report = Report::new("fleet-1m");
    report.info("links", json!(n));
    report.info("products_per_link", json!(4));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let setup = Setup {
        hour,
        links: n,
        products: ALL4,
        prefix: "mk_fleet",
        // The fleet needs n / hour POSTs per second; leave room.
        max_rps: ((n as f64 / hour) * 4.0).max(100.0) as u32,
        in_flight: args.in_flight,
        margin_ms: 30_000.min((hour * 1000.0 / 120.0) as u64),
        coalesce_ms: (hour * 1000.0 / 6.0) as u64,
        first_spread_ms: 60_000,
        list_sim_links: false,
    };
    let t = Instant::now();
    let config = write_config(dir, &setup, &base_url, free_addr()?)?;
    eprintln!(
        "fleet-1m: wrote {n} links in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // linkfresh check: a separate process, wall clock.
    let t = Instant::now();
    let out = Command::new(linkfresh_bin()?)
        .args(["check", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()?;
    let check_s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("check failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    report.row(
        "check_s",
        "linkfresh check",
        json!(check_s),
        format!("{check_s:.2} s"),
        "< 5 s",
        Some(check_s < 5.0),
    );

    let mut sim_cmd = Command::new(linkfresh_bin()?);
    sim_cmd
        .args(["sim", "--listen", &sim_addr.to_string(), "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn("sim", sim_cmd, dir)?;
    wait_up(
        &c,
        &format!("{base_url}/_sim/stats"),
        Duration::from_secs(30),
    )
    .await?;

    let mut first_post = None;
    let mut hwm_series = Vec::new();
    for (round, label) in [(0, "cold"), (1, "restart")] {
        let before = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        let posts_before = count(&before, "refresh", None);
        let t0 = Instant::now();
        let mut daemon = start_daemon(dir, &config, &args.daemon_log, &format!("daemon-{label}"))?;
        let pid = daemon.pid();
        let limit = Duration::from_secs(120);
        let mut got = None;
        while t0.elapsed() < limit {
            if !daemon.alive() {
                bail!("daemon exited:\n{}", daemon.tail());
            }
            let s = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
            if count(&s, "refresh", None) > posts_before {
                got = Some(t0.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let Some(first) = got else {
            bail!("no POST within {limit:?}:\n{}", daemon.tail());
        };
        let (hwm_at_first, _) = memory_kib(pid);
        // Let it run: the scheduler holds the whole fleet, the dispatcher works.
        let run_until = Instant::now() + Duration::from_secs(run_secs);
        while Instant::now() < run_until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !daemon.alive() {
                bail!("daemon exited:\n{}", daemon.tail());
            }
        }
        let (hwm, rss) = memory_kib(pid);
        let cpu = cpu_seconds(pid);
        let after = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        daemon.stop(Duration::from_secs(30));
        hwm_series.push(json!({"start": label, "first_post_s": first, "vmhwm_mib_at_first_post": hwm_at_first as f64 / 1024.0, "vmhwm_mib": hwm as f64 / 1024.0, "vmrss_mib": rss as f64 / 1024.0, "cpu_s": cpu, "posts": count(&after, "refresh", None) - posts_before, "gets": count(&after, "get_link", None) - count(&before, "get_link", None), "violations": after["violations"]}));
        let hwm_mib = hwm as f64 / 1024.0;
        if round == 0 {
            first_post = Some(first);
            report.row(
                "first_post_s",
                "start to first POST (empty store)",
                json!(first),
                format!("{first:.2} s"),
                "< 10 s",
                Some(first < 10.0),
            );
            report.row(
                "vmhwm_mib",
                &format!("peak RSS (VmHWM) after {run_secs} s"),
                json!(hwm_mib),
                format!("{hwm_mib:.0} MiB"),
                "< 512 MiB",
                Some(hwm_mib < 512.0),
            );
        } else {
            report.row(
                "restart_first_post_s",
                "start to first POST (restart)",
                json!(first),
                format!("{first:.2} s"),
                "< 10 s",
                Some(first < 10.0),
            );
            report.row(
                "restart_vmhwm_mib",
                "peak RSS (VmHWM), restart",
                json!(hwm_mib),
                format!("{hwm_mib:.0} MiB"),
                "< 512 MiB",
                Some(hwm_mib < 512.0),
            );
        }
    }
    let _ = first_post;
    let db = dir.join("linkfresh.db");
    let size = store_bytes(&db) as f64 / 1024.0 / 1024.0;
    report.row(
        "store_mib",
        "store size (db + wal)",
        json!(size),
        format!("{size:.0} MiB"),
        "reported",
        None,
    );
    let stats = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let v = stats["violations"].as_u64().unwrap_or(0);
    report.row(
        "violations",
        "window violations",
        json!(v),
        v.to_string(),
        "0",
        Some(v == 0),
    );
    report.info("runs", json!(hwm_series));
    sim.stop(Duration::from_secs(5));
    Ok(report)
}

// ---------------------------------------------------------------- throughput

/// The bare loop: the same client library (linkfresh's MoneyKit client on
/// reqwest), the same concurrency, no store and no scheduler: `conc` tasks
/// POST round-robin over `n` links for `secs` seconds. Returns 202s per second.
async fn bare_loop(base_url: &str, n: usize, conc: u32, secs: u64) -> Result<(f64, u64, u64)> {
    let mk = client(base_url)?;
    mk.ensure_token().await?;
    let ids: Arc<Vec<LinkId>> = Arc::new(
        (0..n)
            .map(|i| LinkId::parse(&link_id("mk_bare", i)).expect("id"))
            .collect(),
    );
    let products = ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Transactions));
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (mk, ids, next, ok, other, stop, counting) = (
            mk.clone(),
            ids.clone(),
            next.clone(),
            ok.clone(),
            other.clone(),
            stop.clone(),
            counting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % ids.len();
                let r = mk.refresh(&ids[i], products).await;
                if counting.load(Ordering::Relaxed) {
                    if matches!(r, RefreshOutcome::Accepted { .. }) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Two seconds of warm-up (connections, token), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    counting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = t.elapsed().as_secs_f64();
    let (ok, other) = (ok.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok((ok as f64 / elapsed, ok, other))
}

async fn throughput(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(20_000);
    let secs = args.duration.unwrap_or(60);
    let hour = args.window.unwrap_or(1.0);
    let c = http();
    let mut report = Report::new("throughput");
    report.info("links", json!(n));
    report.info("window_s", json!(hour));
    report.info("in_flight", json!(args.in_flight));
    report.info("daemon_log", json!(args.daemon_log));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let setup = Setup {
        hour,
        links: n,
        products: "accounts,transactions",
        prefix: "mk_tp",
        max_rps: 1_000_000,
        in_flight: args.in_flight,
        margin_ms: 10,
        coalesce_ms: 0,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: false,
    };
    let config = write_config(dir, &setup, &base_url, free_addr()?)?;
    let mut sim_cmd = Command::new(linkfresh_bin()?);
    sim_cmd
        .args(["sim", "--listen", &sim_addr.to_string(), "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn("sim", sim_cmd, dir)?;
    wait_up(
        &c,
        &format!("{base_url}/_sim/stats"),
        Duration::from_secs(30),
    )
    .await?;

    // 1. The bare loop against the same simulator.
    let sim_cpu0 = cpu_seconds(sim.pid());
    let (bare, bare_ok, bare_other) =
        bare_loop(&base_url, n, args.in_flight, args.bare_seconds).await?;
    let sim_cpu_bare = (cpu_seconds(sim.pid()) - sim_cpu0) / (args.bare_seconds as f64 + 2.0);
    eprintln!("throughput: bare loop {bare:.0} POSTs/s ({bare_ok} ok, {bare_other} other)");

    // 2. The daemon, warmed up until every link had its first POST. The bare
    // loop ignores windows, so its violations are counted apart.
    let bare_violations = get_json(&c, &format!("{base_url}/_sim/stats")).await?["violations"]
        .as_u64()
        .unwrap_or(0);
    let mut daemon = start_daemon(dir, &config, &args.daemon_log, "daemon")?;
    let pid = daemon.pid();
    let warm_limit = Instant::now() + Duration::from_secs(120);
    loop {
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
        let s = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
        let daemon_posts = count(&s, "refresh", None).saturating_sub(bare_ok + bare_other);
        if daemon_posts as usize >= 2 * n || Instant::now() > warm_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s0 = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let (t0_ms, t0) = (now_ms(), Instant::now());
    let (cpu_d0, cpu_s0) = (cpu_seconds(pid), cpu_seconds(sim.pid()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let s1 = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let t1_ms = now_ms();
    let (cpu_d, cpu_s) = (
        (cpu_seconds(pid) - cpu_d0) / elapsed,
        (cpu_seconds(sim.pid()) - cpu_s0) / elapsed,
    );
    let (hwm, _) = memory_kib(pid);
    let clean = daemon.stop(Duration::from_secs(30));
    let accepted = count(&s1, "refresh", Some("202")) - count(&s0, "refresh", Some("202"));
    let all_posts = count(&s1, "refresh", None) - count(&s0, "refresh", None);
    let sim_rate = accepted as f64 / elapsed;

    // 3. Durability: attempts whose intent *and* outcome are in the store.
    let pool = open_store(&dir.join("linkfresh.db")).await?;
    let (durable,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM attempts WHERE intent_at >= $1 AND intent_at < $2 AND outcome = 'accepted'",
    )
    .bind(t0_ms)
    .bind(t1_ms)
    .fetch_one(&pool)
    .await?;
    let (pending,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM attempts WHERE intent_at >= $1 AND intent_at < $2 AND outcome IS NULL",
    )
    .bind(t0_ms)
    .bind(t1_ms)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    let durable_rate = durable as f64 / ((t1_ms - t0_ms) as f64 / 1000.0);
    let ratio = durable_rate / bare;

    report.row(
        "bare_posts_per_s",
        "bare HTTP loop (no store)",
        json!(bare),
        format!("{bare:.0} /s"),
        "reference",
        None,
    );
    report.row(
        "sim_accepted_per_s",
        "daemon, 202s seen by the sim",
        json!(sim_rate),
        format!("{sim_rate:.0} /s"),
        "",
        None,
    );
    report.row(
        "durable_posts_per_s",
        &format!("daemon, durable POSTs over {secs} s"),
        json!(durable_rate),
        format!("{durable_rate:.0} /s"),
        ">= 5000 /s",
        Some(durable_rate >= 5000.0),
    );
    report.row(
        "ratio",
        "daemon / bare loop",
        json!(ratio),
        format!("{ratio:.2}"),
        ">= 0.50",
        Some(ratio >= 0.5),
    );
    report.info("non_202_posts", json!(all_posts - accepted));
    report.info("intents_without_outcome", json!(pending));
    report.info("clean_stop", json!(clean));
    report.info("daemon_cpu_cores", json!(cpu_d));
    report.info("sim_cpu_cores", json!(cpu_s));
    report.info("sim_cpu_cores_bare", json!(sim_cpu_bare));
    report.info("daemon_vmhwm_mib", json!(hwm as f64 / 1024.0));
    report.row(
        "cpu",
        "CPU cores: daemon / sim",
        json!([cpu_d, cpu_s]),
        format!("{cpu_d:.2} / {cpu_s:.2}"),
        "",
        None,
    );
    let v = s1["violations"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(bare_violations);
    report.info("bare_loop_violations", json!(bare_violations));
    report.row(
        "violations",
        "window violations (daemon)",
        json!(v),
        v.to_string(),
        "0",
        Some(v == 0),
    );
    sim.stop(Duration::from_secs(5));
    Ok(report)
}

// ---------------------------------------------------------------- lateness

async fn lateness(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(100_000);
    let secs = args.duration.unwrap_or(180);
    let hour = args.window.unwrap_or(60.0);
    let c = http();
    let mut report = Report::new("lateness");
    report.info("links", json!(n));
    report.info("window_s", json!(hour));
    report.info("needed_posts_per_s", json!(n as f64 / hour));

    let sim_addr = free_addr()?;
    let base_url = format!("http://{sim_addr}");
    let listen = free_addr()?;
    let margin_ms = 100;
    let setup = Setup {
        hour,
        links: n,
        products: "accounts,transactions",
        prefix: "mk_late",
        max_rps: 100_000,
        in_flight: args.in_flight,
        margin_ms,
        coalesce_ms: (hour * 1000.0 / 6.0) as u64,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: false,
    };
    let config = write_config(dir, &setup, &base_url, listen)?;
    let mut sim_cmd = Command::new(linkfresh_bin()?);
    sim_cmd
        .args(["sim", "--listen", &sim_addr.to_string(), "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn("sim", sim_cmd, dir)?;
    wait_up(
        &c,
        &format!("{base_url}/_sim/stats"),
        Duration::from_secs(30),
    )
    .await?;
    let mut daemon = start_daemon(dir, &config, &args.daemon_log, "daemon")?;
    let pid = daemon.pid();
    wait_up(
        &c,
        &format!("http://{listen}/metrics"),
        Duration::from_secs(60),
    )
    .await?;
    let h0 = lag_histogram(
        &c.get(format!("http://{listen}/metrics"))
            .send()
            .await?
            .text()
            .await?,
    );
    let t0_ms = now_ms();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
    }
    let t1_ms = now_ms();
    let h1 = lag_histogram(
        &c.get(format!("http://{listen}/metrics"))
            .send()
            .await?
            .text()
            .await?,
    );
    let stats = get_json(&c, &format!("{base_url}/_sim/stats")).await?;
    let (hwm, _) = memory_kib(pid);
    let cpu = cpu_seconds(pid) / (secs as f64);
    daemon.stop(Duration::from_secs(30));

    // Exact lateness from the store: for consecutive counted POSTs of a link,
    // the second was due at first + window + margin (both products share one
    // window, so they ride one POST); lateness = its send time - that.
    let spacing_ms = (hour * 1000.0).round() as i64 + margin_ms as i64;
    let pool = open_store(&dir.join("linkfresh.db")).await?;
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT link_id, intent_at, outcome FROM attempts WHERE intent_at < $1 ORDER BY link_id, intent_at",
    )
    .bind(t1_ms)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    let mut late = Vec::new();
    let mut prev: Option<(&str, i64)> = None;
    for (link, at, outcome) in &rows {
        if let Some((pl, pat)) = prev
            && pl == link
            && *at >= t0_ms
        {
            late.push((at - (pat + spacing_ms)) as f64 / 1000.0);
        }
        if outcome.as_deref() == Some("accepted") {
            prev = Some((link.as_str(), *at));
        } else {
            prev = None;
        }
    }
    late.sort_by(f64::total_cmp);
    let (p50, p99, max) = (pct(&late, 0.5), pct(&late, 0.99), pct(&late, 1.0));
    let early = late.iter().filter(|l| **l < 0.0).count();
    let posts_per_s = late.len() as f64 / ((t1_ms - t0_ms) as f64 / 1000.0);
    report.row(
        "samples",
        "POSTs measured (second and later per link)",
        json!(late.len()),
        late.len().to_string(),
        "",
        None,
    );
    report.row(
        "posts_per_s",
        "of which per second",
        json!(posts_per_s),
        format!("{posts_per_s:.0} /s"),
        &format!("~{:.0} /s", n as f64 / hour),
        None,
    );
    report.row(
        "p50_s",
        "lateness p50",
        json!(p50),
        format!("{:.3} s", p50),
        "",
        None,
    );
    report.row(
        "p99_s",
        "lateness p99",
        json!(p99),
        format!("{:.3} s", p99),
        "< 1 s",
        Some(p99 < 1.0),
    );
    report.row(
        "max_s",
        "lateness max",
        json!(max),
        format!("{:.3} s", max),
        "",
        None,
    );
    report.row(
        "early",
        "sent before due (must be 0)",
        json!(early),
        early.to_string(),
        "0",
        Some(early == 0),
    );
    let (m50, m99) = (
        bucket_quantile(&h0, &h1, 0.5),
        bucket_quantile(&h0, &h1, 0.99),
    );
    report.row(
        "metric_p99_le",
        "linkfresh_due_lag_seconds p99 bucket",
        json!(m99),
        format!("<= {m99} s"),
        "",
        None,
    );
    report.info("metric_p50_le", json!(m50));
    let v = stats["violations"].as_u64().unwrap_or(0);
    let r429 = count(&stats, "refresh", Some("429"));
    report.row(
        "violations",
        "window violations / 429s",
        json!(v),
        format!("{v} / {r429}"),
        "0 / 0",
        Some(v == 0 && r429 == 0),
    );
    report.info("daemon_vmhwm_mib", json!(hwm as f64 / 1024.0));
    report.info("daemon_cpu_cores", json!(cpu));
    sim.stop(Duration::from_secs(5));
    Ok(report)
}

// ---------------------------------------------------------------- efficiency

struct Side {
    posts: u64,
    products: u64,
    r429: u64,
    other_errors: u64,
    fresh: BTreeMap<String, (f64, f64, u64)>,
    cpu_s: f64,
}

fn side_from(stats: &Value, fresh: &Value, cpu_s: f64) -> Side {
    let posts = count(stats, "refresh", None);
    let r429 = count(stats, "refresh", Some("429"));
    let ok = count(stats, "refresh", Some("202"));
    let mut f = BTreeMap::new();
    if let Some(m) = fresh.as_object() {
        for (p, v) in m {
            f.insert(
                p.clone(),
                (
                    v["p50_age_s"].as_f64().unwrap_or(f64::NAN),
                    v["p99_age_s"].as_f64().unwrap_or(f64::NAN),
                    v["refreshed_links"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    Side {
        posts,
        products: sum_map(&stats["products_requested"]),
        r429,
        other_errors: posts - ok - r429,
        fresh: f,
        cpu_s,
    }
}

async fn efficiency(args: &Args, dir: &Path) -> Result<Report> {
    let n = args.links.unwrap_or(1_000);
    let secs = args.duration.unwrap_or(300);
    let hour = args.window.unwrap_or(6.0);
    let period = args.baseline_period.unwrap_or(hour);
    let c = http();
    let mut report = Report::new("efficiency");
    report.info("links", json!(n));
    report.info("hour_s", json!(hour));
    report.info("duration_s", json!(secs));
    report.info("baseline_period_s", json!(period));

    // Two simulators with the same windows, one per contestant, side by side.
    let ddir = dir.join("daemon");
    let bdir = dir.join("baseline");
    std::fs::create_dir_all(&ddir)?;
    std::fs::create_dir_all(&bdir)?;
    let scale = hour / 3600.0;
    let mk_setup = || Setup {
        hour,
        links: n,
        products: ALL4,
        prefix: "mk_eff",
        max_rps: 1000,
        in_flight: args.in_flight.min(32),
        margin_ms: ((30_000.0 * scale) as u64).max(20),
        coalesce_ms: (600_000.0 * scale) as u64,
        first_spread_ms: (hour * 1000.0) as u64,
        list_sim_links: true,
    };
    let (dsim_addr, bsim_addr) = (free_addr()?, free_addr()?);
    let dbase = format!("http://{dsim_addr}");
    let bbase = format!("http://{bsim_addr}");
    let dconfig = write_config(&ddir, &mk_setup(), &dbase, free_addr()?)?;
    let bconfig = write_config(&bdir, &mk_setup(), &bbase, free_addr()?)?;
    let mut sims = Vec::new();
    for (addr, cfg, d) in [(dsim_addr, &dconfig, &ddir), (bsim_addr, &bconfig, &bdir)] {
        let mut cmd = Command::new(linkfresh_bin()?);
        cmd.args(["sim", "--listen", &addr.to_string(), "--config"])
            .arg(cfg)
            .env("RUST_LOG", "warn");
        sims.push(Proc::spawn("sim", cmd, d)?);
    }
    wait_up(&c, &format!("{dbase}/_sim/stats"), Duration::from_secs(30)).await?;
    wait_up(&c, &format!("{bbase}/_sim/stats"), Duration::from_secs(30)).await?;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline/refresh_loop.py");
    let mut py = Command::new(&args.python);
    py.arg(&script)
        .args([
            "--host",
            &bbase,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ])
        .arg("--links")
        .arg(bdir.join("links.txt"))
        .args([
            "--period",
            &period.to_string(),
            "--duration",
            &secs.to_string(),
        ]);
    let t0 = Instant::now();
    let mut baseline = Proc::spawn("baseline", py, &bdir)?;
    let mut daemon = start_daemon(&ddir, &dconfig, &args.daemon_log, "daemon")?;
    let (dpid, bpid) = (daemon.pid(), baseline.pid());
    let mut bcpu = 0.0;
    // A snapshot at the end flatters a fleet whose links all refresh at the
    // same moment (the baseline's): sample both sides over the second half
    // and average, so ages are compared over time, not at one lucky instant.
    let mut samples: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    let mut last_sample = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if t0.elapsed() >= Duration::from_secs(secs / 2)
            && last_sample.elapsed() >= Duration::from_secs(2)
        {
            last_sample = Instant::now();
            let (du, bu) = (
                format!("{dbase}/_sim/freshness"),
                format!("{bbase}/_sim/freshness"),
            );
            let (d, b) = tokio::join!(get_json(&c, &du), get_json(&c, &bu));
            if let (Ok(d), Ok(b)) = (d, b) {
                for p in ["accounts", "transactions", "account_numbers", "identity"] {
                    let e = samples.entry(p.to_owned()).or_insert([0.0; 5]);
                    e[0] += d[p]["p50_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[1] += d[p]["p99_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[2] += b[p]["p50_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[3] += b[p]["p99_age_s"].as_f64().unwrap_or(f64::NAN);
                    e[4] += 1.0;
                }
            }
        }
        if !daemon.alive() {
            bail!("daemon exited:\n{}", daemon.tail());
        }
        if baseline.alive() {
            bcpu = cpu_seconds(bpid);
        } else if t0.elapsed() < Duration::from_secs(secs.saturating_sub(5)) {
            bail!("baseline exited early:\n{}", baseline.tail());
        }
    }
    // Both sides measured at the same instant.
    let urls = [
        format!("{dbase}/_sim/stats"),
        format!("{bbase}/_sim/stats"),
        format!("{dbase}/_sim/freshness"),
        format!("{bbase}/_sim/freshness"),
    ];
    let (dstats, bstats, dfresh, bfresh) = tokio::join!(
        get_json(&c, &urls[0]),
        get_json(&c, &urls[1]),
        get_json(&c, &urls[2]),
        get_json(&c, &urls[3]),
    );
    let elapsed = t0.elapsed().as_secs_f64();
    let dcpu = cpu_seconds(dpid);
    daemon.stop(Duration::from_secs(30));
    baseline.stop(Duration::from_secs(10));
    for s in &mut sims {
        s.stop(Duration::from_secs(5));
    }
    let d = side_from(&dstats?, &dfresh?, dcpu);
    let b = side_from(&bstats?, &bfresh?, bcpu);
    let hours = elapsed / hour;
    let minimum = n as f64 * hours;
    let per_link_hour = |posts: u64| posts as f64 / n as f64 / hours;

    report.info("hour_equivalents", json!(hours));
    report.info("minimum_posts", json!(minimum));
    let over = d.posts as f64 / minimum - 1.0;
    report.row(
        "daemon_posts",
        "daemon POSTs",
        json!(d.posts),
        d.posts.to_string(),
        &format!("<= {:.0} (min +5%)", minimum * 1.05),
        Some(over <= 0.05),
    );
    report.row(
        "baseline_posts",
        "baseline POSTs",
        json!(b.posts),
        b.posts.to_string(),
        "",
        None,
    );
    report.row(
        "daemon_products",
        "daemon products requested",
        json!(d.products),
        d.products.to_string(),
        "",
        None,
    );
    report.row(
        "baseline_products",
        "baseline products requested",
        json!(b.products),
        b.products.to_string(),
        "",
        None,
    );
    report.row(
        "daemon_429",
        "daemon 429s",
        json!(d.r429),
        d.r429.to_string(),
        "0",
        Some(d.r429 == 0),
    );
    report.row(
        "baseline_429",
        "baseline 429s",
        json!(b.r429),
        b.r429.to_string(),
        "",
        None,
    );
    report.info("daemon_other_errors", json!(d.other_errors));
    report.info("baseline_other_errors", json!(b.other_errors));
    report.row(
        "daemon_posts_per_link_hour",
        "daemon POSTs/link/hour-eq.",
        json!(per_link_hour(d.posts)),
        format!("{:.3}", per_link_hour(d.posts)),
        "~1",
        None,
    );
    report.row(
        "baseline_posts_per_link_hour",
        "baseline POSTs/link/hour-eq.",
        json!(per_link_hour(b.posts)),
        format!("{:.3}", per_link_hour(b.posts)),
        "",
        None,
    );
    let mut fresher = true;
    let mut ages = serde_json::Map::new();
    for p in ["accounts", "transactions", "account_numbers", "identity"] {
        let (d50, d99, dn) = d.fresh.get(p).copied().unwrap_or((f64::NAN, f64::NAN, 0));
        let (b50, b99, bn) = b.fresh.get(p).copied().unwrap_or((f64::NAN, f64::NAN, 0));
        // Ages in hour-equivalents make the figures readable at any scale.
        let ok = d99 <= b99 && dn >= bn;
        fresher &= ok;
        report.row(
            &format!("age_{p}"),
            &format!("{p} age p50/p99 at the end (h-eq.) daemon | baseline"),
            json!({"daemon": {"p50_s": d50, "p99_s": d99, "links": dn}, "baseline": {"p50_s": b50, "p99_s": b99, "links": bn}}),
            format!("{:.2}/{:.2} | {:.2}/{:.2}", d50 / hour, d99 / hour, b50 / hour, b99 / hour),
            "daemon fresher",
            Some(ok),
        );
        ages.insert(p.into(), json!([d50, d99, b50, b99]));
    }
    // Time-averaged ages over the second half: the verdict on freshness.
    let mut fresher_avg = true;
    for (p, [d50, d99, b50, b99, k]) in &samples {
        let (d50, d99, b50, b99) = (d50 / k, d99 / k, b50 / k, b99 / k);
        let ok = d50 <= b50 && d99 <= b99;
        fresher_avg &= ok;
        report.row(
            &format!("avg_age_{p}"),
            &format!("{p} mean age p50/p99 over 2nd half (h-eq.) daemon | baseline"),
            json!({"daemon": {"p50_s": d50, "p99_s": d99}, "baseline": {"p50_s": b50, "p99_s": b99}, "samples": k}),
            format!("{:.2}/{:.2} | {:.2}/{:.2}", d50 / hour, d99 / hour, b50 / hour, b99 / hour),
            "daemon fresher",
            Some(ok),
        );
    }
    report.info("fresher_time_averaged", json!(fresher_avg));
    let fewer = d.posts <= b.posts;
    report.row(
        "fresher_with_fewer",
        "fresher at equal or lower request count",
        json!(fresher && fewer),
        format!("{}", fresher && fewer),
        "true",
        Some(fresher && fewer),
    );
    report.row(
        "cpu",
        "CPU seconds daemon | baseline",
        json!([d.cpu_s, b.cpu_s]),
        format!("{:.1} | {:.1}", d.cpu_s, b.cpu_s),
        "",
        None,
    );
    Ok(report)
}
