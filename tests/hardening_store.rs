//! Issue 14, items 2, 3 and 4: the SQLite store under a full disk, a
//! damaged file, and a second daemon reaching the file by another name.

#[path = "common/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids, wait_until};
use linkfresh::sim::{self, SimConfig};

struct Setup {
    sim: sim::SimHandle,
    dir: tempfile::TempDir,
    db: PathBuf,
    port: u16,
}

fn sim_config() -> SimConfig {
    SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    }
}

async fn setup() -> Setup {
    let sim = sim::spawn(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lf.db");
    Setup {
        sim,
        dir,
        db,
        port: free_port(),
    }
}

impl Setup {
    /// Writes a config named `name` whose store is `db` and returns its path.
    fn config(&self, name: &str, db: &Path, port: u16) -> PathBuf {
        let body = daemon_toml(
            &self.sim.base_url(),
            db,
            &sim_config(),
            &link_ids("mk_store", 3),
            "\"accounts\"",
            "",
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }
}

async fn wait_running(d: &DaemonProcess) {
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log()
            .contains("linkfresh is running"))
        .await,
        "{}",
        d.log()
    );
}

/// Starts a daemon on `lf.db`, then a second one on `alias` (another name
/// for the same file): the second must exit 1 naming the first's pid.
async fn a_second_daemon_on_an_alias_is_refused(make_alias: impl FnOnce(&Path, &Path)) {
    let s = setup().await;
    let first_config = s.config("first.toml", &s.db, s.port);
    let mut first = DaemonProcess::spawn(&first_config, "first");
    wait_running(&first).await;
    let alias = s.dir.path().join("alias.db");
    make_alias(&s.db, &alias);
    let second_config = s.config("second.toml", &alias, free_port());
    let mut second = DaemonProcess::spawn(&second_config, "second");
    assert_eq!(
        second.wait(Duration::from_secs(10)),
        Some(1),
        "{}",
        second.log()
    );
    let log = second.log();
    assert!(log.contains("in use by another linkfresh daemon"), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.child.id())),
        "names the holder: {log}"
    );
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(10)), Some(0), "{}", first.log());
    assert_eq!(s.sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_symlink_to_the_database_exits_1_naming_the_holder() {
    a_second_daemon_on_an_alias_is_refused(|db, alias| {
        std::os::unix::fs::symlink(db, alias).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_hard_link_to_the_database_exits_1_naming_the_holder() {
    a_second_daemon_on_an_alias_is_refused(|db, alias| {
        std::fs::hard_link(db, alias).unwrap();
    })
    .await;
}
