//! Graceful shutdown: one signal future (SIGTERM or SIGINT) feeding one
//! cancellation token that every loop selects on.

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// A token cancelled when `signal` resolves; hand clones to every task.
pub fn token_on(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        signal.await;
        child.cancel();
    });
    token
}
