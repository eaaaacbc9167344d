//! Issue 14, items 2, 3 and 4: the SQLite store under a full disk, a
//! damaged file, and a second daemon reaching the file by another name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon;
use crate::daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, link_ids, wait_until};
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
    second.assert_refused_by(&first);
    first.stop_cleanly();
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

/// A daemon in process on a SQLite store the test holds, to fill its disk.
struct FullDiskDaemon {
    sim: sim::SimHandle,
    store: std::sync::Arc<linkfresh::store::sqlite::SqliteStore>,
    addr: std::net::SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), linkfresh::daemon::DaemonError>>,
    _dir: tempfile::TempDir,
}

async fn full_disk_daemon_in(links: usize, db_dir: Option<&Path>) -> FullDiskDaemon {
    let sim = sim::spawn(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = db_dir.unwrap_or(dir.path()).join("lf.db");
    let config_path = dir.path().join("linkfresh.toml");
    let body = daemon_toml(
        &sim.base_url(),
        &db,
        &sim_config(),
        &link_ids("mk_full", links),
        "\"accounts\", \"transactions\"",
        "",
    );
    std::fs::write(&config_path, body).unwrap();
    let config = linkfresh::config::load(&config_path).unwrap();
    let store = std::sync::Arc::new(
        linkfresh::store::sqlite::SqliteStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap(),
    );
    let app = linkfresh::app::Application::build(
        config,
        linkfresh::app::Options {
            store: Some(store.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let addr = app.local_addr();
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
    FullDiskDaemon {
        sim,
        store,
        addr,
        cancel,
        handle,
        _dir: dir,
    }
}

impl FullDiskDaemon {
    fn posts(&self) -> u64 {
        self.sim.stats().count("refresh", 202)
    }

    /// Waits for `check` on the daemon's (status, body) of `path`.
    async fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let (status, body) = daemon::http_get(self.addr, path).await;
            if check(status, &body) || std::time::Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small disk for the store: a real 16 MiB tmpfs where this process may
/// mount one (root, as in CI), else a cap on the file's pages, which makes
/// SQLite fail with the same SQLITE_FULL but at a statement rather than at
/// COMMIT (the path that used to wedge the writer).
///
/// Not smaller: the store lets its WAL grow to 10,000 pages (about 40 MB,
/// `wal_autocheckpoint`) before a checkpoint, so the WAL keeps growing
/// through the test, and on 4 MiB the room the filler left behind was used
/// up again soon after readiness went green: writes failed with
/// SQLITE_FULL and POSTs stopped (1 run in 3 at `963958f`, every run with
/// the pipelined writer; on 16 MiB, 5 of 5 passed).
struct SmallDisk {
    mount: Option<tempfile::TempDir>,
}

impl SmallDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "cannot mount a tmpfs here: filling the store with PRAGMA max_page_count instead"
            );
        }
        Self {
            mount: mounted.then_some(dir),
        }
    }

    fn dir(&self) -> Option<&Path> {
        self.mount.as_ref().map(|d| d.path())
    }

    /// Fills the disk: the next write that needs space fails with SQLITE_FULL.
    async fn fill(&self, d: &FullDiskDaemon) {
        match self.dir() {
            Some(dir) => {
                use std::io::Write;
                let mut f = std::fs::File::create(dir.join("filler")).unwrap();
                let block = vec![0u8; 4096];
                while f.write_all(&block).is_ok() {}
            }
            None => {
                let pages = d.store.page_count().await.unwrap();
                d.store.set_max_page_count(pages).await.unwrap();
            }
        }
    }

    /// Frees the space again.
    async fn free(&self, d: &FullDiskDaemon) {
        match self.dir() {
            Some(dir) => std::fs::remove_file(dir.join("filler")).unwrap(),
            None => d.store.set_max_page_count(0).await.unwrap(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.mount {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir.path())
                .status();
        }
    }
}

fn writable(body: &str) -> Option<&str> {
    body.lines()
        .find(|l| l.starts_with("linkfresh_store_writable "))
        .map(|l| l.trim_start_matches("linkfresh_store_writable "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_readiness_red_posts_resume_once_space_is_back_and_a_stop_stays_bounded()
{
    let disk = SmallDisk::new();
    let d = full_disk_daemon_in(40, disk.dir()).await;
    assert!(wait_until(Duration::from_secs(10), || d.posts() >= 40).await);
    let (_, metrics) = daemon::http_get(d.addr, "/metrics").await;
    assert_eq!(writable(&metrics), Some("1"), "{metrics}");

    disk.fill(&d).await;
    let (status, body) = d
        .wait_for("/readyz", Duration::from_secs(20), |s, _| s == 503)
        .await;
    assert_eq!(status, 503, "readiness stays green on a full disk: {body}");
    assert!(body.contains("full"), "names SQLite's reason: {body}");
    let (_, metrics) = daemon::http_get(d.addr, "/metrics").await;
    assert_eq!(writable(&metrics), Some("0"), "{metrics}");
    let stalled = d.posts();

    disk.free(&d).await;
    let (status, body) = d
        .wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200)
        .await;
    assert_eq!(status, 200, "the writer does not recover: {body}");
    assert!(
        wait_until(Duration::from_secs(15), || d.posts() >= stalled + 40).await,
        "POSTs did not resume: {} then {}",
        stalled,
        d.posts()
    );
    // The gauge says what the last round saw: a write that hit the full
    // disk's leftovers once more after readiness went green (seen once in
    // CI) turns it to 0 until the next round commits, so it is waited for
    // with a deadline rather than read once.
    let mut metrics = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        metrics = daemon::http_get(d.addr, "/metrics").await.1;
        if writable(&metrics) == Some("1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(writable(&metrics), Some("1"), "{metrics}");
    let stats = d.sim.stats();
    assert_eq!(stats.violations, 0, "{stats:#?}");

    // Full again, then a stop: it ends within the bounded drain (request
    // timeout 2 s + 1 s, plus the writer's last tries), not after 16 s of
    // retries. One test with the one above: the gauge is process-global.
    disk.fill(&d).await;
    let (status, body) = d
        .wait_for("/readyz", Duration::from_secs(20), |s, _| s == 503)
        .await;
    assert_eq!(status, 503, "{body}");
    d.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), d.handle)
        .await
        .expect("stops within request_timeout + a few seconds")
        .unwrap()
        .unwrap();
    assert_eq!(d.sim.stats().violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_damaged_page_stops_run_with_exit_1_and_advice() {
    let s = setup().await;
    let config = s.config("linkfresh.toml", &s.db, s.port);
    // A clean file from a previous run.
    let mut first = DaemonProcess::spawn(&config, "clean");
    wait_running(&first).await;
    assert!(
        wait_until(Duration::from_secs(10), || s
            .sim
            .stats()
            .count("refresh", 202)
            >= 3)
        .await
    );
    first.stop_cleanly();
    // Everything in the main file (a stop does not always checkpoint the
    // WAL), then overwrite 4 KiB in the middle of it.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", s.db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        let len = std::fs::metadata(&s.db).unwrap().len();
        assert!(len >= 3 * 4096, "{len}");
        let mut f = std::fs::OpenOptions::new().write(true).open(&s.db).unwrap();
        f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
        f.write_all(&[0x5a; 4096]).unwrap();
    }
    let mut second = DaemonProcess::spawn(&config, "damaged");
    assert_eq!(
        second.wait(Duration::from_secs(10)),
        Some(1),
        "{}",
        second.log()
    );
    let log = second.log();
    assert!(log.contains("cannot be read"), "says what is wrong: {log}");
    assert!(
        log.contains("PRAGMA integrity_check"),
        "says what to do: {log}"
    );
    assert!(log.contains("backup"), "says what to do: {log}");
    assert!(!log.contains("linkfresh is running"), "{log}");
}
