//! Prometheus metrics with the stable names of DESIGN.md.
//!
//! The recorder is process-global (the `metrics` facade has one), installed
//! once; `/metrics` renders it. Names are constants so that a rename is a
//! compile error in every place that uses them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `linkfresh_requests_total{endpoint,status}`: every MoneyKit call.
pub const REQUESTS_TOTAL: &str = "linkfresh_requests_total";
/// `linkfresh_products_requested_total{product}`: products in sent POSTs.
pub const PRODUCTS_REQUESTED_TOTAL: &str = "linkfresh_products_requested_total";
/// `linkfresh_rate_limited_total`: 429 answers.
pub const RATE_LIMITED_TOTAL: &str = "linkfresh_rate_limited_total";
/// `linkfresh_links{state}`: links per state.
pub const LINKS: &str = "linkfresh_links";
/// `linkfresh_due_lag_seconds`: send time minus due time (histogram).
pub const DUE_LAG_SECONDS: &str = "linkfresh_due_lag_seconds";
/// `linkfresh_token_refreshes_total`: access tokens obtained.
pub const TOKEN_REFRESHES_TOTAL: &str = "linkfresh_token_refreshes_total";
/// `linkfresh_data_age_seconds{product,quantile}`: age of the last
/// successful request per product across links (0.5, 0.9, 0.99, 1).
pub const DATA_AGE_SECONDS: &str = "linkfresh_data_age_seconds";
/// `linkfresh_data_overdue_seconds{product}`: the longest time any active
/// link's product is past the refresh the policy promised (its window end
/// or cadence, plus the coalescing and riding-along it may wait); 0 when
/// all are on time. The "stale data beyond its window" alert reads it
/// (`policy::overdue`).
pub const DATA_OVERDUE_SECONDS: &str = "linkfresh_data_overdue_seconds";
/// `linkfresh_request_rate_limit`: the current global requests/second after AIMD.
pub const REQUEST_RATE_LIMIT: &str = "linkfresh_request_rate_limit";
/// `linkfresh_in_flight`: requests being sent now.
pub const IN_FLIGHT: &str = "linkfresh_in_flight";
/// `linkfresh_claims_refused_total`: POSTs not sent because the store refused
/// their claim (another replica requested the link first); shows how much
/// replicas contend.
pub const CLAIMS_REFUSED_TOTAL: &str = "linkfresh_claims_refused_total";

/// `linkfresh_partitions_owned`: partitions this replica holds (PostgreSQL;
/// see "Several replicas" in [`crate::store`]); 0 on SQLite, whose one
/// daemon owns every link without partitions.
pub const PARTITIONS_OWNED: &str = "linkfresh_partitions_owned";
/// `linkfresh_rebalances_total`: heartbeats in which this replica acquired
/// or released partitions.
pub const REBALANCES_TOTAL: &str = "linkfresh_rebalances_total";

/// `linkfresh_store_writable`: 1 while the store commits, 0 while its
/// writes fail (a full disk, a damaged file), when `/readyz` answers 503.
pub const STORE_WRITABLE: &str = "linkfresh_store_writable";

/// `linkfresh_budget_remaining`: POSTs the `[budget]` cap still allows in
/// the current rolling window (only with a budget).
pub const BUDGET_REMAINING: &str = "linkfresh_budget_remaining";
/// `linkfresh_deferred_total{reason}`: due POSTs held back, once per link
/// and wait: `budget` (the cap is full) or `pacing` (spread over the day).
pub const DEFERRED_TOTAL: &str = "linkfresh_deferred_total";
/// The labels of [`DEFERRED_TOTAL`], exported at 0.
pub const DEFER_REASONS: [&str; 2] = ["budget", "pacing"];
/// `linkfresh_events_total{type,result}`: outbound event deliveries tried,
/// by event type and result (`delivered`, `retried`, `failed`, `gone`).
pub const EVENTS_TOTAL: &str = "linkfresh_events_total";
/// `linkfresh_events_pending`: events in the outbox not yet delivered.
pub const EVENTS_PENDING: &str = "linkfresh_events_pending";
/// `linkfresh_events_oldest_pending_seconds`: age of the oldest pending
/// event (0 when none), the backlog alert's measure.
pub const EVENTS_OLDEST_PENDING_SECONDS: &str = "linkfresh_events_oldest_pending_seconds";

/// Results of `linkfresh_events_total`, exported at 0 for every type.
const EVENT_RESULTS: [&str; 4] = ["delivered", "retried", "failed", "gone"];

/// `linkfresh_demand_requests_total{result}`: the owning app's demand calls
/// (`POST /api/links/{id}/activity` and `refresh` with `max_age`) by what
/// they did (see [`DEMAND_RESULTS`]).
pub const DEMAND_REQUESTS_TOTAL: &str = "linkfresh_demand_requests_total";

/// The `result` labels of [`DEMAND_REQUESTS_TOTAL`]: `fresh` (every asked
/// product younger than `max_age`: nothing sent), `queued` (a refresh was
/// queued), `activity` (an activity stored), `activity_repeat` (an activity
/// already stored moments ago: nothing written), `unknown_link`.
pub const DEMAND_RESULTS: &[&str] = &[
    "fresh",
    "queued",
    "activity",
    "activity_repeat",
    "unknown_link",
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (once) and returns the handle `/metrics` renders.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(DUE_LAG_SECONDS.to_owned()),
                    &[
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                        3600.0,
                    ],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness);
            // then our handle still renders what we record through it.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            register_at_zero();
            handle
        })
        .clone()
}

/// Labels of `linkfresh_requests_total` exported before their first call:
/// the answers an alert is written against (refresh accepted or rate
/// limited, tokens and link reads obtained). Others appear with their first
/// occurrence; statuses are open-ended.
const KNOWN_REQUESTS: &[(&str, &str)] = &[
    ("refresh", "202"),
    ("refresh", "429"),
    ("token", "200"),
    ("get_link", "200"),
];

/// Webhook events the receiver knows (see `webhook::event`), exported as
/// applied at 0.
const KNOWN_WEBHOOK_EVENTS: &[&str] = &[
    "link.product_refresh",
    "link.state_changed",
    "transactions.updates_available",
];

/// Registers every counter whose label values are known at 0, so that
/// `/metrics` shows it before its first event: Prometheus' `increase()` and
/// alerts cannot see a counter's first increment otherwise (issue 14).
fn register_at_zero() {
    use metrics::counter;
    counter!(RATE_LIMITED_TOTAL).increment(0);
    counter!(TOKEN_REFRESHES_TOTAL).increment(0);
    counter!(CLAIMS_REFUSED_TOTAL).increment(0);
    for reason in DEFER_REASONS {
        counter!(DEFERRED_TOTAL, "reason" => reason).increment(0);
    }
    counter!(REBALANCES_TOTAL).increment(0);
    metrics::gauge!(PARTITIONS_OWNED).set(0.0);
    counter!("linkfresh_webhook_transactions_updates_total").increment(0);
    for result in DEMAND_RESULTS {
        counter!(DEMAND_REQUESTS_TOTAL, "result" => *result).increment(0);
    }
    for p in crate::domain::Product::ALL {
        counter!(PRODUCTS_REQUESTED_TOTAL, "product" => p.as_str()).increment(0);
    }
    for (endpoint, status) in KNOWN_REQUESTS {
        counter!(REQUESTS_TOTAL, "endpoint" => *endpoint, "status" => *status).increment(0);
    }
    for kind in crate::events::kind::EventType::ALL {
        for result in EVENT_RESULTS {
            counter!(EVENTS_TOTAL, "type" => kind.as_str(), "result" => result).increment(0);
        }
    }
    metrics::gauge!(EVENTS_PENDING).set(0.0);
    metrics::gauge!(EVENTS_OLDEST_PENDING_SECONDS).set(0.0);
    for event in KNOWN_WEBHOOK_EVENTS {
        counter!("linkfresh_webhooks_total", "event" => *event, "result" => "applied").increment(0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS_TOTAL, "MoneyKit requests by endpoint and status");
    describe_counter!(
        PRODUCTS_REQUESTED_TOTAL,
        "Products included in sent refresh POSTs"
    );
    describe_counter!(RATE_LIMITED_TOTAL, "429 answers from MoneyKit");
    describe_gauge!(LINKS, "Links by state");
    describe_histogram!(DUE_LAG_SECONDS, "Send time minus due time of refresh POSTs");
    describe_counter!(TOKEN_REFRESHES_TOTAL, "Access tokens obtained");
    describe_gauge!(
        DATA_AGE_SECONDS,
        "Age of the last successful request per product, quantiles across links"
    );
    describe_gauge!(
        DATA_OVERDUE_SECONDS,
        "Longest time a product of an active link is past its promised refresh (0: on time)"
    );
    describe_gauge!(
        REQUEST_RATE_LIMIT,
        "Global request rate limit after AIMD adjustment"
    );
    describe_gauge!(IN_FLIGHT, "Requests in flight");
    describe_gauge!(
        STORE_WRITABLE,
        "1 while the store commits, 0 while its writes or reads fail"
    );
    describe_gauge!(
        BUDGET_REMAINING,
        "POSTs the budget still allows in the current rolling window"
    );
    describe_counter!(
        DEFERRED_TOTAL,
        "Due refresh POSTs held back, by reason (budget, pacing)"
    );
    describe_gauge!(PARTITIONS_OWNED, "Partitions this replica holds");
    describe_counter!(
        REBALANCES_TOTAL,
        "Heartbeats in which this replica acquired or released partitions"
    );
    describe_counter!(
        EVENTS_TOTAL,
        "Outbound event deliveries tried, by type and result"
    );
    describe_gauge!(EVENTS_PENDING, "Outbound events not yet delivered");
    describe_gauge!(
        EVENTS_OLDEST_PENDING_SECONDS,
        "Age of the oldest pending outbound event"
    );
    describe_counter!(
        DEMAND_REQUESTS_TOTAL,
        "Demand calls from the owning app (activity, refresh with max_age) by result"
    );
    describe_counter!(
        CLAIMS_REFUSED_TOTAL,
        "Refresh POSTs not sent because another replica claimed the link first"
    );
}
