//! The composition root: the one place that builds the program from the
//! settings and runs it. [`Application::build`] opens and syncs the store,
//! builds the MoneyKit client and binds the listeners; [`run_until_stopped`]
//! starts the metrics, the HTTP server, the webhook receiver, the reload
//! sources and the daemon, hands each the shared handles it needs (the
//! heartbeat, the store's health, the rules in force), and returns when every
//! task it started has stopped. `linkfresh run`, `linkfresh demo` and the
//! tests build and run it the same way.
//!
//! [`run_until_stopped`]: Application::run_until_stopped

mod reload_sources;
mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::daemon::{self, Activity, DaemonError};
use crate::health::Heartbeat;
use crate::moneykit::{ClientConfig, MoneyKit};
use crate::secret::redact_url;
use crate::server::{self, AppState, fleet::FleetContext};
use crate::store::health::StoreHealth;
use crate::store::{self, Store, owner::OwnerLock};
use crate::webhook::{self, WebhookSettings, WebhookState};

/// Options that tests and `demo` set; `run` sets the reload sources.
#[derive(Default)]
pub struct Options {
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

/// The program, built and ready to run.
pub struct Application {
    config: Config,
    store: Arc<dyn Store>,
    client: MoneyKit,
    listener: TcpListener,
    webhook_listener: Option<TcpListener>,
    clock: Clock,
    options: Options,
    /// Held while the daemon runs on a SQLite file (see [`store::owner`]).
    owner: Option<OwnerLock>,
}

impl Application {
    /// Connects the store (migrating it), syncs the configured links, builds
    /// the client and binds the server's listeners (port 0 allowed).
    pub async fn build(mut config: Config, mut options: Options) -> Result<Self, DaemonError> {
        let clock = Clock::default();
        let client = client_from(&config)?;
        server::check_extra_post_route(&config.server.webhook_path).map_err(|why| {
            DaemonError::Config(format!(
                "{}: [server] webhook_path = {:?} cannot be served beside the daemon's own routes: {why}",
                config.path.display(),
                config.server.webhook_path
            ))
        })?;
        let owner =
            OwnerLock::acquire(&config.database.url).map_err(|e| DaemonError::Runtime(e.into()))?;
        let store = match options.store.take() {
            Some(store) => store,
            None => store::connect(&config.database.url)
                .await
                .with_context(|| {
                    format!(
                        "while opening the store {}",
                        redact_url(&config.database.url)
                    )
                })?,
        };
        store.verify_readable().await.map_err(|e| {
            DaemonError::Runtime(anyhow::anyhow!(unreadable_store(&config.database.url, &e)))
        })?;
        // The links leave the configuration here: the store holds them from
        // now on, and a reload re-reads the file.
        let specs = daemon::link_specs(std::mem::take(&mut config.links));
        let report = store
            .sync_config_numbered(
                config.revision_number,
                &config.revision,
                &specs,
                clock.now(),
            )
            .await
            .context("while syncing the configured links into the store")?;
        drop(specs);
        // Event rows are written only while `[events]` is configured.
        store
            .set_event_endpoint(config.events.as_ref().map(|e| e.url.as_str()))
            .await
            .context("while recording the [events] endpoint in the store")?;
        daemon::log_if_behind(&report, config.revision_number);
        if let Some(ownership) = store.ownership() {
            ownership
                .join(config.database.partitions)
                .await
                .map_err(|e| match e {
                    store::StoreError::PartitionsMismatch { .. } => {
                        DaemonError::Config(format!("{}: {e}", config.path.display()))
                    }
                    e => DaemonError::Runtime(
                        anyhow::Error::new(e).context("while joining the replicas' partitions"),
                    ),
                })?;
        }
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

    /// Runs until `cancel` fires (`Ok`: exit 0) or a fatal error (exit 1),
    /// and returns once every task it started has ended.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> Result<(), DaemonError> {
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
        // Before the server answers its first `/healthz` (see `Sighup`).
        let sighup = reload_sources::Sighup::install(options.reload_on_sighup);
        let tracker = TaskTracker::new();
        // Everything below stops on `stop`: on shutdown (a child of
        // `cancel`) or when the daemon ends on its own (a fatal error).
        let stop = cancel.child_token();
        let heartbeat = Heartbeat::default();
        heartbeat.beat();
        let store_health = StoreHealth::new();
        let (rules_tx, rules_rx) = watch::channel(Arc::new(config.rules.clone()));
        let (budget_tx, budget_rx) = watch::channel(config.budget.clone());
        let profile_ages = crate::profile_ages::ProfileAges::default();
        let admin_token = config
            .server
            .admin_token
            .read("[server] admin_token")
            .map_err(DaemonError::Config)?;
        let state = AppState::new(
            crate::metrics::install(),
            store.clone(),
            client.clone(),
            heartbeat.clone(),
            FleetContext::new(rules_rx, admin_token, clock)
                .with_budget(budget_rx)
                .with_profile_ages(profile_ages.clone()),
        )
        .with_store_health(store_health.clone());
        let webhooks = WebhookState::new(
            store.clone(),
            webhook::jwks_url(&config.moneykit.base_url),
            reqwest::Client::builder()
                .timeout(config.moneykit.request_timeout)
                .user_agent(concat!("linkfresh/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("while building the JWKS client")?,
            clock,
            WebhookSettings {
                path: config.server.webhook_path.clone(),
                ..Default::default()
            },
        );
        // The servers stop last, after the daemon has drained, so that
        // health and metrics answer while it does (see `Servers::stop`).
        let mut servers = Servers::new(&tracker, heartbeat.clone());
        if let Some(l) = webhook_listener {
            servers.spawn(
                "webhook listener ([server] webhook_listen)",
                webhook::serve(l, webhooks.clone(), servers.cancel.clone()),
            );
        }
        let main_server = server::serve(
            listener,
            state,
            webhook::router(webhooks),
            servers.cancel.clone(),
        );
        servers.spawn("HTTP server ([server] listen)", main_server);

        let ended = match first_token(&client, &stop, &servers).await {
            FirstToken::Obtained => None,
            FirstToken::Stopped => Some(Ok(())),
            FirstToken::Failed(e) => Some(Err(e)),
        };
        if let Some(ended) = ended {
            servers.stop().await;
            tracker.close();
            tracker.wait().await;
            return ended;
        }

        let (reload_tx, reload_rx) = mpsc::channel(4);
        let config_watch = reload_sources::spawn(
            &tracker,
            &config,
            options.watch_config,
            sighup,
            reload_tx,
            &stop,
        );
        // Outbound events (issue 18); `[events]` changes apply at restart.
        if let Some(events) = config.events.clone() {
            tracker.spawn(crate::events::deliver::run(
                store.clone(),
                events,
                stop.clone(),
            ));
        }
        let parts = daemon::Parts {
            config,
            store,
            client,
            clock,
            heartbeat,
            store_health,
            rules: rules_tx,
            budget: budget_tx,
            profile_ages,
            reload: reload_rx,
            activity: options.activity,
        };
        let ended = tracker
            .spawn(daemon::run(parts, stop.clone()))
            .await
            .unwrap_or_else(|e| {
                Err(DaemonError::Runtime(anyhow::anyhow!(
                    "the daemon task failed: {e}"
                )))
            });
        stop.cancel();
        servers.stop().await;
        drop(config_watch);
        tracker.close();
        tracker.wait().await;
        if ended.is_ok() {
            drop(owner);
            tracing::info!("stopped cleanly");
        }
        ended
    }
}

/// The supervised server tasks (see [`supervise`]) and how to stop them.
struct Servers {
    tracker: TaskTracker,
    heartbeat: Heartbeat,
    /// Asks the servers to stop; a server that ends before is fatal.
    cancel: CancellationToken,
    /// Cancelled when a server ended on its own.
    failed: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

impl Servers {
    fn new(tracker: &TaskTracker, heartbeat: Heartbeat) -> Self {
        Self {
            tracker: tracker.clone(),
            heartbeat,
            cancel: CancellationToken::new(),
            failed: CancellationToken::new(),
            handles: Vec::new(),
        }
    }

    fn spawn(
        &mut self,
        name: &'static str,
        server: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.handles.push(supervise::spawn(
            &self.tracker,
            name,
            server,
            self.cancel.clone(),
            self.heartbeat.clone(),
            self.failed.clone(),
        ));
    }

    /// Stops every server and waits until each has ended.
    async fn stop(self) {
        self.cancel.cancel();
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// How the wait for MoneyKit's first token ended.
enum FirstToken {
    /// The daemon can start.
    Obtained,
    /// Shutdown was asked for first.
    Stopped,
    /// The credentials were refused, or a server stopped.
    Failed(DaemonError),
}

/// Waits for MoneyKit's first token: bad credentials stop the program here
/// with a clear message; an unreachable MoneyKit is retried while the
/// server already answers `/healthz`.
async fn first_token(client: &MoneyKit, stop: &CancellationToken, servers: &Servers) -> FirstToken {
    let mut delay = Duration::from_millis(500);
    loop {
        match client.ensure_token().await {
            Ok(()) => return FirstToken::Obtained,
            Err(e) if e.is_fatal() => {
                return FirstToken::Failed(DaemonError::Runtime(anyhow::anyhow!(e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "no access token yet");
                tokio::select! {
                    () = stop.cancelled() => return FirstToken::Stopped,
                    () = servers.failed.cancelled() => {
                        let why = supervise::reason(&servers.heartbeat);
                        return FirstToken::Failed(DaemonError::Runtime(anyhow::anyhow!(why)));
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Builds the MoneyKit client from the configuration, reading the secret.
fn client_from(config: &Config) -> Result<MoneyKit, DaemonError> {
    let m = &config.moneykit;
    // The same judgement as `check` (exit 2 naming the key), with every
    // secret file required to be there.
    let creds = config::credentials(config, config::Stage::Run)
        .map_err(|e| DaemonError::Config(e.to_string()))?;
    let secret = creds.client_secret.ok_or_else(|| {
        DaemonError::Config(format!(
            "{}: no client secret could be read",
            config.path.display()
        ))
    })?;
    MoneyKit::new(ClientConfig {
        base_url: m.base_url.clone(),
        client_id: creds.client_id,
        client_secret: secret,
        api_version: m.api_version.clone(),
        request_timeout: m.request_timeout,
        scope: m.scope.clone(),
    })
    .map_err(|e| DaemonError::Config(e.to_string()))
}

/// What `run` says when the store cannot be read at start: what is wrong
/// and what the operator can do about it.
fn unreadable_store(url: &str, e: &store::StoreError) -> String {
    let file =
        OwnerLock::path_for(url).map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
    format!(
        "the store {} cannot be read: {e}. Check it with `sqlite3 {file} 'PRAGMA integrity_check'`; \
         restore it from a backup (or move it away to start with an empty store, whose links \
         then wait one window before their first refresh)",
        redact_url(url)
    )
}
