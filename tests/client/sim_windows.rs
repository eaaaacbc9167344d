//! The simulator enforces per-link per-product windows and reports what a
//! client did wrong.

use crate::common;

use std::time::Duration;

use linkfresh::domain::{Product, ProductSet};
use linkfresh::moneykit::RefreshOutcome;
use linkfresh::sim::{SimConfig, SimStats, Windows, load_config};

use common::{id, sim_and_client, wait_until};

#[tokio::test]
async fn requests_inside_a_window_are_429_and_counted_as_violations() {
    let mut windows = Windows::uniform(Duration::from_secs(3600));
    windows.accounts = Duration::from_millis(300);
    let (sim, client) = sim_and_client(SimConfig {
        windows,
        ..SimConfig::default()
    })
    .await;
    let acc = ProductSet::of(Product::Accounts);
    let link = id("mk_w");

    assert!(matches!(
        client.refresh(&link, acc).await,
        RefreshOutcome::Accepted { .. }
    ));
    assert!(matches!(
        client.refresh(&link, acc).await,
        RefreshOutcome::RateLimited { .. }
    ));
    // Another link has its own windows.
    assert!(matches!(
        client.refresh(&id("mk_other"), acc).await,
        RefreshOutcome::Accepted { .. }
    ));
    // A product outside its window alone is fine; with one inside, the whole request is 429.
    let ident = ProductSet::of(Product::Identity);
    assert!(matches!(
        client.refresh(&link, ident).await,
        RefreshOutcome::Accepted { .. }
    ));
    // Until the simulator's clock is past the accounts window.
    let accounts_window_over = || {
        sim.link(&link)
            .and_then(|l| l.product(Product::Accounts)?.refreshed_at)
            .is_some_and(|at| {
                sim.clock().now() >= at + chrono::TimeDelta::from_std(windows.accounts).unwrap()
            })
    };
    assert!(wait_until(Duration::from_secs(2), accounts_window_over).await);
    assert!(matches!(
        client.refresh(&link, acc.union(ident)).await,
        RefreshOutcome::RateLimited { .. }
    ));
    assert!(matches!(
        client.refresh(&link, acc).await,
        RefreshOutcome::Accepted { .. }
    ));

    let stats = sim.stats();
    assert_eq!(stats.violations, 2);
    // Retry-After is per link: the identity POST came before the first one
    // ended, the last accounts POST before the second (identity's) ended.
    assert_eq!(stats.retry_after_violations, 2);
    assert_eq!(stats.count("refresh", 202), 4);
    assert_eq!(stats.count("refresh", 429), 2);
    assert_eq!(stats.posts_per_link["mk_w"], 5);
    assert_eq!(stats.products_refreshed["accounts"], 3);
    assert_eq!(stats.products_requested["accounts"], 5);
}

#[tokio::test]
async fn a_request_after_the_retry_after_has_passed_is_not_a_violation() {
    let windows = Windows::uniform(Duration::from_millis(200));
    let (sim, client) = sim_and_client(SimConfig {
        windows,
        ..SimConfig::default()
    })
    .await;
    let acc = ProductSet::of(Product::Accounts);
    let link = id("mk_patient");
    client.refresh(&link, acc).await;
    let RefreshOutcome::RateLimited {
        retry_after: Some(ra),
    } = client.refresh(&link, acc).await
    else {
        panic!("expected a 429 with Retry-After");
    };
    let wait = (ra.until(chrono::Utc::now()) - chrono::Utc::now())
        .to_std()
        .unwrap();
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    let until = ra.until(chrono::Utc::now()) + chrono::TimeDelta::milliseconds(50);
    assert!(wait_until(wait + Duration::from_secs(1), || sim.clock().now() >= until).await);
    assert!(matches!(
        client.refresh(&link, acc).await,
        RefreshOutcome::Accepted { .. }
    ));
    let stats = sim.stats();
    assert_eq!((stats.violations, stats.retry_after_violations), (1, 0));
}

#[tokio::test]
async fn the_stats_endpoint_serves_the_same_counters_as_json() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    client
        .refresh(&id("mk_s"), ProductSet::of(Product::Accounts))
        .await;
    let body = reqwest::get(format!("{}/_sim/stats", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: SimStats = serde_json::from_str(&body).unwrap();
    assert_eq!(served, sim.stats());
    assert_eq!(served.tokens_issued, 1);
    assert_eq!(served.count("token", 201), 1);
    assert_eq!(served.count("refresh", 202), 1);
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The webhook signing key (see src/sim/webhooks.rs).
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["kid"], "sim-1");
}

#[tokio::test]
async fn many_links_cost_nothing_per_request() {
    let links = (0..100_000)
        .map(|i| linkfresh::sim::SimLink::healthy(id(&format!("mk_{i}"))))
        .collect();
    let (sim, client) = sim_and_client(SimConfig {
        links,
        ..SimConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    for i in (0..100_000).step_by(5_000) {
        let out = client
            .refresh(&id(&format!("mk_{i}")), ProductSet::of(Product::Accounts))
            .await;
        assert!(matches!(out, RefreshOutcome::Accepted { .. }));
    }
    let page = client.list_links(Some("c99990"), 100).await.unwrap();
    assert_eq!(page.links.len(), 10);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sim.stats().count("refresh", 202), 20);
}

#[test]
fn the_sim_table_of_a_toml_file_is_loaded_and_unknown_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(
        &path,
        r#"
[moneykit]
base_url = "ignored here"

[sim]
client_id = "a"
client_secret = "b"
token_ttl = "2s"
unknown_links_allowed = false
windows = { accounts = "10s" }

[[sim.links]]
id = "mk_broken"
state = "needs_user_action"
link_error_code = "auth_expired"
forbidden_products = ["identity"]

[sim.faults]
error_rate_503 = 0.1
retry_after = "30s"
outages = [{ start_after = "1m", duration = "30s" }]
"#,
    )
    .unwrap();
    let cfg = load_config(&path).unwrap();
    assert_eq!(cfg.token_ttl, Duration::from_secs(2));
    assert_eq!(cfg.windows.accounts, Duration::from_secs(10));
    assert_eq!(cfg.windows.identity, Duration::from_secs(86_400));
    assert_eq!(cfg.links.len(), 1);
    assert_eq!(cfg.faults.outages.len(), 1);

    std::fs::write(&path, "[sim]\ntoken_tll = \"2s\"\n").unwrap();
    let err = load_config(&path).unwrap_err().to_string();
    assert!(err.contains("token_tll"), "{err}");
}
