//! What asks the daemon to reload its configuration: SIGHUP (systemd's
//! `ExecReload`) and, optionally, a change in the config folder (a
//! Kubernetes ConfigMap is swapped by a symlink flip, with no signal). Both
//! are process concerns, so the composition root owns them; the daemon only
//! receives one message per request.

use std::ffi::OsString;
use std::path::Path;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config_watch::{self, ConfigWatch};

/// The SIGHUP listener, installed by [`Sighup::install`] before the server
/// answers its first `/healthz`: until a handler is installed, SIGHUP's
/// default action ends the process, so a supervisor that reloads as soon as
/// the daemon is healthy would kill it. A SIGHUP that arrives between the
/// install and [`spawn`] is kept by the listener and reloads once the daemon
/// runs.
pub(crate) struct Sighup {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Sighup {
    /// Installs the SIGHUP handler now if `enabled` (the listener registers
    /// with the OS when created, not when first polled).
    pub(crate) fn install(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let hup = enabled
                .then(|| {
                    signal(SignalKind::hangup())
                        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
                        .ok()
                })
                .flatten();
            Self { hup }
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            Self {}
        }
    }
}

/// Forwards every reload request to `tx` until `cancel` fires, in tasks on
/// `tracker`: SIGHUP's from `sighup` (installed earlier) and, if
/// `watch_config`, the config folder's changes. The returned watcher
/// must be kept alive as long as they run.
pub(crate) fn spawn(
    tracker: &TaskTracker,
    config: &Config,
    watch_config: bool,
    sighup: Sighup,
    tx: mpsc::Sender<()>,
    cancel: &CancellationToken,
) -> Option<ConfigWatch> {
    #[cfg(unix)]
    if let Some(mut hup) = sighup.hup {
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    s = hup.recv() => {
                        if s.is_none() { break }
                        tracing::info!("SIGHUP: reloading configuration");
                        let _ = tx.try_send(());
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = sighup;
    if !watch_config {
        return None;
    }
    let dir = config.path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    })?;
    match config_watch::watch_config_dir_for(
        dir,
        config_watch::DEFAULT_DEBOUNCE,
        config_watch::Relevant::Named(watched_names(config)),
    ) {
        Ok(mut watch) => {
            let mut rx = std::mem::replace(watch.receiver(), mpsc::channel(1).1);
            let cancel = cancel.clone();
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        c = rx.recv() => {
                            if c.is_none() { break }
                            tracing::info!("config folder changed: reloading");
                            let _ = tx.try_send(());
                        }
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

/// The files in the config folder whose changes mean a reload: the config
/// file itself and a `links_file` beside it.
fn watched_names(config: &Config) -> Vec<OsString> {
    let dir = config.path.parent();
    let mut names: Vec<OsString> = config
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
