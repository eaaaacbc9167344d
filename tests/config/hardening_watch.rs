//! Issue 14, item 13: with `RUST_LOG=trace` and the daemon's log file in the
//! config folder, every line logged about a change of the log file changed
//! it again (741,539 lines in 5 s). Nothing may be logged about a file the
//! watcher does not read, at any level.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use linkfresh::config_watch::{Relevant, watch_config_dir_for};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, registry};

/// Log events (from any thread, `log` records included) that mention the
/// unrelated file.
static ABOUT_LOG_FILE: AtomicUsize = AtomicUsize::new(0);
const LOG_FILE: &str = "linkfresh.log";

struct CountMentions;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, _: &Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{value:?} ");
    }
}

impl<S: tracing::Subscriber> Layer<S> for CountMentions {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if m.0.contains(LOG_FILE) {
            ABOUT_LOG_FILE.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test]
async fn a_busy_log_file_beside_the_config_is_neither_a_change_nor_logged_even_at_trace() {
    // The daemon's own filter for RUST_LOG=trace, on a global subscriber so
    // the watcher's threads (and the `log` records of its backend) reach it.
    registry()
        .with(linkfresh::telemetry::filter(Some("trace"), "info"))
        .with(CountMentions)
        .try_init()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    std::fs::write(&config, "").unwrap();
    let mut watch = watch_config_dir_for(
        dir.path(),
        Duration::from_millis(50),
        Relevant::Named(vec!["linkfresh.toml".into()]),
    )
    .unwrap();

    let mut log = std::fs::File::create(dir.path().join(LOG_FILE)).unwrap();
    for i in 0..200 {
        writeln!(log, "line {i}").unwrap();
        log.flush().unwrap();
    }
    // inotify reports in order: once the config change arrives, every event
    // of the log file before it has been seen (and, before the fix, logged).
    std::fs::write(&config, "# changed\n").unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the config change is reported")
        .unwrap();
    assert_eq!(
        ABOUT_LOG_FILE.load(Ordering::Relaxed),
        0,
        "log lines were written about a file the watcher does not read"
    );
}
