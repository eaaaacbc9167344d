//! Issue 14, items 5 and 7: the listeners survive connections that never
//! finish their headers, and a broken route table stops the daemon instead
//! of leaving it half alive.

use crate::daemon;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{DaemonProcess, daemon_toml, fast_windows, free_port};
use linkfresh::app::{Application, Options};
use linkfresh::sim::{self, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The documented header-read timeout (README, "What each listener limits").
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The documented per-listener connection limit.
const MAX_CONNECTIONS: usize = 512;

/// Opens a connection that sends half a request head and then stalls.
async fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect: the listener no longer takes connections");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

/// Whether the server closes `s` by `deadline` (EOF, a reset, or a 408
/// before EOF all count).
async fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_beyond_the_limit_leave_healthz_reachable_and_are_closed_after_the_header_timeout()
 {
    let sim_cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(sim_cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, hook_port) = (free_port(), free_port());
    let toml = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &sim_cfg,
        &["mk_one".to_owned()],
        "\"accounts\"",
        &format!("webhook_listen = \"127.0.0.1:{hook_port}\""),
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("linkfresh.toml");
    std::fs::write(&config, toml).unwrap();
    // 600 descriptors, as a small container or an old unit might give: the
    // connection limit must keep the daemon well inside them.
    let stderr_path = dir.path().join("daemon.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 600 && exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_linkfresh"))
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let d = DaemonProcess { child, stderr_path };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hook: std::net::SocketAddr = format!("127.0.0.1:{hook_port}").parse().unwrap();
    let http = reqwest::Client::builder()
        .timeout(HEADER_READ_TIMEOUT + Duration::from_secs(6))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(http.get(format!("http://{addr}/healthz")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "daemon never answered; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each stalled connection must be closed by the header timeout after it
    // opened, plus slack for a busy machine.
    let slack = Duration::from_secs(3);
    let first_opened = Instant::now();
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..MAX_CONNECTIONS + 188 {
        opening.spawn(stalled(addr));
    }
    let mut flood = opening.join_all().await;
    let webhook_opened = Instant::now();
    let mut webhook_stalled = stalled(hook).await;
    let asked = Instant::now();
    let answer = http.get(format!("http://{addr}/healthz")).send().await;
    let waited = asked.elapsed();
    assert!(
        matches!(&answer, Ok(r) if r.status() == 200),
        "/healthz unreachable under {} stalled connections after {waited:?}: {answer:?}; log:\n{}",
        flood.len(),
        d.log()
    );
    assert!(
        waited < HEADER_READ_TIMEOUT + Duration::from_secs(5),
        "/healthz took {waited:?}"
    );
    assert!(
        closed_by(&mut flood[0], first_opened + HEADER_READ_TIMEOUT + slack).await,
        "a connection stalled in its headers is still open after {:?}",
        first_opened.elapsed()
    );
    assert!(
        closed_by(
            &mut webhook_stalled,
            webhook_opened + HEADER_READ_TIMEOUT + slack
        )
        .await,
        "the webhook listener kept a stalled connection open for {:?}",
        webhook_opened.elapsed()
    );
}

#[tokio::test]
async fn a_webhook_path_that_overlaps_the_admin_api_is_refused_before_anything_is_sent() {
    let sim_cfg = SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(sim_cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linkfresh.toml");
    let toml = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &sim_cfg,
        &["mk_one".to_owned()],
        "\"accounts\"",
        "admin_token = \"0123456789abcdef0123456789abcdef\"",
    );
    std::fs::write(&path, toml).unwrap();
    let mut config = linkfresh::config::load(&path).unwrap();
    // Past validation, as a config built in code (or a validation gap) would be.
    config.server.webhook_path = "/api/links".into();
    let built = tokio::time::timeout(
        Duration::from_secs(10),
        Application::build(config, Options::default()),
    )
    .await
    .expect("build answers");
    let err = match built {
        Err(e) => e.to_string(),
        Ok(app) => {
            // The old behaviour: the server task panics while the loop runs on.
            let cancel = tokio_util::sync::CancellationToken::new();
            let run = tokio::spawn(app.run_until_stopped(cancel.clone()));
            let ended = tokio::time::timeout(Duration::from_secs(5), run).await;
            cancel.cancel();
            panic!("build accepted an overlapping webhook_path; run after 5 s: {ended:?}");
        }
    };
    assert!(
        err.contains("webhook_path"),
        "the error names the key: {err}"
    );
    assert!(
        err.contains("/api/links"),
        "the error names the path: {err}"
    );
    assert_eq!(sim.stats().count("refresh", 202), 0, "nothing was sent");
}
