//! Demand as operators and the owning app meet it (issue 17): the admin
//! API setting a link's profile and guarding the demand routes, a SIGHUP
//! that changes a profile, and `linkfresh touch` offline.

use std::time::Duration;

use crate::daemon::{link_ids, wait_until, wait_until_async};
use crate::demand_e2e::{ON_DEMAND, TOKEN, attempted, post, sim_cfg, start, view, why};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_sets_a_links_profile_and_refuses_an_unknown_one_naming_the_allowed() {
    let profiles = "[profiles.free]\nactive_for = \"1h\"\nidle = \"never\"\n";
    let d = start(sim_cfg(Vec::new()), &[], profiles, None).await;
    let (status, body) = post(
        d.addr,
        "/api/links",
        r#"{"id": "mk_api_free", "products": ["accounts"], "profile": "free"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["profile"], "free", "{body}");
    assert_eq!(body["products"][0]["why"]["kind"], "idle", "{body}");
    let (status, body) = post(
        d.addr,
        "/api/links",
        r#"{"id": "mk_api_gold", "products": ["accounts"], "profile": "gold"}"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "unknown_profile", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("allowed: default, free"),
        "{body}"
    );
    // The admin token rules as for every /api route.
    for path in [
        "/api/links/mk_api_free/activity",
        "/api/links/mk_api_free/refresh",
    ] {
        let status = reqwest::Client::new()
            .post(format!("http://{}{path}", d.addr))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 401, "{path} without a token");
    }
    // Unknown links are 404 for both demand calls, counted as such.
    let (status, _) = post(d.addr, "/api/links/mk_nobody/activity", "").await;
    assert_eq!(status, 404);
    let (status, _) = post(
        d.addr,
        "/api/links/mk_nobody/refresh",
        r#"{"max_age": "1h"}"#,
    )
    .await;
    assert_eq!(status, 404);
    let (_, metrics) = crate::daemon::http_get(d.addr, "/metrics").await;
    assert!(
        metrics.contains("linkfresh_demand_requests_total{result=\"unknown_link\"}"),
        "{metrics}"
    );
    d.stop().await.1.unwrap();
}

/// A reload re-resolves every link's profile: a SIGHUP that drops the
/// `idle = "never"` rule of `[defaults]` makes its link refreshed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_that_changes_a_profile_applies_the_new_cadence() {
    let cfg = sim_cfg(Vec::new());
    let sim = linkfresh::sim::spawn(cfg.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let port = crate::daemon::free_port();
    let links = link_ids("mk_hupdem", 1);
    let body = |profiles: &str| {
        crate::daemon::daemon_toml(
            &sim.base_url(),
            &dir.path().join("lf.db"),
            &cfg,
            &links,
            "\"accounts\"",
            &format!("admin_token = \"{TOKEN}\"\n{profiles}"),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
    };
    std::fs::write(&config, body(ON_DEMAND)).unwrap();
    let mut d = crate::daemon::DaemonProcess::spawn(&config, "hupdem");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let id = links[0].as_str();
    assert!(
        wait_until_async(Duration::from_secs(10), || async move {
            reqwest::get(format!("http://{addr}/healthz")).await.is_ok()
        })
        .await,
        "daemon never listened: {}",
        d.log()
    );
    assert_eq!(why(&view(addr, id).await)["kind"], "idle");
    assert_eq!(attempted(&sim, id), None, "idle = never");

    std::fs::write(&config, body("")).unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || attempted(&sim, id).is_some()).await,
        "the reload never applied the default cadence: {}",
        d.log()
    );
    d.stop_cleanly();
    assert_eq!(sim.stats().violations, 0);
}

/// `linkfresh touch LINK` stores the activity as the API does, offline;
/// `explain` then shows it and the active cadence.
#[test]
fn touch_stores_the_activity_offline_and_explain_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("linkfresh.toml");
    let toml = crate::daemon::daemon_toml(
        "http://127.0.0.1:9",
        &dir.path().join("lf.db"),
        &sim_cfg(Vec::new()),
        &["mk_touched".to_owned()],
        "\"accounts\"",
        "[defaults]\nactive_for = \"1h\"\nactive = { accounts = \"1h\" }\nidle = \"never\"\n",
    );
    std::fs::write(&config, toml).unwrap();
    let (code, out, err) = crate::daemon::linkfresh(&["explain", "mk_touched"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("last activity never"), "{out}");
    assert!(out.contains("only on demand"), "idle = never: {out}");
    let (code, out, err) = crate::daemon::linkfresh(&["touch", "mk_touched"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mk_touched: active now (profile default)"),
        "{out}"
    );
    let (_, out, _) = crate::daemon::linkfresh(&["explain", "mk_touched"], &config);
    assert!(out.contains("profile default; last activity 20"), "{out}");
    assert!(!out.contains("only on demand"), "active, not idle: {out}");
    let (code, _, err) = crate::daemon::linkfresh(&["touch", "mk_nobody"], &config);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no link mk_nobody"), "{err}");
}
