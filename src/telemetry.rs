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
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
