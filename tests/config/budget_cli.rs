//! `[budget]` from the operator's side: bad values stop start-up naming the
//! key (exit 2), `plan` prints POSTs and money per day and what the budget
//! would defer, and `explain` says when a link waits for budget.

use crate::daemon;

use std::path::{Path, PathBuf};

use chrono::{TimeDelta, Utc};
use daemon::linkfresh;
use linkfresh::domain::{LinkId, ProductSet};
use linkfresh::store::{self, Intent, LinkSource, LinkSpec};

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("linkfresh.toml");
    let text = format!(
        "[moneykit]\nclient_id = \"a\"\nclient_secret = \"b\"\n\
         [database]\nurl = \"sqlite://{}\"\n{body}\n[[links]]\nid = \"mk_a\"\n[[links]]\nid = \"mk_b\"\n",
        dir.join("lf.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `linkfresh check` on a config with `budget` as its `[budget]` table:
/// (exit code, stderr).
fn check(budget: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &format!("[budget]\n{budget}"));
    let (code, _, err) = linkfresh(&["check"], &path);
    (code, err)
}

#[test]
fn a_bad_budget_stops_start_up_naming_the_key_and_what_is_allowed() {
    let cases = [
        ("price_per_post = 0.1", "[budget] posts_per_day is not set"),
        (
            "posts_per_day = 0",
            "[budget] posts_per_day = 0: must be a whole number from 1",
        ),
        ("posts_per_day = -5", "[budget] posts_per_day = -5"),
        (
            "posts_per_day = 10\nwindow = \"soon\"",
            "[budget] window = \"soon\"",
        ),
        ("posts_per_day = 10\nwindow = \"0s\"", "[budget] window"),
        (
            "posts_per_day = 10\nwindow = \"60d\"",
            "must not exceed [database] history_retention",
        ),
        (
            "posts_per_day = 10\nprice_per_post = -1.0",
            "[budget] price_per_post = -1: must be a number of 0 or more",
        ),
        (
            "posts_per_day = 10\ncurrency = \"USD\"",
            "[budget] currency = \"USD\": needs price_per_post",
        ),
        (
            "posts_per_day = 10\nprice_per_post = 1.0\ncurrency = \"usd\"",
            "three-letter ISO 4217 code",
        ),
        ("posts_per_day = 10\nposts_per_week = 3", "posts_per_week"),
    ];
    for (budget, expected) in cases {
        let (code, err) = check(budget);
        assert_eq!(code, 2, "{budget}: {err}");
        assert!(
            err.contains(expected),
            "{budget}: expected {expected:?} in {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[budget]\nposts_per_day = 10\nwindow = \"24h\"\nprice_per_post = 0.08\ncurrency = \"EUR\"",
    );
    let (code, out, err) = linkfresh(&["check"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("budget: 10 POSTs per 1day (0.80 EUR); the fleet may want up to 48 a day: the budget will defer some"),
        "{out}"
    );
}

#[test]
fn plan_prints_posts_and_money_per_day_and_what_the_budget_would_defer() {
    let dir = tempfile::tempdir().unwrap();
    // Two links wanting accounts and transactions hourly (one POST an hour
    // each: about 48 a day) against a budget of 24 a day at 0.50 USD.
    let path = write_config(
        dir.path(),
        "[budget]\nposts_per_day = 24\nprice_per_post = 0.5\ncurrency = \"USD\"\n",
    );
    let (code, out, err) = linkfresh(&["plan", "--json", "--horizon", "24h"], &path);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total = doc["total_posts"].as_f64().unwrap();
    let profile = &doc["cost"]["profiles"][0];
    assert_eq!(profile["profile"], "default");
    assert_eq!(profile["links"], 2);
    assert!(
        (profile["posts_per_day"].as_f64().unwrap() - total).abs() < 1e-6,
        "{profile}"
    );
    assert!((45.0..=52.0).contains(&total), "{total}");
    assert!(
        (profile["money_per_day"].as_f64().unwrap() - total * 0.5).abs() < 1e-6,
        "{profile}"
    );
    assert_eq!(doc["cost"]["currency"], "USD");
    let budget = &doc["cost"]["budget"];
    let (sent, deferred) = (
        budget["sent"].as_f64().unwrap(),
        budget["deferred"].as_f64().unwrap(),
    );
    assert_eq!(sent + deferred, total, "{budget}");
    assert!(sent <= 25.0 && deferred >= total - 25.0, "{budget}");

    let (code, out, err) = linkfresh(&["plan", "--horizon", "24h"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("profile default: 2 links,"), "{out}");
    assert!(out.contains(" USD"), "{out}");
    assert!(
        out.contains("budget 24 POSTs per 1day: would send"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_a_due_link_waits_for_budget_once_the_window_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[budget]\nposts_per_day = 1\n");
    let url = format!("sqlite://{}", dir.path().join("lf.db").display());
    let store = store::connect(&url).await.unwrap();
    let products = ProductSet::parse_list("accounts,transactions").unwrap();
    for id in ["mk_a", "mk_b"] {
        let spec = LinkSpec {
            id: LinkId::parse(id).unwrap(),
            products,
            cadence: None,
            source: LinkSource::Api,
        };
        store
            .upsert_link(&spec, Utc::now() - TimeDelta::hours(3))
            .await
            .unwrap();
    }
    // mk_b is due (never requested, first seen 3 h ago); mk_a spent the
    // day's one POST a minute ago.
    let (code, out, err) = linkfresh(&["explain", "mk_b"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("due now"), "before any POST: {out}");
    store
        .record_intents(&[Intent {
            link: LinkId::parse("mk_a").unwrap(),
            products,
            at: Utc::now() - TimeDelta::minutes(1),
            claim: None,
        }])
        .await
        .unwrap();
    drop(store);
    let (code, out, err) = linkfresh(&["explain", "mk_b"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("waiting for budget until"), "{out}");
    let (code, out, err) = linkfresh(&["status", "--json"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"kind\": \"budget\""), "{out}");
}
