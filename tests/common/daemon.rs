//! Shared helpers: the real daemon (in process, as `main` builds it, or as
//! the `linkfresh` binary) against the project's simulator over loopback,
//! with a fresh SQLite file per test and windows of seconds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use linkfresh::app::{Application, Options};
use linkfresh::config;
use linkfresh::daemon::Activity;
use linkfresh::sim::{self, SimConfig, SimHandle, Windows};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Windows used by most daemon tests: hourly products 2 s, daily 6 s.
pub fn fast_windows() -> Windows {
    Windows {
        accounts: Duration::from_secs(2),
        transactions: Duration::from_secs(2),
        account_numbers: Duration::from_secs(6),
        identity: Duration::from_secs(6),
        investments: Duration::from_secs(6),
        enrichment: Duration::from_secs(6),
    }
}

/// The daemon config matching `sim`'s windows and credentials.
pub fn daemon_toml(
    base_url: &str,
    db: &Path,
    sim: &SimConfig,
    links: &[String],
    products: &str,
    extra: &str,
) -> String {
    let w = sim.windows;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut out = format!(
        "[moneykit]\nbase_url = \"{base_url}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrequest_timeout = \"2s\"\nmax_requests_per_second = 1000\nmax_in_flight = 32\n\
         [database]\nurl = \"sqlite://{}\"\n\
         [limits]\naccounts = \"{}\"\ntransactions = \"{}\"\naccount_numbers = \"{}\"\nidentity = \"{}\"\ninvestments = \"{}\"\nenrichment = \"{}\"\nmargin = \"100ms\"\n\
         [schedule]\ncoalesce = \"300ms\"\nbackoff_base = \"500ms\"\nbackoff_max = \"3s\"\nfirst_spread = \"500ms\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\n{extra}\n",
        sim.client_id,
        sim.client_secret,
        db.display(),
        ms(w.accounts),
        ms(w.transactions),
        ms(w.account_numbers),
        ms(w.identity),
        ms(w.investments),
        ms(w.enrichment),
    );
    for l in links {
        out += &format!("[[links]]\nid = \"{l}\"\nproducts = [{products}]\n");
    }
    out
}

/// A simulator and an in-process daemon against it.
pub struct TestDaemon {
    pub sim: SimHandle,
    pub addr: std::net::SocketAddr,
    pub cancel: CancellationToken,
    pub handle: JoinHandle<Result<(), linkfresh::daemon::DaemonError>>,
    pub activity: mpsc::UnboundedReceiver<Activity>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub started: Instant,
}

impl TestDaemon {
    /// Starts a simulator with `sim_cfg` and the daemon with `links`.
    pub async fn start(sim_cfg: SimConfig, links: &[String], products: &str, extra: &str) -> Self {
        Self::start_with(sim_cfg, links, products, extra, |toml| toml).await
    }

    /// Like [`TestDaemon::start`], with `edit` applied to the config text.
    pub async fn start_with(
        sim_cfg: SimConfig,
        links: &[String],
        products: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let sim = sim::spawn(sim_cfg.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("linkfresh.toml");
        let db = dir.path().join("lf.db");
        let toml = edit(daemon_toml(
            &sim.base_url(),
            &db,
            &sim_cfg,
            links,
            products,
            extra,
        ));
        std::fs::write(&config_path, toml).unwrap();
        let config = config::load(&config_path).unwrap();
        let (tx, activity) = mpsc::unbounded_channel();
        let app = Application::build(
            config,
            Options {
                activity: Some(tx),
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let addr = app.local_addr();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
        Self {
            sim,
            addr,
            cancel,
            handle,
            activity,
            dir,
            config_path,
            started: Instant::now(),
        }
    }

    /// Stops the daemon and returns how its run ended.
    pub async fn stop(self) -> (SimHandle, Result<(), linkfresh::daemon::DaemonError>) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("daemon stops within 10 s")
            .unwrap();
        (self.sim, result)
    }
}

/// `n` link ids with a prefix.
pub fn link_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}_{i:03}")).collect()
}

/// GETs `path` from `addr`; (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// The `linkfresh` binary running `run` with a config file.
pub struct DaemonProcess {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl DaemonProcess {
    /// Starts `linkfresh run --config path`, logs to a file beside it.
    pub fn spawn(config_path: &Path, tag: &str) -> Self {
        Self::spawn_with_env(config_path, tag, &[])
    }

    /// Like [`DaemonProcess::spawn`] with extra environment variables.
    pub fn spawn_with_env(config_path: &Path, tag: &str, env: &[(&str, &str)]) -> Self {
        let stderr_path = config_path.with_file_name(format!("daemon-{tag}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_linkfresh"))
            .args(["run", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr_path }
    }

    /// Sends a signal by name (`TERM`, `KILL`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`); its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not exit within {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the daemon logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DaemonProcess {
    /// Asserts that this daemon, started on a store `owner` holds, exits 1
    /// naming `owner`'s pid: one daemon per SQLite file, by any name.
    pub fn assert_refused_by(&mut self, owner: &DaemonProcess) {
        assert_eq!(
            self.wait(Duration::from_secs(10)),
            Some(1),
            "{}",
            self.log()
        );
        let log = self.log();
        assert!(log.contains("in use by another linkfresh daemon"), "{log}");
        assert!(
            log.contains(&format!("pid {}", owner.child.id())),
            "names the holder: {log}"
        );
    }

    /// Sends SIGTERM and asserts a clean exit (0) within 10 s.
    pub fn stop_cleanly(&mut self) {
        self.signal("TERM");
        assert_eq!(
            self.wait(Duration::from_secs(10)),
            Some(0),
            "{}",
            self.log()
        );
    }
}

/// A port free on loopback now, for a daemon process whose address the test
/// must know before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `linkfresh ARGS --config CONFIG`; (exit code, stdout, stderr).
pub fn linkfresh(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linkfresh"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`wait_until`] for a check that must await (an HTTP scrape, a store
/// read): polls every 50 ms until it is true or `limit` passes.
pub async fn wait_until_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}
