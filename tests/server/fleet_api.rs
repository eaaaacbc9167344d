//! The admin HTTP API over real HTTP against the daemon on the simulator:
//! every endpoint's success and error paths, the bearer token, the API off
//! without a token, and API-managed links surviving a SIGHUP reload.

use crate::daemon;

use std::time::Duration;

use daemon::{
    DaemonProcess, TestDaemon, daemon_toml, fast_windows, link_ids, linkfresh, wait_until,
};
use linkfresh::sim::{self, SimConfig};
use serde_json::{Value, json};

const TOKEN: &str = "t0ken-for-tests";

fn sim_cfg() -> SimConfig {
    SimConfig {
        windows: fast_windows(),
        ..SimConfig::default()
    }
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn api(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    call(addr, method, path, Some(TOKEN), body).await
}

async fn start() -> TestDaemon {
    TestDaemon::start(
        sim_cfg(),
        &link_ids("mk_cfg", 1),
        "\"accounts\"",
        &format!("admin_token = \"{TOKEN}\"\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_bearer_token_are_refused_with_401() {
    let d = start().await;
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = call(d.addr, "GET", "/api/links/mk_cfg_000", token, None).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    let (status, _) = call(
        d.addr,
        "POST",
        "/api/links",
        Some("nope"),
        Some(r#"{"id":"mk_x","products":["accounts"]}"#),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = api(d.addr, "GET", "/api/links/mk_cfg_000", None).await;
    assert_eq!(status, 200, "{body}");
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_api_is_off_with_a_clear_503() {
    let d = TestDaemon::start(sim_cfg(), &link_ids("mk_off", 1), "\"accounts\"", "").await;
    let (status, body) = call(
        d.addr,
        "GET",
        "/api/links/mk_off_000",
        Some("anything"),
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "admin_api_disabled");
    assert!(body["message"].as_str().unwrap().contains("admin_token"));
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_added_through_the_api_is_stored_as_api_managed_and_refreshed() {
    let mut d = start().await;
    let (status, body) = api(
        d.addr,
        "POST",
        "/api/links",
        Some(r#"{"id":"mk_api_1","products":["accounts","transactions"],"every":{"transactions":"4h"}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["link"], "mk_api_1");
    assert_eq!(body["source"], "api");
    assert_eq!(body["state"], "active");
    assert_eq!(body["products"].as_array().unwrap().len(), 2);
    assert!(body["products"][0]["why_text"].is_string());

    // The running daemon picks it up and refreshes it.
    let mut refreshed = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !refreshed && std::time::Instant::now() < deadline {
        if let Ok(Some(a)) =
            tokio::time::timeout(Duration::from_millis(200), d.activity.recv()).await
        {
            refreshed = a.link.as_str() == "mk_api_1" && a.outcome == "accepted";
        }
    }
    assert!(refreshed, "the API-added link was never refreshed");

    // Updating answers 200 and changes the products.
    let (status, body) = api(
        d.addr,
        "POST",
        "/api/links",
        Some(r#"{"id":"mk_api_1","products":["accounts"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["products"].as_array().unwrap().len(), 1);
    let (status, body) = api(d.addr, "GET", "/api/links/mk_api_1", None).await;
    assert_eq!(status, 200);
    assert!(
        !body["recent_attempts"].as_array().unwrap().is_empty(),
        "{body}"
    );
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_ids_and_products_get_400_or_422_with_a_message() {
    let d = start().await;
    let cases = [
        ("{not json", 400, "invalid_json"),
        (
            r#"{"id":"mk_a","products":["accounts"],"colour":"red"}"#,
            400,
            "invalid_json",
        ),
        (
            r#"{"id":"has space","products":["accounts"]}"#,
            400,
            "invalid_link_id",
        ),
        (
            r#"{"id":"","products":["accounts"]}"#,
            400,
            "invalid_link_id",
        ),
        (
            r#"{"id":"mk_a","products":["balances"]}"#,
            422,
            "unknown_product",
        ),
        (r#"{"id":"mk_a","products":[]}"#, 422, "no_products"),
        (
            r#"{"id":"mk_a","products":["accounts"],"every":{"accounts":"soon"}}"#,
            422,
            "invalid_cadence",
        ),
        (
            r#"{"id":"mk_a","products":["accounts"],"every":{"accounts":"1ms"}}"#,
            422,
            "invalid_cadence",
        ),
        (
            r#"{"id":"mk_a","products":["accounts"],"every":{"identity":"1d"}}"#,
            422,
            "invalid_cadence",
        ),
        (
            r#"{"id":"mk_a","products":["accounts"],"cron":{"accounts":"never"}}"#,
            422,
            "invalid_cadence",
        ),
        (
            r#"{"id":"mk_cfg_000","products":["accounts"]}"#,
            409,
            "managed_by_config",
        ),
    ];
    for (body, want, code) in cases {
        let (status, answer) = api(d.addr, "POST", "/api/links", Some(body)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (want, Some(code)),
            "{body}: {answer}"
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = api(d.addr, "GET", "/api/links/bad%20id", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_link_id"))
    );
    for (method, path) in [
        ("GET", "/api/links/mk_nope"),
        ("DELETE", "/api/links/mk_nope"),
        ("POST", "/api/links/mk_nope/pause"),
        ("POST", "/api/links/mk_nope/resume"),
        ("POST", "/api/links/mk_nope/refresh"),
    ] {
        let (status, body) = api(d.addr, method, path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("link_not_found")),
            "{method} {path}"
        );
    }
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_refresh_and_delete_act_on_the_link() {
    let d = start().await;
    let (status, _) = api(
        d.addr,
        "POST",
        "/api/links",
        Some(r#"{"id":"mk_ops","products":["accounts","identity"]}"#),
    )
    .await;
    assert_eq!(status, 201);

    let (status, body) = api(d.addr, "POST", "/api/links/mk_ops/pause", None).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("paused")),
        "{body}"
    );
    assert!(
        body["products"][0]["why_text"]
            .as_str()
            .unwrap()
            .contains("paused")
    );
    let (status, body) = api(d.addr, "POST", "/api/links/mk_ops/refresh", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("link_not_active")),
        "{body}"
    );
    let (status, body) = api(d.addr, "POST", "/api/links/mk_ops/resume", None).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("active")),
        "{body}"
    );

    let (status, body) = api(
        d.addr,
        "POST",
        "/api/links/mk_ops/refresh",
        Some(r#"{"products":["identity"]}"#),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["link"], "mk_ops");
    assert_eq!(body["products"].as_array().unwrap().len(), 1);
    assert_eq!(body["products"][0]["product"], "identity");
    let at = chrono::DateTime::parse_from_rfc3339(body["at"].as_str().unwrap()).unwrap();
    assert!(
        at.timestamp() >= chrono::Utc::now().timestamp() - 1,
        "{body}"
    );
    let (status, body) = api(d.addr, "POST", "/api/links/mk_ops/refresh", Some("")).await;
    assert_eq!(
        (status, body["products"].as_array().map(Vec::len)),
        (202, Some(2)),
        "{body}"
    );
    let (status, body) = api(
        d.addr,
        "POST",
        "/api/links/mk_ops/refresh",
        Some(r#"{"products":["investments"]}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("product_not_on_link")),
        "{body}"
    );
    let (status, body) = api(
        d.addr,
        "POST",
        "/api/links/mk_ops/refresh",
        Some(r#"{"products":["shoes"]}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("unknown_product")),
        "{body}"
    );

    let (status, body) = api(d.addr, "DELETE", "/api/links/mk_cfg_000", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("managed_by_config"))
    );
    let (status, body) = api(d.addr, "DELETE", "/api/links/mk_ops", None).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"link": "mk_ops", "removed": true}))
    );
    let (status, _) = api(d.addr, "DELETE", "/api/links/mk_ops", None).await;
    assert_eq!(status, 404);
    let (status, body) = api(d.addr, "GET", "/api/links/mk_ops", None).await;
    assert_eq!(
        (status, body["removed"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    // Re-adding a removed link creates it again.
    let (status, _) = api(
        d.addr,
        "POST",
        "/api/links",
        Some(r#"{"id":"mk_ops","products":["accounts"]}"#),
    )
    .await;
    assert_eq!(status, 201);
    d.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_managed_links_survive_a_sighup_reload() {
    let cfg = sim_cfg();
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        &link_ids("mk_hupcfg", 2),
        "\"accounts\"",
        &format!("admin_token = \"{TOKEN}\"\n"),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, &body).unwrap();
    let mut d = DaemonProcess::spawn(&config, "api");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "daemon never listened: {}", d.log());
    let (status, b) = api(
        addr,
        "POST",
        "/api/links",
        Some(r#"{"id":"mk_hup_api","products":["accounts"]}"#),
    )
    .await;
    assert_eq!(status, 201, "{b}");

    // The new config drops mk_hupcfg_001; the API link is not in any config.
    std::fs::write(&config, body.replace("mk_hupcfg_001", "mk_hupcfg_new")).unwrap();
    d.signal("HUP");
    let mut reloaded = false;
    for _ in 0..60 {
        let (_, gone) = api(addr, "GET", "/api/links/mk_hupcfg_001", None).await;
        if gone["removed"] == true {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloaded,
        "the reload never removed mk_hupcfg_001: {}",
        d.log()
    );
    let (status, view) = api(addr, "GET", "/api/links/mk_hup_api", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            view["removed"].as_bool(),
            view["source"].as_str(),
            view["state"].as_str()
        ),
        (Some(false), Some("api"), Some("active")),
        "{view}"
    );
    // And it is still refreshed after the reload.
    let before = sim
        .stats()
        .posts_per_link
        .get("mk_hup_api")
        .copied()
        .unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(8), || sim
            .stats()
            .posts_per_link
            .get("mk_hup_api")
            .copied()
            .unwrap_or(0)
            > before)
        .await,
        "API link not refreshed after the reload: {}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}

/// Issue 15: the pages and the API explained links with the limits of the
/// configuration at start, while the loop swapped its rules on SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sighup_that_changes_a_limit_the_api_and_page_explain_with_the_new_window_as_explain_does()
 {
    let cfg = sim_cfg();
    let sim = sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = daemon::free_port();
    let body = daemon_toml(
        &sim.base_url(),
        &dir.path().join("lf.db"),
        &cfg,
        &["mk_hup_rules".to_owned()],
        "\"accounts\"",
        &format!("admin_token = \"{TOKEN}\"\n"),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, &body).unwrap();
    let d = DaemonProcess::spawn(&config, "hup-rules");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let accounts = |view: &Value| view["products"][0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            let (_, view) = api(addr, "GET", "/api/links/mk_hup_rules", None).await;
            if !accounts(&view)["last_requested_at"].is_null() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mk_hup_rules was never requested: {}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The hourly limit replaces the 2 s one; nothing is sent after it.
    let hourly = body.replace("accounts = \"2000ms\"", "accounts = \"1h\"");
    assert_ne!(hourly, body);
    std::fs::write(&config, &hourly).unwrap();
    d.signal("HUP");
    let window = |view: &Value| {
        let at = |k: &str| {
            accounts(view)[k]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        Some(at("window_end")? - at("last_requested_at")?)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let (status, view) = api(addr, "GET", "/api/links/mk_hup_rules", None).await;
        assert_eq!(status, 200, "{view}");
        if window(&view).is_some_and(|w| w >= chrono::TimeDelta::hours(1)) {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API still explains with the old window after the reload: {view}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = accounts(&view)["why_text"].as_str().unwrap().to_owned();
    assert!(why.starts_with("window until"), "{view}");

    let (code, out, err) = linkfresh(&["explain", "mk_hup_rules"], &config);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("accounts"))
        .unwrap_or_else(|| panic!("no accounts line in explain: {out}"));
    assert!(
        line.ends_with(&why),
        "explain says {line:?}, the API {why:?}"
    );
    let (status, page) = daemon::http_get(addr, "/links/mk_hup_rules").await;
    assert_eq!(status, 200);
    assert!(page.contains(&why), "the page does not say {why:?}: {page}");
    drop(d);
}
