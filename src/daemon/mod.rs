//! The daemon: the run loop that keeps the links fresh. The composition
//! root (`app`) builds its [`Parts`] and calls [`run`]; the daemon
//! names neither the server, the webhook receiver nor the command line, and
//! shares what they read through handles below all of them
//! ([`Heartbeat`], [`StoreHealth`], the current [`Rules`]).
//!
//! Data flow: store → [`loader`] (pages) → [`table`] (in memory) →
//! [`scheduler`] asks the policy → [`dispatch`] paces, commits intents,
//! sends → answers come back to the scheduler → [`outcome`] decides their
//! effect → [`writer`] group-commits them. A reload ([`reload`]) re-reads
//! the config, syncs it, and publishes the new rules.

pub(crate) mod budget;
mod budget_round;
mod chunked;
pub(crate) mod discovery;
pub(crate) mod dispatch;
pub(crate) mod gauges;
pub(crate) mod limiter;
pub(crate) mod loader;
pub(crate) mod membership;
pub(crate) mod outcome;
mod parked;
mod read_outcome;
mod reload;
mod replica;
pub(crate) mod scheduler;
pub(crate) mod share;
mod slot;
pub(crate) mod table;
mod tags;
pub(crate) mod timer;
mod write_round;
pub(crate) mod writer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use self::reload::{link_specs, log_if_behind};
use crate::clock::Clock;
use crate::config::{BudgetConfig, Config};
use crate::domain::{LinkId, LinkState};
use crate::health::Heartbeat;
use crate::moneykit::MoneyKit;
use crate::policy::Rules;
use crate::store::Store;
use crate::store::health::StoreHealth;

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

/// What the loop runs with, built by the composition root from the settings.
pub(crate) struct Parts {
    /// The checked configuration; its links are already in the store.
    pub config: Config,
    /// The durable state, migrated and synced.
    pub store: Arc<dyn Store>,
    /// The MoneyKit client, holding a token already.
    pub client: MoneyKit,
    /// The one clock.
    pub clock: Clock,
    /// Beaten by the loop; its fatal slot stops it.
    pub heartbeat: Heartbeat,
    /// Whether the store can commit, as the writer and loader see it.
    pub store_health: StoreHealth,
    /// The rules in force: a reload publishes its new rules here, so that
    /// whoever explains links (the server) uses the ones the loop uses.
    pub rules: watch::Sender<Arc<Rules>>,
    /// The `[budget]` in force, published like `rules`.
    pub budget: watch::Sender<Option<BudgetConfig>>,
    /// Where the gauge pass leaves the data age per profile (fleet page).
    pub profile_ages: crate::profile_ages::ProfileAges,
    /// One message per reload request (SIGHUP, config folder change).
    pub reload: mpsc::Receiver<()>,
    /// Receives one [`Activity`] per answer (`demo`, tests).
    pub activity: Option<mpsc::UnboundedSender<Activity>>,
}

/// Runs the loop until `cancel` fires (`Ok`) or a fatal error (a fatal
/// MoneyKit answer, a server that stopped: `Err`), then drains requests in
/// flight and flushes their outcomes.
pub(crate) async fn run(parts: Parts, cancel: CancellationToken) -> Result<(), DaemonError> {
    let Parts {
        config,
        store,
        client,
        clock,
        heartbeat,
        store_health,
        rules,
        budget: published_budget,
        profile_ages,
        reload,
        activity,
    } = parts;
    // The claims mark first: a claim committed while the links load is
    // merged by the first poll rather than missed.
    let shared = replica::is_shared(&config.database.url);
    // Partitioned replicas never poll the claims (see `merge::poll_claims`),
    // and the mark is a scan of `links` (its index is gone: issue 16).
    let claim_seq = if shared && store.ownership().is_none() {
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
    // Requests in flight, the loader and background store work: waited for
    // (at most 2 s) once the loop has ended.
    let tasks = TaskTracker::new();

    let (jobs_tx, jobs_rx) = mpsc::channel(job_queue_len(config.moneykit.max_in_flight));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (writes_tx, writes_rx) = mpsc::unbounded_channel();
    let limiter = limiter::Limiter::new(config.moneykit.max_requests_per_second);
    // Partitioned ownership (PostgreSQL): the heartbeat decides which links
    // this replica schedules and what share of the fleet's limits it uses;
    // until its first beat, none and nothing.
    let replica = replica::replica_id();
    let partitioned = store.ownership().is_some() && shared;
    let in_flight = Arc::new(Semaphore::new(if partitioned {
        0
    } else {
        config.moneykit.max_in_flight as usize
    }));
    // Not a child of `cancel`: the heartbeat goes on while requests drain.
    let membership_cancel = CancellationToken::new();
    let (holdings, membership) = if partitioned {
        let (tx, rx) = watch::channel(Arc::new(membership::Holdings::default()));
        let task = membership::Membership {
            store: store.clone(),
            replica: replica.clone(),
            lease: config.database.lease,
            initial_settle: config.database.initial_settle,
            request_timeout: config.moneykit.request_timeout,
            share: share::FleetShare::new(
                limiter.clone(),
                in_flight.clone(),
                config.moneykit.max_requests_per_second,
                config.moneykit.max_in_flight,
            ),
        };
        let handle = tokio::spawn(task.run(tx, membership_cancel.clone()));
        (Some(rx), Some(handle))
    } else {
        (None, None)
    };
    let writer = tokio::spawn(writer::run(
        store.clone(),
        writes_rx,
        writes_tx.downgrade(),
        clock,
        store_health.clone(),
        published_budget.subscribe(),
    ));
    // The dispatcher stops taking new work as soon as shutdown begins (its
    // token is a child of `cancel`); the scheduler drains answers itself.
    let dispatch_cancel = cancel.child_token();
    let dispatcher = dispatch::Dispatcher {
        writes: writes_tx.clone(),
        client: client.clone(),
        limiter: limiter.clone(),
        in_flight,
        staging: Arc::new(Semaphore::new(2 * config.moneykit.max_in_flight as usize)),
        clock,
        tracker: tasks.clone(),
        replica: replica.clone(),
        claims: shared,
        lease: TimeDelta::from_std(config.database.lease).unwrap_or(TimeDelta::seconds(15)),
        holdings: holdings.clone(),
    };
    let dispatcher =
        tokio::spawn(Arc::new(dispatcher).run(jobs_rx, done_tx, dispatch_cancel.clone()));
    let discovery_cancel = cancel.child_token();
    let discovery = config.discovery.enabled.then(|| {
        let task = discovery::Discovery {
            store: store.clone(),
            client: client.clone(),
            limiter: limiter.clone(),
            config: config.discovery.clone(),
            clock,
        };
        tokio::spawn(task.run(discovery_cancel.clone()))
    });

    let budget = match &config.budget {
        Some(b) => {
            let since = clock.now() - b.budget.span();
            let usage = store
                .posts_since(since, b.budget.bucket(), None)
                .await
                .context("while reading the POSTs the budget has spent")?;
            Some(budget::BudgetGate::new(b.clone(), usage))
        }
        None => None,
    };
    let current = Rules::clone(&rules.borrow());
    let mut table = table::LinkTable::default();
    table.set_profiles(current.profiles.clone());
    let scheduler = scheduler::Scheduler {
        table,
        // Every link at once on SQLite; on PostgreSQL those of each
        // partition as it is gained (see `scheduler::Owned`).
        loading: (!partitioned)
            .then(|| loader::spawn(&tasks, store.clone(), cancel.clone(), store_health.clone())),
        owned: holdings.map(scheduler::Owned::new),
        reloading: None,
        store_health: store_health.clone(),
        timer: timer::Timer::default(),
        rules: current,
        published_rules: rules,
        published_budget,
        profile_ages,
        clock,
        store: store.clone(),
        jobs: jobs_tx,
        done: done_rx,
        writes: writes_tx,
        limiter,
        activity,
        heartbeat,
        reload,
        config_path: config.path.clone(),
        change_seq,
        in_flight: 0,
        history_retention: TimeDelta::from_std(config.database.history_retention)
            .unwrap_or(TimeDelta::days(30)),
        shared,
        claim_seq,
        refused: Vec::new(),
        tasks: tasks.clone(),
        budget,
        replica: replica.clone(),
    };
    crate::notify::ready();
    tracing::info!(listen = %config.server.listen, "linkfresh is running");

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
    discovery_cancel.cancel();
    if let Some(discovery) = discovery {
        let _ = discovery.await;
    }
    let _ = dispatcher.await;
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    // The scheduler (and with it the writes sender) is gone: the writer
    // flushes what is queued and ends.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    // Last, once nothing of ours is in flight: the others take this
    // replica's partitions at their next heartbeat rather than after a lease.
    membership_cancel.cancel();
    if let Some(membership) = membership {
        let _ = membership.await;
        if let Some(ownership) = store.ownership()
            && let Err(e) = ownership.leave(&replica).await
        {
            tracing::warn!(error = %e, "could not release this replica's partitions; they will be taken when its lease expires");
        }
    }
    match ended {
        scheduler::Ended::Shutdown => Ok(()),
        scheduler::Ended::Fatal(msg) => Err(DaemonError::Runtime(anyhow::anyhow!(msg))),
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
