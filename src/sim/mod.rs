//! A stand-in for MoneyKit that speaks exactly the wire contract in
//! MONEYKIT_API.md: tokens that expire, per-link per-product sliding windows
//! answered with 429 + `Retry-After`, links that are deleted, missing, broken
//! or lack permissions, and injected faults (5xx, outages, slow or malformed
//! answers). It counts what a client did wrong (`/_sim/stats`), so tests can
//! assert "no request inside a window", and reports how fresh each product
//! is (`/_sim/freshness`). It never imports the daemon.
//!
//! - `config`: [`SimConfig`] and friends, [`load_config`].
//! - `state`: the per-link memory and [`SimStats`].
//! - `server`: the axum routes.

mod config;
mod server;
mod state;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::domain::LinkId;
use crate::moneykit::wire::Link;

pub use config::{
    Faults, Outage, RetryAfterFormat, SimConfig, SimConfigError, SimLink, SimLinkState, Windows,
    load_config,
};
pub use state::{ProductFreshness, SimStats};
pub use webhooks::{
    SigningKey, WebhookDelivery, hex_sha256, product_refresh_event, state_changed_event,
    transactions_updates_event,
};

use server::Shared;
use state::State;

fn shared(cfg: SimConfig, clock: Clock) -> Arc<Shared> {
    Arc::new(Shared {
        state: Mutex::new(State::new(cfg, clock.now())),
        webhooks: webhooks::Webhooks::new(clock),
        clock,
    })
}

async fn serve_shared(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, server::router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the simulator on `listener` until `shutdown` completes; window
/// arithmetic and timestamps follow `clock`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_shared(listener, shared(cfg, clock), shutdown).await
}

/// `linkfresh sim`: binds `listen` and serves until `shutdown`.
pub async fn run_standalone(
    listen: SocketAddr,
    cfg: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, links = cfg.links.len(), "MoneyKit simulator listening");
    serve(listener, cfg, Clock::system(), shutdown).await
}

/// Starts the simulator on `127.0.0.1:0` in this process; for tests.
pub async fn spawn(cfg: SimConfig) -> SimHandle {
    spawn_with_clock(cfg, Clock::system()).await
}

/// Like [`spawn`], with a clock the test controls (paused tokio time).
pub async fn spawn_with_clock(cfg: SimConfig, clock: Clock) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 for the simulator");
    let addr = listener
        .local_addr()
        .expect("local address of the simulator");
    let shared = shared(cfg, clock);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_shared(listener, shared.clone(), async move {
        let _ = rx.await;
    }));
    SimHandle {
        addr,
        shared,
        stop: Some(tx),
        task: Some(task),
    }
}

/// A running in-process simulator: its address, its statistics and knobs
/// to change its behaviour mid-test.
pub struct SimHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, for `ClientConfig::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters (the same as `GET /_sim/stats`).
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// The most refresh POSTs that arrived in any `(t - window, t]`: what a
    /// budget of that window must keep within.
    pub fn busiest_window(&self, window: chrono::TimeDelta) -> u64 {
        busiest_window(&self.shared.lock().post_times, window)
    }

    /// Refresh POSTs that arrived so far.
    pub fn posts(&self) -> u64 {
        self.shared.lock().post_times.len() as u64
    }

    /// Adds a link or changes how it behaves; its window history is kept.
    pub fn set_link(&self, link: SimLink) {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let before = st.links.get(&link.id).map(|l| l.cfg.state);
        st.upsert(link.clone(), now);
        drop(st);
        self.notify_state(before, &link);
    }

    /// Sends `link.state_changed` when a link's condition changed and it has a webhook.
    fn notify_state(&self, before: Option<SimLinkState>, link: &SimLink) {
        if let Some(url) = &link.webhook
            && before.is_some_and(|b| b != link.state)
        {
            self.shared
                .webhooks
                .state_changed(url.clone(), &link.id, &link.tags, link.state);
        }
    }

    /// Changes only a link's condition (creating it if unknown).
    pub fn set_link_fault(&self, id: &LinkId, state: SimLinkState) {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let before = st.links.get(id).map(|l| l.cfg.state);
        let mut link = st
            .links
            .get(id)
            .map(|l| l.cfg.clone())
            .unwrap_or_else(|| SimLink::healthy(id.clone()));
        link.state = state;
        st.upsert(link.clone(), now);
        drop(st);
        self.notify_state(before, &link);
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().cfg.faults = faults;
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: std::time::Duration) {
        self.shared.lock().cfg.token_ttl = ttl;
    }

    /// Expires every token issued so far, as a server-side revocation or a
    /// clock disagreement would: their next use gets 401 `expired_access_token`.
    pub fn expire_tokens(&self) {
        let now = self.shared.clock.now();
        for exp in self.shared.lock().tokens.values_mut() {
            *exp = now;
        }
    }

    /// While on, every token (even a fresh one) is refused as expired.
    pub fn refuse_all_tokens(&self, on: bool) {
        self.shared.lock().refuse_tokens = on;
    }

    /// The link as `GET /links/{id}` would show it, if the simulator knows it.
    pub fn link(&self, id: &LinkId) -> Option<Link> {
        self.shared.lock().links.get(id).map(|l| l.view())
    }

    /// The clock the simulator reads.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The most of `times` (in arrival order) inside any `(t - window, t]`.
pub fn busiest_window(times: &[DateTime<Utc>], window: chrono::TimeDelta) -> u64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut start = 0;
    let mut best = 0;
    for (end, t) in sorted.iter().enumerate() {
        while sorted[start] <= *t - window {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best as u64
}
