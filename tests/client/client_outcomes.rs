//! Every refresh outcome, produced by the simulator over loopback HTTP.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use linkfresh::domain::{Product, ProductSet};
use linkfresh::moneykit::{ApiError, MoneyKit, RefreshOutcome};
use linkfresh::retry_after::RetryAfter;
use linkfresh::sim::{Faults, RetryAfterFormat, SimConfig, SimLink, SimLinkState};

use common::{client_config, id, sim_and_client};

fn both() -> ProductSet {
    ProductSet::parse_list("accounts,transactions").unwrap()
}

#[tokio::test]
async fn a_healthy_link_is_accepted_with_its_parsed_state() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    let out = client.refresh(&id("mk_ok"), both()).await;
    let RefreshOutcome::Accepted {
        link: Some(link),
        rate_limited_products,
    } = &out
    else {
        panic!("expected Accepted with a link, got {out:?}");
    };
    assert!(out.sent());
    assert!(rate_limited_products.is_empty());
    assert_eq!(link.link_id, "mk_ok");
    let acc = link.product(Product::Accounts).unwrap();
    let at = acc.refreshed_at.expect("refreshed_at set");
    assert!(
        (Utc::now() - at).num_seconds().abs() < 5,
        "zone-less time read as UTC: {at}"
    );
    assert_eq!(sim.stats().count("refresh", 202), 1);
    assert_eq!(sim.stats().missing_version_header, 0);
}

#[tokio::test]
async fn per_product_rate_limit_inside_a_202_is_reported_as_not_refreshed() {
    let mut link = SimLink::healthy(id("mk_partial"));
    link.rate_limited_products = ProductSet::of(Product::Transactions);
    let cfg = SimConfig {
        links: vec![link],
        ..SimConfig::default()
    };
    let (_sim, client) = sim_and_client(cfg).await;
    let out = client.refresh(&id("mk_partial"), both()).await;
    let RefreshOutcome::Accepted {
        rate_limited_products,
        ..
    } = out
    else {
        panic!("expected Accepted, got {out:?}");
    };
    assert_eq!(rate_limited_products, ProductSet::of(Product::Transactions));
}

#[tokio::test]
async fn a_second_refresh_inside_the_window_is_rate_limited_with_a_delta_retry_after() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    let link = id("mk_twice");
    assert!(matches!(
        client.refresh(&link, both()).await,
        RefreshOutcome::Accepted { .. }
    ));
    let out = client.refresh(&link, both()).await;
    let RefreshOutcome::RateLimited {
        retry_after: Some(RetryAfter::Delay(d)),
    } = out
    else {
        panic!("expected RateLimited with a delay, got {out:?}");
    };
    assert!((3590..=3600).contains(&d.num_seconds()), "{d}");
    assert!(!out.sent());
    assert_eq!(sim.stats().violations, 1);
}

#[tokio::test]
async fn a_429_with_an_http_date_retry_after_is_parsed_as_a_date() {
    let faults = Faults {
        rate_429: 1.0,
        retry_after: Some(Duration::from_secs(120)),
        retry_after_format: RetryAfterFormat::HttpDate,
        ..Faults::default()
    };
    let (_sim, client) = sim_and_client(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let out = client.refresh(&id("mk_date"), both()).await;
    let RefreshOutcome::RateLimited {
        retry_after: Some(RetryAfter::At(at)),
    } = out
    else {
        panic!("expected RateLimited with a date, got {out:?}");
    };
    let ahead = (at - Utc::now()).num_seconds();
    assert!((115..=121).contains(&ahead), "{ahead}");
}

#[tokio::test]
async fn a_forbidden_product_is_a_403_with_the_message() {
    let mut link = SimLink::healthy(id("mk_forbidden"));
    link.forbidden_products = ProductSet::of(Product::Identity);
    let (_sim, client) = sim_and_client(SimConfig {
        links: vec![link],
        ..SimConfig::default()
    })
    .await;
    let out = client
        .refresh(
            &id("mk_forbidden"),
            ProductSet::parse_list("accounts,identity").unwrap(),
        )
        .await;
    let RefreshOutcome::Forbidden { message } = out else {
        panic!("got {out:?}")
    };
    assert!(message.contains("identity"), "{message}");
    // The other products of that link still work.
    let out = client.refresh(&id("mk_forbidden"), both()).await;
    assert!(matches!(out, RefreshOutcome::Accepted { .. }), "{out:?}");
}

#[tokio::test]
async fn missing_deleted_and_broken_links_map_to_404_410_and_422() {
    let links = vec![
        SimLink::healthy(id("mk_gone")).with_state(SimLinkState::Deleted),
        SimLink::healthy(id("mk_missing")).with_state(SimLinkState::NotFound),
        SimLink {
            link_error_code: Some("invalid_credentials".into()),
            ..SimLink::healthy(id("mk_broken")).with_state(SimLinkState::NeedsUserAction)
        },
    ];
    let (_sim, client) = sim_and_client(SimConfig {
        links,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        client.refresh(&id("mk_missing"), both()).await,
        RefreshOutcome::NotFound
    );
    assert_eq!(
        client.refresh(&id("mk_gone"), both()).await,
        RefreshOutcome::Deleted
    );
    assert_eq!(
        client.refresh(&id("mk_broken"), both()).await,
        RefreshOutcome::BadState {
            link_error_code: Some("invalid_credentials".into())
        }
    );
    assert_eq!(
        client.get_link(&id("mk_gone")).await,
        Err(ApiError::Deleted)
    );
    assert_eq!(
        client.get_link(&id("mk_missing")).await,
        Err(ApiError::NotFound)
    );
    let broken = client.get_link(&id("mk_broken")).await.unwrap();
    assert_eq!(broken.state, linkfresh::moneykit::wire::LinkStatus::Error);
}

#[tokio::test]
async fn unknown_links_are_404_when_the_simulator_does_not_allow_them() {
    let cfg = SimConfig {
        unknown_links_allowed: false,
        ..SimConfig::default()
    };
    let (_sim, client) = sim_and_client(cfg).await;
    assert_eq!(
        client.refresh(&id("mk_nobody"), both()).await,
        RefreshOutcome::NotFound
    );
}

#[tokio::test]
async fn a_503_is_a_server_error_that_may_have_been_sent() {
    let faults = Faults {
        error_rate_503: 1.0,
        ..Faults::default()
    };
    let (_sim, client) = sim_and_client(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let out = client.refresh(&id("mk_5xx"), both()).await;
    assert_eq!(out, RefreshOutcome::ServerError { status: 503 });
    assert!(out.sent());
}

#[tokio::test]
async fn a_slow_answer_past_the_request_timeout_is_a_timeout_that_counts_as_sent() {
    let cfg = SimConfig {
        faults: Faults {
            slow_response: Some(Duration::from_millis(1500)),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let sim = linkfresh::sim::spawn(cfg.clone()).await;
    let mut ccfg = client_config(&sim.base_url(), &cfg);
    ccfg.request_timeout = Duration::from_millis(300);
    let client = MoneyKit::new(ccfg).unwrap();
    let out = client.refresh(&id("mk_slow"), both()).await;
    assert_eq!(out, RefreshOutcome::Timeout);
    assert!(out.sent());
    // The simulator did take the request: the window started.
    let link = sim.link(&id("mk_slow")).unwrap();
    assert!(
        link.product(Product::Accounts)
            .unwrap()
            .refreshed_at
            .is_some()
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error_that_was_not_sent() {
    let (sim, client) = sim_and_client(SimConfig::default()).await;
    client.ensure_token().await.unwrap();
    sim.shutdown().await;
    let out = client.refresh(&id("mk_nowhere"), both()).await;
    assert!(
        matches!(out, RefreshOutcome::Connection { .. }),
        "got {out:?}"
    );
    assert!(!out.sent());
}

#[tokio::test]
async fn without_a_token_a_refused_connection_is_a_transient_auth_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = SimConfig::default();
    let client = MoneyKit::new(client_config(&format!("http://{addr}"), &cfg)).unwrap();
    let out = client.refresh(&id("mk_nowhere"), both()).await;
    assert!(
        matches!(&out, RefreshOutcome::Auth(e) if !e.is_fatal()),
        "expected a transient auth failure, got {out:?}"
    );
    assert!(!out.sent());
}

#[tokio::test]
async fn a_malformed_202_is_accepted_without_a_link() {
    let faults = Faults {
        malformed_202_rate: 1.0,
        ..Faults::default()
    };
    let (sim, client) = sim_and_client(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let out = client.refresh(&id("mk_garbled"), both()).await;
    assert_eq!(
        out,
        RefreshOutcome::Accepted {
            link: None,
            rate_limited_products: ProductSet::EMPTY
        }
    );
    assert!(out.sent());
    assert_eq!(sim.stats().count("refresh", 202), 1);
}

#[tokio::test]
async fn an_outage_answers_503_everywhere_while_it_lasts() {
    let faults = Faults {
        outages: vec![linkfresh::sim::Outage {
            start_after: Duration::ZERO,
            duration: Duration::from_secs(3600),
        }],
        ..Faults::default()
    };
    let (_sim, client) = sim_and_client(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let err = client.ensure_token().await.unwrap_err();
    assert!(!err.is_fatal(), "{err}");
}

#[tokio::test]
async fn links_are_listed_page_by_page_until_the_cursor_runs_out() {
    let links = (0..1200)
        .map(|i| SimLink::healthy(id(&format!("mk_{i}"))))
        .collect();
    let (_sim, client) = sim_and_client(SimConfig {
        links,
        ..SimConfig::default()
    })
    .await;
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        // Below MoneyKit's minimum page size of 500: clamped, not refused.
        let page = client.list_links(cursor.as_deref(), 2).await.unwrap();
        assert!(page.links.len() <= 500);
        pages += 1;
        seen.extend(page.links.into_iter().map(|l| l.link_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..1200).map(|i| format!("mk_{i}")).collect();
    assert_eq!(seen, want);
}
