//! Logging set-up: human-readable by default, JSON for log shippers; the
//! level comes from `RUST_LOG` (default `info`). Logs go to stderr so that
//! command output on stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

/// The log line format (`--log-format`, `LINKFRESH_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Compact lines for people.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber with `default_level` unless `RUST_LOG`
/// says otherwise; later calls are ignored (tests).
pub fn init(format: LogFormat, default_level: &str) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), default_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The filter `init` installs: `rust_log` (the value of `RUST_LOG`), or
/// `default_level` when it is unset or invalid; public so tests count what
/// the daemon would log.
///
/// The config watcher's backend is capped at `info` unless `rust_log` names
/// it: it logs every raw inotify event of the config folder at `trace`,
/// before the watcher can drop the files it does not read, so a log file
/// in that folder logged its own growth without end (see
/// [`crate::config_watch::BACKEND_LOG_TARGET`]).
pub fn filter(rust_log: Option<&str>, default_level: &str) -> EnvFilter {
    let target = crate::config_watch::BACKEND_LOG_TARGET;
    let filter = rust_log
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    if rust_log.is_some_and(|s| s.contains(target)) {
        return filter;
    }
    match format!("{target}=info").parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    }
}
