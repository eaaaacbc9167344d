//! How both HTTP listeners (`[server] listen` and `webhook_listen`) serve
//! connections, with limits that `axum::serve` does not expose: 240
//! connections that never finished their headers used up 256 file
//! descriptors and took `/healthz` and `/readyz` down with them.
//!
//! - A connection must send a request head within [`HEADER_READ_TIMEOUT`]
//!   (hyper's `header_read_timeout`, also between keep-alive requests), or
//!   it is closed.
//! - At most [`MAX_CONNECTIONS`] connections per listener are open at once;
//!   further ones wait in the kernel's accept queue (a semaphore permit is
//!   taken before `accept`), so a flood costs no descriptors of ours.
//! - HTTP/1.1 only: hyper-util's HTTP/2 auto-detection reads the preface
//!   with no deadline, so a client that sends nothing would hold a
//!   connection forever; Prometheus, probes and MoneyKit's webhooks (through
//!   the reverse proxy) all speak HTTP/1.1.
//!
//! Request bodies are limited per route (`DefaultBodyLimit`): see
//! [`super::MAX_REQUEST_BODY`] and the webhook receiver's `max_body`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request head. Generous for any real
/// client on a slow link (a head is a few hundred bytes), short enough that
/// a flood of stalled connections frees itself within seconds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections per listener. Prometheus, two probes and an operator
/// need a handful; MoneyKit's webhook bursts a few dozen. Two listeners at
/// this limit stay far inside the unit's `LimitNOFILE=8192`, and even
/// inside a 1,024-descriptor default.
pub const MAX_CONNECTIONS: usize = 512;

/// How long shutdown waits for requests in progress before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` with the limits above until `cancel` fires.
/// Returns only then (or if the listener fails for good).
pub(crate) async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before
                    // accept: both pass; retrying at once would spin.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open at shutdown were dropped");
    }
}
