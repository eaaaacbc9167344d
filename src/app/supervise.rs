//! The HTTP listeners run as tasks beside the loop. One that ends before
//! shutdown (a panic, an error) used to leave the daemon half alive: still
//! sending refreshes, with no health, metrics, admin API or webhooks, so no
//! probe could notice. A supervised server that ends early records why as
//! the daemon's fatal error (the loop stops, `run` returns it: exit 1).

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Heartbeat;

/// Spawns the server `name` on `tracker`. If it ends while `stopping` is not
/// cancelled, or panics, the reason goes to `heartbeat.fatal` (which the
/// scheduler checks after every event, at least once a second) and `failed`
/// is cancelled (for the start-up wait for a token, before the loop runs).
/// The handle returned ends when the server has.
pub(crate) fn spawn(
    tracker: &TaskTracker,
    name: &'static str,
    server: impl Future<Output = ()> + Send + 'static,
    stopping: CancellationToken,
    heartbeat: Heartbeat,
    failed: CancellationToken,
) -> JoinHandle<()> {
    let task = tracker.spawn(server);
    tracker.spawn(async move {
        let why = match task.await {
            Ok(()) if stopping.is_cancelled() => return,
            Ok(()) => format!("the {name} stopped unexpectedly; stopping the daemon"),
            Err(e) => format!("the {name} failed ({e}); stopping the daemon"),
        };
        tracing::error!(error = %why, "server task ended");
        heartbeat.set_fatal(why);
        failed.cancel();
    })
}

/// The reason recorded by [`spawn`], for the start-up path.
pub(crate) fn reason(heartbeat: &Heartbeat) -> String {
    heartbeat
        .fatal()
        .unwrap_or_else(|| "a server task ended".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_task_that_panics_records_a_fatal_error_naming_it() {
        let heartbeat = Heartbeat::default();
        let failed = CancellationToken::new();
        let watcher = spawn(
            &TaskTracker::new(),
            "webhook listener",
            async { panic!("Overlapping method route") },
            CancellationToken::new(),
            heartbeat.clone(),
            failed.clone(),
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), failed.cancelled())
            .await
            .expect("the failure is signalled");
        watcher.await.unwrap();
        let why = reason(&heartbeat);
        assert!(why.contains("webhook listener"), "{why}");
        assert!(why.contains("panicked"), "{why}");
    }

    #[tokio::test]
    async fn a_server_that_ends_without_being_asked_is_fatal_but_one_asked_to_stop_is_not() {
        let heartbeat = Heartbeat::default();
        let failed = CancellationToken::new();
        spawn(
            &TaskTracker::new(),
            "HTTP server",
            async {},
            CancellationToken::new(),
            heartbeat.clone(),
            failed.clone(),
        )
        .await
        .unwrap();
        assert!(failed.is_cancelled());
        assert!(reason(&heartbeat).contains("stopped unexpectedly"));

        let heartbeat = Heartbeat::default();
        let (stopping, failed) = (CancellationToken::new(), CancellationToken::new());
        stopping.cancel();
        spawn(
            &TaskTracker::new(),
            "HTTP server",
            async {},
            stopping,
            heartbeat.clone(),
            failed.clone(),
        )
        .await
        .unwrap();
        assert!(!failed.is_cancelled());
        assert!(heartbeat.fatal().is_none());
    }
}
