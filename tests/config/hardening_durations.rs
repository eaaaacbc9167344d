//! Issue 14, item 1: one bound (10 years) for every duration that enters
//! linkfresh (config file, environment, admin API, `plan --horizon`), a
//! bounded `plan`, commands that survive a huge cadence already in the store,
//! and `linkfresh remove` for API-managed links.

use crate::daemon;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use daemon::{TestDaemon, fast_windows, link_ids, linkfresh};
use linkfresh::config;
use linkfresh::domain::{LinkId, ProductSet};
use linkfresh::sim::SimConfig;
use linkfresh::store::{self, Intent, LinkSource, LinkSpec, Store};

/// A minimal valid config in `dir` with `body` (tables, links) appended.
fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("linkfresh.toml");
    let text = format!(
        "[moneykit]\nclient_id = \"a\"\nclient_secret = \"b\"\n\
         [database]\nurl = \"sqlite://{}\"\n{body}",
        dir.join("lf.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn load_err(body: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), body);
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::load_with_env(&path, env) {
        Ok(_) => panic!("accepted:\n{body}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_duration_over_ten_years_is_rejected_naming_the_key_and_what_is_allowed() {
    for (body, key) in [
        ("[limits]\naccounts = \"300000y\"\n", "[limits] accounts"),
        ("[limits]\nmargin = \"300000y\"\n", "[limits] margin"),
        ("[schedule]\ncoalesce = \"11y\"\n", "[schedule] coalesce"),
        (
            "[schedule]\nbackoff_max = \"300000y\"\n",
            "[schedule] backoff_max",
        ),
        (
            "[[links]]\nid = \"mk_a\"\nproducts = [\"accounts\"]\nevery = { accounts = \"300000y\" }\n",
            "every.accounts",
        ),
    ] {
        let err = load_err(body, &[]);
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains("at most 10 years"), "{key}: {err}");
        assert!(err.contains("such as 90s"), "{key}: {err}");
    }
    let err = load_err("", &[("LINKFRESH__MONEYKIT__REQUEST_TIMEOUT", "300000y")]);
    assert!(err.contains("[moneykit] request_timeout"), "{err}");
    assert!(err.contains("at most 10 years"), "{err}");
}

#[test]
fn ten_years_itself_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[links]]\nid = \"mk_a\"\nproducts = [\"identity\"]\nevery = { identity = \"10y\" }\n",
    );
    config::load_with_env(&path, HashMap::new()).unwrap();
}

#[test]
fn plan_refuses_a_horizon_over_ten_years_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[[links]]\nid = \"mk_a\"\n");
    let (code, _, err) = linkfresh(&["plan", "--horizon", "300000y"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--horizon"), "{err}");
    assert!(err.contains("at most 10 years"), "{err}");
}

#[test]
fn plan_refuses_a_horizon_whose_post_count_would_be_absurd() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from(
        "[limits]\naccounts = \"3s\"\ntransactions = \"3s\"\nmargin = \"0s\"\n[schedule]\ncoalesce = \"0s\"\n",
    );
    for i in 0..16 {
        body += &format!("[[links]]\nid = \"mk_plan_{i:02}\"\n");
    }
    let path = write_config(dir.path(), &body);
    let (code, out, err) = linkfresh(&["plan", "--horizon", "3d"], &path);
    assert_eq!(code, 2, "stdout: {} bytes; stderr: {err}", out.len());
    assert!(err.contains("--horizon 3days"), "{err}");
    assert!(err.contains("up to 1382416 POSTs"), "{err}");
    assert!(err.contains("at most 1000000"), "{err}");
    // A horizon within the limit still plans.
    let (code, out, err) = linkfresh(&["plan", "--horizon", "1m"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("POSTs over 1m"), "{out}");
}

/// A store holding `mk_huge` (API-managed, `every accounts = 300000y`, as
/// an older version accepted) with a request an hour ago, and the config.
async fn store_with_a_huge_cadence(dir: &Path) -> (PathBuf, Arc<dyn Store>) {
    let path = write_config(dir, "[[links]]\nid = \"mk_cfg\"\n");
    let url = format!("sqlite://{}", dir.join("lf.db").display());
    let store = store::connect(&url).await.unwrap();
    let id = LinkId::parse("mk_huge").unwrap();
    let products = ProductSet::parse_list("accounts").unwrap();
    store
        .upsert_link(
            &LinkSpec {
                id: id.clone(),
                products,
                cadence: Some(r#"{"every":{"accounts":"300000years"},"cron":{}}"#.into()),
                source: LinkSource::Api,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    store
        .record_intents(&[Intent {
            link: id,
            products,
            at: Utc::now() - chrono::TimeDelta::hours(1),
            claim: None,
        }])
        .await
        .unwrap();
    (path, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_survive_a_huge_cadence_already_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with_a_huge_cadence(dir.path()).await;
    drop(store);
    let (code, out, err) = linkfresh(&["status"], &path);
    assert_eq!(code, 0, "status: {err}");
    assert!(out.contains("mk_huge"), "{out}");
    let (code, out, err) = linkfresh(&["explain", "mk_huge"], &path);
    assert_eq!(code, 0, "explain: {err}");
    assert!(out.contains("accounts"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_an_api_managed_link_and_refuses_a_config_managed_one() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_with_a_huge_cadence(dir.path()).await;
    drop(store);

    let (code, out, err) = linkfresh(&["remove", "mk_huge"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mk_huge"), "{out}");
    let (_, out, _) = linkfresh(&["status"], &path);
    assert!(!out.contains("mk_huge"), "still listed: {out}");

    let (code, _, err) = linkfresh(&["remove", "mk_cfg"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("configuration file"), "{err}");
    assert!(err.contains("linkfresh.toml"), "{err}");

    let (code, _, err) = linkfresh(&["remove", "mk_nobody"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no link mk_nobody"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_rejects_an_every_over_ten_years_with_422() {
    let d = TestDaemon::start(
        SimConfig {
            windows: fast_windows(),
            ..SimConfig::default()
        },
        &link_ids("mk_cfg", 1),
        "\"accounts\"",
        "admin_token = \"t0ken\"\n",
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/links", d.addr))
        .bearer_auth("t0ken")
        .json(&serde_json::json!({
            "id": "mk_huge", "products": ["accounts"], "every": {"accounts": "300000y"}
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("every.accounts"), "{body}");
    assert!(body.contains("at most 10 years"), "{body}");
    let _ = d.stop().await;
}
