//! Notices changes to the configuration folder, so the daemon can reload
//! without a restart or a SIGHUP.
//!
//! Watches the config file's *folder*, not the file, non-recursively. Watching
//! the file itself misses the two ways configs are really replaced:
//!
//! - editors and `install` write a new file and rename it over the old one, so
//!   a watch on the old inode sees nothing further;
//! - Kubernetes mounts a ConfigMap as `linkfresh.toml -> ..data/linkfresh.toml`
//!   and `..data -> ..2026_11_23_10_00_00.123`; an update writes a new
//!   timestamped folder, points a `..data_tmp` symlink at it and renames that
//!   over `..data`. The file's path never changes and no file is written in
//!   place; only the folder sees the create and the rename.
//!
//! The daemon counts only changes to the files it reads (the config file, a
//! `links_file` in the same folder) and to Kubernetes' `..data` entries
//! ([`Relevant::Named`]); anything else in the folder — logs, a SQLite store,
//! an editor's swap file — is noise. A reload re-reads the file and reloads
//! every link from the store, which for a large fleet is seconds of work, so
//! an extra reload is not free. A burst of counted events (one ConfigMap swap
//! is half a dozen) is coalesced into one signal after the folder has been
//! quiet for a short while. Files outside the folder (a `links_file`
//! elsewhere) are not watched: SIGHUP reloads them.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ::notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the folder must stay quiet before a burst of events is reported.
///
/// Long enough to swallow a whole ConfigMap swap or an editor's
/// write-rename-chmod dance, short enough that a reload feels immediate.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// The log target of the watcher's backend (the `notify` crate, through
/// the `log` bridge). It logs each raw event at `trace` before [`Relevant`]
/// can drop it, so the daemon's filter caps it at `info` unless `RUST_LOG`
/// names it (`RUST_LOG=trace,notify=trace` to debug the watcher): with a log
/// file in the config folder, each such line changed the file it was about.
/// This module itself logs only events it counts.
pub const BACKEND_LOG_TARGET: &str = "notify";

/// The longest a change may wait for the folder to go quiet: a folder that
/// never stops changing still yields a signal at least this often.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Why the configuration folder could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum ConfigWatchError {
    /// The platform watcher (inotify on Linux) could not be created, e.g. the
    /// per-user instance limit is reached.
    #[error("cannot create a file watcher: {0}")]
    Create(#[source] ::notify::Error),
    /// The folder could not be watched, e.g. it does not exist.
    #[error("cannot watch config folder {}: {source}", path.display())]
    Watch {
        /// The folder that was to be watched.
        path: PathBuf,
        /// What the watcher reported.
        #[source]
        source: ::notify::Error,
    },
    /// The thread that coalesces events could not be started.
    #[error("cannot start the config watch thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running watch on the configuration folder.
///
/// Keep it alive for as long as changes should be reported: dropping it stops
/// the OS watch and its helper thread.
#[derive(Debug)]
pub struct ConfigWatch {
    changes: mpsc::Receiver<()>,
    // Owns the OS watch and, through its event handler, the sending side of
    // the raw-event channel: dropping it ends the helper thread too.
    _watcher: RecommendedWatcher,
}

impl ConfigWatch {
    /// Waits for the next (coalesced) change of the folder.
    ///
    /// Returns `None` only if the watch has stopped for good. Changes made
    /// while nobody waits are remembered as one pending signal.
    pub async fn changed(&mut self) -> Option<()> {
        self.changes.recv().await
    }

    /// The receiving end, for callers that prefer to `select!` on a channel.
    pub fn receiver(&mut self) -> &mut mpsc::Receiver<()> {
        &mut self.changes
    }
}

/// Watches `dir` (the folder that holds the config file) with the default
/// debounce. See [`watch_config_dir_with`].
pub fn watch_config_dir(dir: &Path) -> Result<ConfigWatch, ConfigWatchError> {
    watch_config_dir_with(dir, DEFAULT_DEBOUNCE)
}

/// Which changes in the folder count.
#[derive(Debug, Clone)]
pub enum Relevant {
    /// Every change except mere reads.
    Everything,
    /// Changes to files with these names, and to any name starting with
    /// `..` (the Kubernetes atomic writer's `..data`, `..data_tmp` and
    /// timestamped folders).
    Named(Vec<std::ffi::OsString>),
}

/// Watches `dir` non-recursively and reports each burst of changes once,
/// `debounce` after the last event of the burst (or at most two seconds after
/// its first); every change counts.
///
/// An empty path means the current folder, so `Path::new("linkfresh.toml")
/// .parent()` can be passed as is. Needs no tokio runtime: events are
/// coalesced on a small helper thread and delivered through a tokio channel.
pub fn watch_config_dir_with(
    dir: &Path,
    debounce: Duration,
) -> Result<ConfigWatch, ConfigWatchError> {
    watch_config_dir_for(dir, debounce, Relevant::Everything)
}

/// Like [`watch_config_dir_with`], counting only the [`Relevant`] changes.
/// The daemon names its config file (and links file): with the default
/// `sqlite://linkfresh.db` or a log beside the config, counting every change
/// meant a full reload (re-read, re-sync, reload every link) every two
/// seconds under load.
pub fn watch_config_dir_for(
    dir: &Path,
    debounce: Duration,
    relevant: Relevant,
) -> Result<ConfigWatch, ConfigWatchError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };

    let (raw_tx, raw_rx) = std_mpsc::channel::<()>();
    let mut watcher = ::notify::recommended_watcher(move |res: ::notify::Result<Event>| {
        let counted = match res {
            Ok(event) => counts(&event, &relevant),
            Err(err) => {
                // The backend lost track (e.g. a queue overflow): assume the
                // worst and let the daemon re-read the config.
                tracing::warn!(error = %err, "config watcher error; treating as a change");
                true
            }
        };
        if counted {
            tracing::trace!("config folder change counted");
            // The receiver is gone only while the watch is being dropped.
            let _ = raw_tx.send(());
        }
    })
    .map_err(ConfigWatchError::Create)?;

    // Capacity 1: a signal not yet consumed already stands for any later change.
    let (tx, changes) = mpsc::channel(1);
    thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || coalesce(&raw_rx, &tx, debounce))
        .map_err(ConfigWatchError::Thread)?;

    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| ConfigWatchError::Watch {
            path: dir.to_path_buf(),
            source,
        })?;

    Ok(ConfigWatch {
        changes,
        _watcher: watcher,
    })
}

/// Whether an event means a watched file may have changed. Reads (open,
/// close without write) do not: the daemon reading its own config on reload
/// must not trigger another reload. An event without paths counts (the
/// backend could not say what changed).
fn counts(event: &Event, relevant: &Relevant) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    match relevant {
        Relevant::Everything => true,
        Relevant::Named(names) => {
            event.paths.is_empty()
                || event.paths.iter().any(|p| {
                    p.file_name().is_some_and(|name| {
                        name.as_encoded_bytes().starts_with(b"..")
                            || names.iter().any(|n| n.as_os_str() == name)
                    })
                })
        }
    }
}

/// Turns raw events into one signal per burst. Ends when the watcher (and with
/// it the raw sender) is dropped, or when the `ConfigWatch` receiver is gone.
fn coalesce(raw: &std_mpsc::Receiver<()>, tx: &mpsc::Sender<()>, debounce: Duration) {
    // Blocks until the first event of a burst.
    while raw.recv().is_ok() {
        let first = Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            match raw.recv_timeout(debounce.min(left)) {
                Ok(()) => continue,
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        match tx.try_send(()) {
            // Full: an unconsumed signal already covers this burst.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}
