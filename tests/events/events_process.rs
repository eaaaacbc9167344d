//! The `linkfresh` binary: a kill -9 between a state change and its
//! delivery, a receiver answering 410, `linkfresh events`, the config
//! check of `[events]`, the demo's events, and the verifier itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use linkfresh::domain::LinkId;
use linkfresh::sim::{self, SimConfig, SimLink, SimLinkState};

use crate::daemon::{DaemonProcess, daemon_toml, fast_windows, free_port, linkfresh, wait_until};
use crate::receiver::{PATIENCE, Receiver, SECRET, Seen, events_toml};
use crate::store_common::TestDb;

fn id(s: &str) -> LinkId {
    LinkId::parse(s).unwrap()
}

/// A simulator with a link that needs its user and a deleted one, and a
/// daemon config (SQLite file) sending events to `url`.
async fn setup(url: &str) -> (sim::SimHandle, tempfile::TempDir, std::path::PathBuf, u16) {
    setup_on(url, None).await
}

/// [`setup`] on `db`'s PostgreSQL database instead of a SQLite file.
async fn setup_on(
    url: &str,
    db: Option<&TestDb>,
) -> (sim::SimHandle, tempfile::TempDir, std::path::PathBuf, u16) {
    let mut broken = SimLink::healthy(id("mk_ev_broken")).with_state(SimLinkState::NeedsUserAction);
    broken.link_error_code = Some("auth_expired".into());
    let links = vec![
        broken,
        SimLink::healthy(id("mk_ev_gone")).with_state(SimLinkState::Deleted),
    ];
    let ids: Vec<String> = links.iter().map(|l| l.id.to_string()).collect();
    let cfg = SimConfig {
        windows: fast_windows(),
        links,
        ..SimConfig::default()
    };
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        &ids,
        "\"accounts\"",
        &events_toml(url),
    );
    let body = match db {
        None => body,
        Some(db) => body
            .lines()
            .map(|l| {
                if l.starts_with("url = \"sqlite://") {
                    format!("url = \"{}\"", db.url)
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let port = free_port();
    let body = body.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, body).unwrap();
    (sim, dir, config, port)
}

fn ids_of(seen: &[Seen]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in seen {
        out.entry(format!("{} {}", s.kind(), s.link()))
            .or_default()
            .insert(s.id.clone());
    }
    out
}

const BOTH: [&str; 2] = [
    "link.needs_user_action mk_ev_broken",
    "link.deleted mk_ev_gone",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_change_and_its_delivery_loses_no_event_and_duplicates_none_sqlite() {
    kill_9(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_change_and_its_delivery_loses_no_event_and_duplicates_none_postgres()
{
    kill_9(true).await;
}

async fn kill_9(pg: bool) {
    let Some(rx) = Receiver::start("fail") else {
        return;
    };
    let db = match pg {
        false => None,
        true => match TestDb::postgres().await {
            Some(db) => Some(db),
            None => return,
        },
    };
    let (_sim, _dir, config, _) = setup_on(&rx.url, db.as_ref()).await;
    let mut first = DaemonProcess::spawn(&config, "first");
    // Both changes committed, their deliveries failing: kill -9 now.
    assert!(
        wait_until(PATIENCE, || {
            let tried = ids_of(&rx.seen());
            BOTH.iter().all(|k| tried.contains_key(*k))
        })
        .await,
        "tried before the kill: {:#?}\n{}",
        rx.seen(),
        first.log()
    );
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    let before = ids_of(&rx.seen());
    rx.set_mode("ok");
    let mut second = DaemonProcess::spawn(&config, "second");
    assert!(
        wait_until(PATIENCE, || {
            let ok = ids_of(&rx.accepted());
            BOTH.iter().all(|k| ok.contains_key(*k))
        })
        .await,
        "delivered after the restart: {:#?}\n{}",
        rx.seen(),
        second.log()
    );
    let seen = rx.seen();
    assert!(seen.iter().all(|s| s.verified), "{seen:#?}");
    // Once per id after dedupe: one id per change, the same before the
    // kill and after it (the restart neither lost nor re-made the event).
    let after = ids_of(&seen);
    for k in BOTH {
        assert_eq!(after[k].len(), 1, "{k}: {after:#?}");
        assert_eq!(after[k], before[k], "{k}: the same id across the kill");
    }
    second.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_from_the_receiver_disables_the_endpoint_loudly_until_enabled() {
    let Some(rx) = Receiver::start("gone") else {
        return;
    };
    let (_sim, _dir, config, port) = setup(&rx.url).await;
    let mut d = DaemonProcess::spawn(&config, "gone");
    assert!(
        wait_until(PATIENCE, || d.log().contains("EVENTS ENDPOINT DISABLED")).await,
        "a loud log: {}",
        d.log()
    );
    assert!(rx.seen().iter().any(|s| s.status == 410));
    // Disabled: nothing more is sent while the events wait, visible.
    let tries = rx.seen().len();
    let (code, out, err) = linkfresh(&["events"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DISABLED"), "{out}");
    assert!(out.contains("link."), "pending events listed: {out}");
    assert!(!wait_until(Duration::from_secs(1), || rx.seen().len() > tries).await);
    // ... and on the fleet page.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Endpoint disabled"), "{page}");
    assert!(page.contains("data-count=\"events-pending\">2<"), "{page}");
    // The receiver is back; the operator enables the endpoint.
    rx.set_mode("ok");
    let (code, _, err) = linkfresh(&["events", "--enable"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(PATIENCE, || {
            let ok = ids_of(&rx.accepted());
            BOTH.iter().all(|k| ok.contains_key(*k))
        })
        .await,
        "delivered once enabled: {:#?}",
        rx.seen()
    );
    let (_, out, _) = linkfresh(&["events"], &config);
    assert!(
        out.contains("enabled") && out.contains("no pending events"),
        "{out}"
    );
    d.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_altered_or_old_delivery_is_rejected_by_the_verifier() {
    let Some(rx) = Receiver::start("ok") else {
        return;
    };
    let body = r#"{"type":"link.deleted","timestamp":"2026-01-01T00:00:00.000Z","data":{"link_id":"mk_x"}}"#;
    let post = |id: &'static str, ts: i64, secret: &str, body: &str| {
        let sig = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(id, ts, body.as_bytes())
            .unwrap();
        reqwest::Client::new()
            .post(&rx.url)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.to_owned())
    };
    let now = chrono::Utc::now().timestamp();
    let other = "whsec_b3RoZXItc2VjcmV0LW5vdC10aGUtYXBwcw==";
    let status = |r: reqwest::Response| r.status().as_u16();
    let genuine = post("evt_genuine", now, SECRET, body).send().await.unwrap();
    assert_eq!(status(genuine), 204);
    let forged = post("evt_forged", now, other, body).send().await.unwrap();
    assert_eq!(status(forged), 401);
    let old = post("evt_old", now - 600, SECRET, body)
        .send()
        .await
        .unwrap();
    assert_eq!(status(old), 401);
    let signed = post("evt_altered", now, SECRET, body);
    let altered = signed
        .body(body.replace("mk_x", "mk_y"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(altered), 401);
    let verdicts: Vec<(String, bool)> = rx.seen().into_iter().map(|s| (s.id, s.verified)).collect();
    assert_eq!(
        verdicts,
        [
            ("evt_genuine".into(), true),
            ("evt_forged".into(), false),
            ("evt_old".into(), false),
            ("evt_altered".into(), false)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_config_mistakes_exit_2_naming_the_key() {
    let (_sim, dir, config, _) = setup("http://127.0.0.1:9/hooks").await;
    let good = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            "url = \"http://127.0.0.1:9/hooks\"",
            "url = \"ftp:/nope\"",
            "[events] url",
        ),
        (SECRET, "not-a-whsec-secret", "[events] secret"),
        (
            "backoff_max = \"400ms\"",
            "backoff_max = \"400ms\"\nretry_four = \"3d\"",
            "retry_four",
        ),
        (
            "backoff_max = \"400ms\"",
            "backoff_max = \"400ms\"\nstale_after = { transaktions = \"6h\" }",
            "[events] stale_after.transaktions",
        ),
    ];
    for (from, to, key) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, good.replace(from, to)).unwrap();
        let (code, _, err) = linkfresh(&["check"], &bad);
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains(key), "{to}: names {key}: {err}");
        assert!(
            !err.contains("not-a-whsec-secret"),
            "secrets never printed: {err}"
        );
    }
    let (code, _, err) = linkfresh(&["check"], &config);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_demo_prints_the_needs_user_action_event_of_its_422_within_seconds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linkfresh"))
        .args(["demo", "--for", "6s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("EVENT link.needs_user_action"))
        .unwrap_or_else(|| panic!("no event line: {text}"));
    assert!(
        line.contains("mk_demo_reconnect") && line.contains("auth_expired"),
        "{line}"
    );
}
