//! The daemon (`linkfresh run`): an [`Application`] that tests build and run
//! exactly as `main` does, with a cancellation token for shutdown.
//!
//! Data flow: config → store (sync) → [`table`] (in memory) → [`scheduler`]
//! asks the policy → [`dispatch`] paces, commits intents, sends → answers
//! come back to the scheduler → [`outcome`] decides their effect →
//! [`writer`] group-commits them.

pub mod discovery;
pub mod dispatch;
pub mod gauges;
pub mod limiter;
pub mod loader;
pub mod outcome;
pub mod scheduler;
mod supervise;
pub mod table;
pub mod timer;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::domain::{LinkId, LinkState};
use crate::moneykit::{ClientConfig, MoneyKit};
use crate::policy::Rules;
use crate::store::{self, LinkRecord, LinkSource, LinkSpec, Store};

/// One line of the daemon's activity, for `demo` and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// The link.
    pub link: LinkId,
    /// Products requested (empty for reads).
    pub products: String,
    /// Outcome label (`accepted`, `rate_limited`, `reconciled`, ...).
    pub outcome: String,
    /// Detail, if any.
    pub detail: Option<String>,
    /// The link's state afterwards.
    pub state: LinkState,
    /// When the link is due next (None: idle).
    pub next_due: Option<DateTime<Utc>>,
}

/// Liveness shared between the loop and `/healthz`, plus the fatal error
/// that stops the daemon.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    last: Arc<AtomicI64>,
    /// Set by the loop when MoneyKit's answer means the daemon must stop.
    pub fatal: Arc<Mutex<Option<String>>>,
}

impl Heartbeat {
    /// Marks the loop alive now.
    pub fn beat(&self) {
        self.last.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the loop last marked itself alive.
    pub fn age_ms(&self) -> i64 {
        monotonic_ms() - self.last.load(Ordering::Relaxed)
    }
}

fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// What a reload produced for the loop.
pub struct Reloaded {
    /// New policy rules.
    pub rules: Rules,
    /// Every non-removed link after the sync.
    pub records: Vec<LinkRecord>,
}

/// Options that tests and `demo` set; `run` uses the defaults.
#[derive(Default)]
pub struct Options {
    /// The clock (tests may start it at a fixed date).
    pub clock: Option<Clock>,
    /// Receives one [`Activity`] per answer.
    pub activity: Option<mpsc::UnboundedSender<Activity>>,
    /// Watch the config folder and reload on change (Kubernetes ConfigMaps).
    pub watch_config: bool,
    /// Reload on SIGHUP.
    pub reload_on_sighup: bool,
    /// A store opened by the caller instead of one opened from `[database]
    /// url` (tests that reach into the backend, e.g. to fill its disk).
    pub store: Option<Arc<dyn Store>>,
}

/// The daemon, built and ready to run.
pub struct Application {
    config: Config,
    store: Arc<dyn Store>,
    client: MoneyKit,
    listener: TcpListener,
    webhook_listener: Option<TcpListener>,
    clock: Clock,
    options: Options,
    /// Held while the daemon runs on a SQLite file (see [`store::owner`]).
    owner: Option<store::owner::OwnerLock>,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot run (missing credentials): exit 2.
    #[error("{0}")]
    Config(String),
    /// Anything else: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

/// The store's view of the configured links.
pub fn link_specs(config: &Config) -> Vec<LinkSpec> {
    config
        .links
        .iter()
        .map(|l| LinkSpec {
            id: l.id.clone(),
            products: l.products,
            cadence: l.cadence_json(),
            source: LinkSource::Config,
        })
        .collect()
}

/// [`link_specs`], taking the links out of the configuration instead of
/// copying them: with a million links the copies were a hundred megabytes
/// more at the start-up peak.
pub fn take_link_specs(config: &mut Config) -> Vec<LinkSpec> {
    std::mem::take(&mut config.links)
        .into_iter()
        .map(|l| LinkSpec {
            cadence: l.cadence_json(),
            products: l.products,
            source: LinkSource::Config,
            id: l.id,
        })
        .collect()
}

/// Builds the MoneyKit client from the configuration, reading the secret.
pub fn client_from(config: &Config) -> Result<MoneyKit, DaemonError> {
    let m = &config.moneykit;
    // The same judgement as `check` (exit 2 naming the key), with every
    // secret file required to be there.
    let creds = config::credentials(config, config::Stage::Run)
        .map_err(|e| DaemonError::Config(e.to_string()))?;
    let client_id = creds.client_id;
    let secret = creds.client_secret.ok_or_else(|| {
        DaemonError::Config(format!(
            "{}: no client secret could be read",
            config.path.display()
        ))
    })?;
    MoneyKit::new(ClientConfig {
        base_url: m.base_url.clone(),
        client_id,
        client_secret: secret,
        api_version: m.api_version.clone(),
        request_timeout: m.request_timeout,
        scope: m.scope.clone(),
    })
    .map_err(|e| DaemonError::Config(e.to_string()))
}

impl Application {
    /// Connects the store (migrating it), syncs the configured links, builds
    /// the client and binds the server's listener (port 0 allowed).
    pub async fn build(mut config: Config, mut options: Options) -> Result<Self, DaemonError> {
        let clock = options.clock.unwrap_or_default();
        let client = client_from(&config)?;
        crate::server::check_extra_post_route(&config.server.webhook_path).map_err(|why| {
            DaemonError::Config(format!(
                "{}: [server] webhook_path = {:?} cannot be served beside the daemon's own routes: {why}",
                config.path.display(),
                config.server.webhook_path
            ))
        })?;
        let owner = store::owner::OwnerLock::acquire(&config.database.url)
            .map_err(|e| DaemonError::Runtime(e.into()))?;
        let store = match options.store.take() {
            Some(store) => store,
            None => store::connect(&config.database.url)
                .await
                .with_context(|| {
                    format!(
                        "while opening the store {}",
                        crate::secret::redact_url(&config.database.url)
                    )
                })?,
        };
        store.verify_readable().await.map_err(|e| {
            DaemonError::Runtime(anyhow::anyhow!(unreadable_store(&config.database.url, &e)))
        })?;
        let specs = take_link_specs(&mut config);
        let report = store
            .sync_config(&config.revision, &specs, clock.now())
            .await
            .context("while syncing the configured links into the store")?;
        drop(specs);
        tracing::info!(store = %store.describe(), added = report.added, removed = report.removed, changed = report.changed, unchanged = report.unchanged, "configuration synced");
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("while binding [server] listen = {}", config.server.listen))?;
        let webhook_listener = match config.server.webhook_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("while binding [server] webhook_listen = {addr}"))?,
            ),
            None => None,
        };
        Ok(Self {
            config,
            store,
            client,
            listener,
            webhook_listener,
            clock,
            options,
            owner,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    /// The store, for tests and commands that run alongside.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Runs until `cancel` fires (exit 0) or a fatal error (exit 1).
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DaemonError> {
        let Application {
            config,
            store,
            client,
            listener,
            webhook_listener,
            clock,
            options,
            owner,
        } = self;
        // The configured links are in the store now (taken out of the
        // configuration and synced by `build`); a reload re-reads the file.
        let heartbeat = Heartbeat::default();
        heartbeat.beat();
        let metrics = crate::metrics::install();
        let server_cancel = CancellationToken::new();
        let admin_token = config
            .server
            .admin_token
            .read("[server] admin_token")
            .map_err(DaemonError::Config)?;
        let store_health = store::health::StoreHealth::new();
        let state =
            crate::server::AppState::new(metrics, store.clone(), client.clone(), heartbeat.clone())
                .with_fleet(crate::server::fleet::FleetContext::new(
                    config.rules.clone(),
                    admin_token,
                    clock,
                ))
                .with_store_health(store_health.clone());
        let webhooks = crate::webhook::WebhookState::new(
            store.clone(),
            crate::webhook::jwks_url(&config.moneykit.base_url),
            reqwest::Client::builder()
                .timeout(config.moneykit.request_timeout)
                .user_agent(concat!("linkfresh/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("while building the JWKS client")?,
            clock,
            crate::webhook::WebhookSettings {
                path: config.server.webhook_path.clone(),
                ..Default::default()
            },
        );
        // A server that ends before shutdown stops the daemon (see `supervise`).
        let server_failed = CancellationToken::new();
        let mut servers = Vec::new();
        if let Some(l) = webhook_listener {
            servers.push(supervise::spawn(
                "webhook listener ([server] webhook_listen)",
                crate::webhook::serve(l, webhooks.clone(), server_cancel.clone()),
                server_cancel.clone(),
                heartbeat.clone(),
                server_failed.clone(),
            ));
        }
        servers.push(supervise::spawn(
            "HTTP server ([server] listen)",
            crate::server::serve(
                listener,
                state,
                crate::webhook::router(webhooks),
                server_cancel.clone(),
            ),
            server_cancel.clone(),
            heartbeat.clone(),
            server_failed.clone(),
        ));
        let server = async move {
            for s in servers {
                let _ = s.await;
            }
        };

        // A token first: bad credentials stop here with a clear message;
        // an unreachable MoneyKit is retried (the server answers /healthz).
        let mut delay = Duration::from_millis(500);
        loop {
            match client.ensure_token().await {
                Ok(()) => break,
                Err(e) if e.is_fatal() => {
                    server_cancel.cancel();
                    server.await;
                    return Err(DaemonError::Runtime(anyhow::anyhow!(e)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "no access token yet");
                    tokio::select! {
                        () = cancel.cancelled() => { server_cancel.cancel(); server.await; return Ok(()) }
                        () = server_failed.cancelled() => {
                            server_cancel.cancel();
                            server.await;
                            return Err(DaemonError::Runtime(anyhow::anyhow!(supervise::reason(&heartbeat))));
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }

        // The claims mark first: a claim committed while the links load is
        // merged by the first poll rather than missed.
        let shared = is_shared(&config.database.url);
        let claim_seq = if shared {
            store
                .claims_since(i64::MAX)
                .await
                .context("while reading the store's claim sequence")?
                .0
        } else {
            0
        };
        // The change mark next, for the same reason; then the links stream
        // in while the loop already runs (see `loader`).
        let change_seq = store
            .change_mark()
            .await
            .context("while reading the store's change sequence")?;
        let loading = loader::spawn(store.clone(), cancel.clone(), store_health.clone());
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let _watch = spawn_reload_sources(&config, &options, reload_tx, cancel.clone());

        let (jobs_tx, jobs_rx) = mpsc::channel(job_queue_len(config.moneykit.max_in_flight));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let limiter = dispatch_limiter(&config);
        let tracker = TaskTracker::new();
        let writer = tokio::spawn(writer::run(
            store.clone(),
            writes_rx,
            clock,
            store_health.clone(),
        ));
        let dispatch_cancel = CancellationToken::new();
        let dispatcher = dispatch::Dispatcher {
            writes: writes_tx.clone(),
            client: client.clone(),
            limiter: limiter.clone(),
            in_flight: Arc::new(Semaphore::new(config.moneykit.max_in_flight as usize)),
            staging: Arc::new(Semaphore::new(2 * config.moneykit.max_in_flight as usize)),
            clock,
            tracker: tracker.clone(),
            replica: replica_id(),
            claims: shared,
            lease: TimeDelta::from_std(config.database.lease).unwrap_or(TimeDelta::seconds(15)),
        };
        let dispatcher =
            tokio::spawn(Arc::new(dispatcher).run(jobs_rx, done_tx, dispatch_cancel.clone()));
        let discovery = config.discovery.enabled.then(|| {
            let task = discovery::Discovery {
                store: store.clone(),
                client: client.clone(),
                limiter: limiter.clone(),
                config: config.discovery.clone(),
                clock,
            };
            tokio::spawn(task.run(cancel.clone()))
        });

        let scheduler = scheduler::Scheduler {
            table: table::LinkTable::default(),
            loading: Some(loading),
            timer: timer::Timer::default(),
            rules: config.rules.clone(),
            clock,
            store: store.clone(),
            jobs: jobs_tx,
            done: done_rx,
            writes: writes_tx,
            limiter,
            activity: options.activity,
            heartbeat: heartbeat.clone(),
            reload: reload_rx,
            config_path: config.path.clone(),
            change_seq,
            in_flight: 0,
            history_retention: TimeDelta::from_std(config.database.history_retention)
                .unwrap_or(TimeDelta::days(30)),
            shared,
            claim_seq,
            refused: Vec::new(),
        };
        crate::notify::ready();
        tracing::info!(listen = %config.server.listen, "linkfresh is running");

        // The scheduler drains in-flight answers itself; the dispatcher stops
        // taking new work as soon as shutdown begins.
        let sched_cancel = cancel.clone();
        let stop_dispatch = dispatch_cancel.clone();
        tokio::spawn(async move {
            sched_cancel.cancelled().await;
            stop_dispatch.cancel();
        });
        let drain = config.moneykit.request_timeout + Duration::from_secs(1);
        // On a runtime worker, not on the thread that called `run` (`main`'s
        // `block_on`): every wake-up of a task outside the workers is a
        // cross-thread hand-off, and the loop wakes thousands of times a
        // second at full throughput.
        let ended = tokio::spawn(scheduler.run(cancel.clone(), drain))
            .await
            .unwrap_or_else(|e| scheduler::Ended::Fatal(format!("the scheduler task failed: {e}")));
        crate::notify::stopping();
        dispatch_cancel.cancel();
        if let Some(discovery) = discovery {
            discovery.abort();
            let _ = discovery.await;
        }
        let _ = dispatcher.await;
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
        // The scheduler (and with it the writes sender) is gone: the writer
        // flushes what is queued and ends.
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        server_cancel.cancel();
        server.await;
        match ended {
            scheduler::Ended::Shutdown => {
                drop(owner);
                tracing::info!("stopped cleanly");
                Ok(())
            }
            scheduler::Ended::Fatal(msg) => Err(DaemonError::Runtime(anyhow::anyhow!(msg))),
        }
    }
}

/// What `run` says when the store cannot be read at start: what is wrong
/// and what the operator can do about it.
fn unreadable_store(url: &str, e: &store::StoreError) -> String {
    let file = store::owner::OwnerLock::path_for(url)
        .map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
    format!(
        "the store {} cannot be read: {e}. Check it with `sqlite3 {file} 'PRAGMA integrity_check'`; \
         restore it from a backup (or move it away to start with an empty store, whose links \
         then wait one window before their first refresh)",
        crate::secret::redact_url(url)
    )
}

/// Whether other replicas may share this store (PostgreSQL): only then is
/// polling for their claims worth a query a second.
fn is_shared(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// The claim owner name of this process: host (the pod name on Kubernetes),
/// pid and a random suffix, so that a restarted replica never mistakes its
/// predecessor's leases for its own; those simply expire.
pub fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "linkfresh".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

fn dispatch_limiter(config: &Config) -> limiter::Limiter {
    limiter::Limiter::new(config.moneykit.max_requests_per_second)
}

/// Re-reads the config and syncs it into the store; `None` (the running
/// configuration is kept) when the new one is invalid or the sync fails.
pub async fn reload(
    path: &std::path::Path,
    store: &Arc<dyn Store>,
    clock: Clock,
) -> Option<Reloaded> {
    crate::notify::reloading();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected: keeping the running configuration");
            crate::notify::ready();
            return None;
        }
    };
    let mut config = config;
    let specs = take_link_specs(&mut config);
    let result = async {
        store
            .sync_config(&config.revision, &specs, clock.now())
            .await?;
        drop(specs);
        store.load_links().await
    }
    .await;
    crate::notify::ready();
    match result {
        Ok(records) => {
            tracing::info!(links = records.len(), "configuration reloaded");
            Some(Reloaded {
                rules: config.rules,
                records,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed in the store: keeping the running configuration");
            None
        }
    }
}

/// How many decided jobs may wait for the dispatcher: two rounds of
/// `max_in_flight`, enough for its batches, and no more. A job waits here in
/// arrival order, while a link left in the timer waits in due order; with the
/// earlier 4,096 a fresh fleet's reconciliation reads queued for 3.7 s at
/// 1,111 requests/s ahead of every POST (measured: 4.5 s from start to the
/// first POST, and the lateness benchmark's 2 s p99).
fn job_queue_len(max_in_flight: u32) -> usize {
    (2 * max_in_flight as usize).clamp(16, 4096)
}

/// The files in the config folder whose changes mean a reload: the config
/// file itself and a `links_file` beside it.
fn watched_names(config: &Config) -> Vec<std::ffi::OsString> {
    let dir = config.path.parent();
    let mut names: Vec<std::ffi::OsString> = config
        .path
        .file_name()
        .map(Into::into)
        .into_iter()
        .collect();
    if let Some(links) = &config.links_file
        && (links.parent() == dir || links.parent().is_some_and(|p| p.as_os_str().is_empty()))
    {
        names.extend(links.file_name().map(Into::into));
    }
    names
}

/// SIGHUP and (optionally) the config folder watcher both ask for a reload.
fn spawn_reload_sources(
    config: &Config,
    options: &Options,
    tx: mpsc::Sender<()>,
    cancel: CancellationToken,
) -> Option<crate::config_watch::ConfigWatch> {
    #[cfg(unix)]
    if options.reload_on_sighup {
        let tx = tx.clone();
        let cancel = cancel.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        s = hup.recv() => { if s.is_none() { break } tracing::info!("SIGHUP: reloading configuration"); let _ = tx.try_send(()); }
                    }
                }
            });
        }
    }
    if !options.watch_config {
        return None;
    }
    let dir = config.path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            d
        }
    })?;
    match crate::config_watch::watch_config_dir_for(
        dir,
        crate::config_watch::DEFAULT_DEBOUNCE,
        crate::config_watch::Relevant::Named(watched_names(config)),
    ) {
        Ok(mut watch) => {
            let mut rx = std::mem::replace(watch.receiver(), mpsc::channel(1).1);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        c = rx.recv() => { if c.is_none() { break } tracing::info!("config folder changed: reloading"); let _ = tx.try_send(()); }
                    }
                }
            });
            Some(watch)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config folder; reload with SIGHUP");
            None
        }
    }
}
