//! `linkfresh::notify` speaks the sd_notify protocol to a real Unix datagram
//! socket, exactly as systemd would receive it.
//!
//! The functions read `NOTIFY_SOCKET` / `WATCHDOG_*` from the process
//! environment, and changing our own environment needs `unsafe` (forbidden
//! here) and would race with other tests. So each scenario re-executes this
//! test binary, running only [`child`], with the variables set on the child.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use linkfresh::notify;

/// Set on the child process: which scenario [`child`] should play.
const SCENARIO: &str = "LINKFRESH_TEST_NOTIFY_SCENARIO";

/// Not a test on its own: the body the parent tests run in a child process.
/// Without the scenario variable (a normal `cargo test` run) it does nothing.
#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    match scenario.as_str() {
        "lifecycle" => {
            assert_eq!(notify::watchdog_interval(), Some(Duration::from_secs(15)));
            notify::ready();
            notify::watchdog_ping();
            notify::status("42 links\nnext POST in 3m");
            notify::reloading();
            notify::ready();
            // The environment is still there after earlier calls.
            notify::watchdog_ping();
            notify::stopping();
        }
        "watchdog-for-other-pid" => {
            assert_eq!(notify::watchdog_interval(), None);
            notify::ready();
        }
        "no-socket" => {
            // Watchdog variables without a socket: nowhere to ping, so no interval.
            assert_eq!(notify::watchdog_interval(), None);
            notify::ready();
            notify::watchdog_ping();
            notify::reloading();
            notify::status("nobody listens");
            notify::stopping();
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs [`child`] in a fresh copy of this binary with `scenario` and `env`.
fn run_child(scenario: &str, env: &[(&str, &str)], notify_socket: Option<&Path>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "notify_socket::child",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(SCENARIO, scenario)
    .env_remove("NOTIFY_SOCKET")
    .env_remove("WATCHDOG_USEC")
    .env_remove("WATCHDOG_PID");
    if let Some(path) = notify_socket {
        cmd.env("NOTIFY_SOCKET", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child scenario {scenario} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every datagram waiting on `sock`, each as its list of `KEY=VALUE` lines.
fn drain(sock: &UnixDatagram) -> Vec<Vec<String>> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut datagrams = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        datagrams.push(text.lines().map(str::to_owned).collect());
    }
    datagrams
}

#[test]
fn ready_watchdog_reload_and_stop_reach_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();

    // 30 s, as WatchdogSec=30s in deploy/systemd/linkfresh.service.
    run_child("lifecycle", &[("WATCHDOG_USEC", "30000000")], Some(&path));

    let got = drain(&sock);
    assert_eq!(got.len(), 7, "one datagram per call: {got:?}");
    assert_eq!(got[0], ["READY=1"]);
    assert_eq!(got[1], ["WATCHDOG=1"]);
    assert_eq!(got[2], ["STATUS=42 links next POST in 3m"]);
    assert_eq!(
        got[3].len(),
        2,
        "RELOADING carries MONOTONIC_USEC: {:?}",
        got[3]
    );
    assert_eq!(got[3][0], "RELOADING=1");
    let usec = got[3][1].strip_prefix("MONOTONIC_USEC=").unwrap();
    assert!(usec.parse::<u64>().unwrap() > 0);
    assert_eq!(got[4], ["READY=1"]);
    assert_eq!(got[5], ["WATCHDOG=1"]);
    assert_eq!(got[6], ["STOPPING=1"]);
}

#[test]
fn watchdog_meant_for_another_process_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();

    // PID 1 is never the child: systemd set the watchdog up for someone else.
    run_child(
        "watchdog-for-other-pid",
        &[("WATCHDOG_USEC", "30000000"), ("WATCHDOG_PID", "1")],
        Some(&path),
    );

    assert_eq!(drain(&sock), [["READY=1"]]);
}

#[test]
fn everything_is_a_no_op_outside_systemd() {
    run_child("no-socket", &[("WATCHDOG_USEC", "30000000")], None);
}
