//! Tokens: bad credentials are fatal after one request, expiry mid-run is
//! renewed without a failed refresh, and renewal is single-flight.

use crate::common;

use std::time::Duration;

use linkfresh::domain::{Product, ProductSet};
use linkfresh::moneykit::{AuthError, MoneyKit, RefreshOutcome};
use linkfresh::secret::Secret;
use linkfresh::sim::{self, SimConfig, Windows};

use common::{client_config, id, sim_and_client, wait_until};

#[tokio::test]
async fn bad_credentials_are_fatal_clearly_worded_and_cost_one_token_request() {
    let cfg = SimConfig::default();
    let sim = sim::spawn(cfg.clone()).await;
    let mut ccfg = client_config(&sim.base_url(), &cfg);
    ccfg.client_secret = Secret::new("wrong-secret");
    let client = MoneyKit::new(ccfg).unwrap();

    let err = client.ensure_token().await.unwrap_err();
    assert!(
        matches!(err, AuthError::BadCredentials { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.is_fatal());
    let msg = err.to_string();
    assert!(
        msg.contains("client_secret") && !msg.contains("wrong-secret"),
        "{msg}"
    );

    // Later calls do not ask again: no loop against /auth/token.
    let out = client
        .refresh(&id("mk_a"), ProductSet::of(Product::Accounts))
        .await;
    assert!(
        matches!(out, RefreshOutcome::Auth(AuthError::BadCredentials { .. })),
        "{out:?}"
    );
    assert!(client.ensure_token().await.is_err());
    let stats = sim.stats();
    assert_eq!(stats.total("token"), 1);
    assert_eq!(stats.total("refresh"), 0);
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_renewed_without_a_failed_refresh() {
    let cfg = SimConfig {
        token_ttl: Duration::from_secs(1),
        windows: Windows::uniform(Duration::from_millis(200)),
        ..SimConfig::default()
    };
    let window = chrono::TimeDelta::from_std(cfg.windows.accounts).unwrap();
    let (sim, client) = sim_and_client(cfg).await;
    let products = ProductSet::of(Product::Accounts);
    let link = id("mk_long_run");
    // Each refresh as soon as the previous one's window is over: six span
    // more than a second, the token's whole life.
    for _ in 0..6 {
        let out = client.refresh(&link, products).await;
        assert!(matches!(out, RefreshOutcome::Accepted { .. }), "{out:?}");
        let window_over = || {
            sim.link(&link)
                .and_then(|l| l.product(Product::Accounts)?.refreshed_at)
                .is_some_and(|at| sim.clock().now() >= at + window)
        };
        assert!(wait_until(Duration::from_secs(2), window_over).await);
    }
    let stats = sim.stats();
    assert!(stats.tokens_issued >= 2, "the token was renewed: {stats:?}");
    assert_eq!(
        stats.count("refresh", 401),
        0,
        "renewed ahead of expiry: {stats:?}"
    );
    assert_eq!(stats.count("refresh", 202), 6);
}

#[tokio::test]
async fn many_refreshes_after_expiry_cause_exactly_one_token_request() {
    let cfg = SimConfig {
        token_ttl: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let (sim, client) = sim_and_client(cfg).await;
    client.ensure_token().await.unwrap();
    assert_eq!(sim.stats().tokens_issued, 1);
    // The token was issued before this point: wait until the simulator's
    // clock is past its TTL from here, and a little more.
    let expired = sim.clock().now() + chrono::TimeDelta::milliseconds(1100);
    assert!(wait_until(Duration::from_secs(3), || sim.clock().now() >= expired).await);

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .refresh(&id(&format!("mk_{i}")), ProductSet::of(Product::Accounts))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let out = t.await.unwrap();
        assert!(matches!(out, RefreshOutcome::Accepted { .. }), "{out:?}");
    }
    assert_eq!(sim.stats().tokens_issued, 2, "{:?}", sim.stats());
}

#[tokio::test]
async fn a_401_expired_token_is_renewed_once_and_the_request_retried_once() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    client.ensure_token().await.unwrap();
    sim.expire_tokens();
    let out = client
        .refresh(&id("mk_retry"), ProductSet::of(Product::Accounts))
        .await;
    assert!(matches!(out, RefreshOutcome::Accepted { .. }), "{out:?}");
    let stats = sim.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.count("refresh", 401), 1);
    assert_eq!(stats.count("refresh", 202), 1);
}

#[tokio::test]
async fn fifty_requests_refused_with_401_renew_the_token_only_once() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    client.ensure_token().await.unwrap();
    sim.expire_tokens();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get_link(&id(&format!("mk_{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_eq!(stats.count("get_link", 200), 50);
}

#[tokio::test]
async fn a_second_401_after_one_renewal_is_fatal_and_not_retried_again() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    sim.refuse_all_tokens(true);
    let out = client
        .refresh(&id("mk_refused"), ProductSet::of(Product::Accounts))
        .await;
    let RefreshOutcome::Auth(err) = &out else {
        panic!("got {out:?}")
    };
    assert!(
        matches!(err, AuthError::Rejected { .. }) && err.is_fatal(),
        "{err:?}"
    );
    let stats = sim.stats();
    assert_eq!(stats.count("refresh", 401), 2);
    assert_eq!(stats.tokens_issued, 2);
}
