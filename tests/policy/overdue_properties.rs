//! `policy::overdue`, the measure behind the stale-data alert: zero while
//! the policy is on time, one second per second once it is late, and never
//! late while the policy itself does not yet consider the product due.

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::domain::Product;
use linkfresh::policy::demand::Demand;
use linkfresh::policy::overdue::{Promise, never_late_within, overdue};
use linkfresh::policy::{Cadence, LinkSchedule, ProductState, Rules, evaluate};
use proptest::prelude::*;

use super::policy_properties::{arb_link, arb_rules, secs, t0};

fn promise<'a>(link: &LinkSchedule, p: &'a ProductState) -> Promise<'a> {
    Promise {
        product: p.product,
        cadence: &p.cadence,
        last: p.last(),
        first_seen_at: link.first_seen_at,
        last_activity: link.last_activity_at,
    }
}

/// The policy's own due time for `p` with every backoff and operator
/// request taken away: what the promise is about.
fn due_without_backoff(
    link: &LinkSchedule,
    rules: &Rules,
    i: usize,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut link = link.clone();
    link.runnable = true;
    link.backoff_until = None;
    for p in &mut link.products {
        p.backoff_until = None;
        p.refresh_requested = false;
        p.parked = false;
    }
    evaluate(&link, rules, now).products[i].due_at
}

proptest! {
    #[test]
    fn never_late_before_the_policy_wants_it(
        link in arb_link(), rules in arb_rules(), at in -30_000i64..60_000,
    ) {
        let now = t0() + secs(at);
        for (i, p) in link.products.iter().enumerate() {
            let late = overdue(promise(&link, p), &rules, now);
            prop_assert!(late >= TimeDelta::zero());
            let due = due_without_backoff(&link, &rules, i, now).unwrap();
            // Late by L means the policy wanted it at least L ago; not yet
            // due means not late.
            if late > TimeDelta::zero() {
                prop_assert!(due <= now - late, "{p:?}: due {due}, now {now}, late {late}");
            }
        }
    }

    #[test]
    fn once_late_it_grows_one_second_per_second(
        link in arb_link(), rules in arb_rules(), at in -30_000i64..60_000, wait in 0i64..100_000,
    ) {
        let now = t0() + secs(at);
        for p in &link.products {
            let before = overdue(promise(&link, p), &rules, now);
            let after = overdue(promise(&link, p), &rules, now + secs(wait));
            prop_assert!(after >= before);
            if before > TimeDelta::zero() {
                prop_assert_eq!(after, before + secs(wait));
            }
        }
    }

    /// The integer shortcut of the gauges never hides a late product.
    #[test]
    fn never_late_within_its_spacing_and_slack_after_the_last_request(
        link in arb_link(), rules in arb_rules(), at in -30_000i64..60_000,
    ) {
        let now = t0() + secs(at);
        for p in &link.products {
            let late = overdue(promise(&link, p), &rules, now);
            if let (Some(last), true) = (p.last(), late > TimeDelta::zero()) {
                prop_assert!(now - last > never_late_within(p.product, &rules));
            }
        }
    }

    #[test]
    fn on_time_within_window_coalescing_and_riding_along(
        rules in arb_rules(), age_permille in 0i64..=1000, every in prop::option::of(60i64..20_000),
    ) {
        let p = Product::Transactions;
        let slack_ms = rules.coalesce.num_milliseconds()
            + (rules.limits.window(p).num_milliseconds() as f64 * rules.ride_along_share) as i64;
        let limit_ms = rules.limits.spacing(p).num_milliseconds() + slack_ms;
        let now = t0();
        let last = now - TimeDelta::milliseconds(limit_ms * age_permille / 1000);
        let cadence = every.map_or(Cadence::AsOftenAsAllowed, |s| Cadence::Every(secs(s)));
        let promise = Promise { product: p, cadence: &cadence, last: Some(last), first_seen_at: last, last_activity: None };
        prop_assert_eq!(overdue(promise, &rules, now), TimeDelta::zero());
    }
}

#[test]
fn an_hourly_product_three_hours_old_is_late_by_what_lies_beyond_window_and_slack() {
    let rules = Rules::default();
    let now = t0();
    let cadence = Cadence::AsOftenAsAllowed;
    let last = now - TimeDelta::hours(3);
    let p = Promise {
        product: Product::Transactions,
        cadence: &cadence,
        last: Some(last),
        first_seen_at: last - TimeDelta::days(1),
        last_activity: None,
    };
    // 3 h - (1 h window + 30 s margin) - (10 min coalesce + 5 % of 1 h riding along).
    let expected = TimeDelta::hours(3)
        - TimeDelta::hours(1)
        - TimeDelta::seconds(30)
        - TimeDelta::minutes(10)
        - TimeDelta::minutes(3);
    assert_eq!(overdue(p, &rules, now), expected);
    // Every 4 h: the same data is on time, for another 4 h + 13 min - 3 h.
    let four_hourly = Cadence::Every(TimeDelta::hours(4));
    let p4 = Promise {
        cadence: &four_hourly,
        ..p
    };
    assert_eq!(overdue(p4, &rules, now), TimeDelta::zero());
    assert_eq!(
        overdue(p4, &rules, now + TimeDelta::hours(2)),
        TimeDelta::hours(5) - TimeDelta::hours(4) - TimeDelta::minutes(13)
    );
}

#[test]
fn a_link_never_refreshed_is_late_from_its_first_phase_on() {
    let rules = Rules::default();
    let cadence = Cadence::AsOftenAsAllowed;
    let seen = t0();
    let p = Promise {
        product: Product::Accounts,
        cadence: &cadence,
        last: None,
        first_seen_at: seen,
        last_activity: None,
    };
    let deadline = seen + rules.first_spread + rules.coalesce + TimeDelta::minutes(3);
    assert_eq!(overdue(p, &rules, deadline), TimeDelta::zero());
    assert_eq!(
        overdue(p, &rules, deadline + TimeDelta::hours(2)),
        TimeDelta::hours(2)
    );
}

#[test]
fn a_demand_product_is_late_by_its_active_cadence_while_active_and_never_when_idle_never() {
    let rules = Rules::default();
    let now = t0();
    let last = now - TimeDelta::hours(3);
    let demand = Cadence::Demand(std::sync::Arc::new(Demand {
        active_for: TimeDelta::hours(24),
        active: Cadence::Every(TimeDelta::hours(1)),
        idle: None,
    }));
    let p = Promise {
        product: Product::Transactions,
        cadence: &demand,
        last: Some(last),
        first_seen_at: last - TimeDelta::days(1),
        last_activity: Some(now - TimeDelta::hours(1)),
    };
    // Active: wanted at last + 1 h 30 s (the window), late by 3 h - that - 13 min.
    assert_eq!(
        overdue(p, &rules, now),
        TimeDelta::hours(2) - TimeDelta::seconds(30) - TimeDelta::minutes(13)
    );
    // Idle with `never`: only on demand, so never late however old.
    let idle = Promise {
        last_activity: None,
        ..p
    };
    assert_eq!(overdue(idle, &rules, now), TimeDelta::zero());
    let never_requested = Promise { last: None, ..idle };
    assert_eq!(overdue(never_requested, &rules, now), TimeDelta::zero());
}
