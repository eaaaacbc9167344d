//! The config file a scenario's simulator and daemon share, and starting the daemon on it.

use super::*;

/// Windows and schedule scaled from MoneyKit's real ones: `hour` seconds
/// stand for an hour (daily products: 24 times that).
pub(crate) struct Setup {
    pub(crate) hour: f64,
    pub(crate) links: usize,
    pub(crate) products: &'static str,
    pub(crate) prefix: &'static str,
    pub(crate) max_rps: u32,
    pub(crate) in_flight: u32,
    pub(crate) margin_ms: u64,
    pub(crate) coalesce_ms: u64,
    pub(crate) first_spread_ms: u64,
    pub(crate) list_sim_links: bool,
}

pub(crate) fn ms(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round().max(1.0) as u64)
}

pub(crate) fn link_id(prefix: &str, i: usize) -> String {
    format!("{prefix}_{i:07}")
}

/// Writes `links.txt` and `linkfresh.toml` (daemon config plus `[sim]`).
pub(crate) fn write_config(
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

/// Starts the simulator on `addr` with the `[sim]` table of `config` and
/// waits until it answers.
pub(crate) async fn start_sim(
    c: &reqwest::Client,
    dir: &Path,
    config: &Path,
    addr: std::net::SocketAddr,
) -> Result<Proc> {
    let mut cmd = Command::new(linkfresh_bin()?);
    cmd.args(["sim", "--listen", &addr.to_string(), "--config"])
        .arg(config)
        .env("RUST_LOG", "warn");
    let sim = Proc::spawn("sim", cmd, dir)?;
    wait_up(
        c,
        &format!("http://{addr}/_sim/stats"),
        Duration::from_secs(30),
    )
    .await?;
    Ok(sim)
}

pub(crate) fn start_daemon(dir: &Path, config: &Path, log: &str, name: &str) -> Result<Proc> {
    let mut cmd = Command::new(linkfresh_bin()?);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", log);
    Proc::spawn(name, cmd, dir)
}
