//! The daemon as systemd and Kubernetes run it: sd_notify READY/WATCHDOG/
//! RELOADING/STOPPING on a real notify socket, and a config folder laid out
//! as the kubelet mounts a ConfigMap, updated by its `..data` symlink swap.

use crate::daemon;

use std::os::unix::fs::symlink;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon::{DaemonProcess, daemon_toml, fast_windows};
use linkfresh::sim::{self, SimConfig};

/// Reads datagrams until one contains `needle` or `limit` passes.
fn expect(sock: &UnixDatagram, needle: &str, limit: Duration, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.contains(needle);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_after_the_first_token_then_watchdog_pings_reload_and_stopping() {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    std::fs::write(
        &config,
        daemon_toml(
            &sim.base_url(),
            &dir.path().join("lf.db"),
            &cfg,
            &["mk_sd_1".into()],
            "\"accounts\"",
            "",
        ),
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let d = DaemonProcess::spawn_with_env(
        &config,
        "sd",
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut seen = Vec::new();
    assert!(
        expect(&sock, "READY=1", Duration::from_secs(10), &mut seen),
        "{seen:?}\n{}",
        d.log()
    );
    assert!(
        sim.stats().tokens_issued >= 1,
        "READY before a token was obtained"
    );
    assert!(
        expect(&sock, "WATCHDOG=1", Duration::from_secs(3), &mut seen),
        "{seen:?}"
    );
    d.signal("HUP");
    assert!(
        expect(&sock, "RELOADING=1", Duration::from_secs(5), &mut seen),
        "{seen:?}"
    );
    assert!(
        expect(&sock, "READY=1", Duration::from_secs(5), &mut seen),
        "{seen:?}"
    );
    d.signal("TERM");
    assert!(
        expect(&sock, "STOPPING=1", Duration::from_secs(10), &mut seen),
        "{seen:?}"
    );
    let mut d = d;
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}

/// Lays out `dir` as the kubelet mounts a ConfigMap: files are symlinks
/// through `..data`, which points at a timestamped folder.
fn write_configmap(dir: &Path, version: &str, files: &[(&str, String)]) {
    let data = dir.join(version);
    std::fs::create_dir(&data).unwrap();
    for (name, body) in files {
        std::fs::write(data.join(name), body).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    // The atomic swap: a new symlink renamed over ..data.
    let tmp = dir.join("..data_tmp");
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_by_symlink_swap_is_applied_without_a_restart() {
    let cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let state = tempfile::tempdir().unwrap();
    let mount = tempfile::tempdir().unwrap();
    let toml = format!(
        "links_file = \"links.txt\"\n{}",
        daemon_toml(
            &sim.base_url(),
            &state.path().join("lf.db"),
            &cfg,
            &[],
            "",
            ""
        )
    );
    write_configmap(
        mount.path(),
        "..2026_11_23_01",
        &[
            ("linkfresh.toml", toml.clone()),
            ("links.txt", "mk_cm_old accounts\n".into()),
        ],
    );
    let d = DaemonProcess::spawn(&mount.path().join("linkfresh.toml"), "cm");
    let posts = |l: &str| sim.stats().posts_per_link.get(l).copied().unwrap_or(0);
    assert!(
        daemon::wait_until(Duration::from_secs(8), || posts("mk_cm_old") >= 1).await,
        "{}",
        d.log()
    );
    write_configmap(
        mount.path(),
        "..2026_11_23_02",
        &[
            ("linkfresh.toml", toml),
            ("links.txt", "mk_cm_new accounts\n".into()),
        ],
    );
    assert!(
        daemon::wait_until(Duration::from_secs(8), || posts("mk_cm_new") >= 1).await,
        "{}",
        d.log()
    );
    let old = posts("mk_cm_old");
    // The new link's first POST was just seen; two more span two windows
    // (both links have the same), in which the old link would have been
    // refreshed had it stayed.
    assert!(
        daemon::wait_until(Duration::from_secs(8), || posts("mk_cm_new") >= 3).await,
        "{}",
        d.log()
    );
    assert_eq!(
        posts("mk_cm_old"),
        old,
        "a link removed from the ConfigMap is still refreshed"
    );
    d.signal("TERM");
    let mut d = d;
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(sim.stats().violations, 0);
}
