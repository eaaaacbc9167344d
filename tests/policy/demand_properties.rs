//! Property tests of demand (issue 17): the active and idle cadences, the
//! on-demand refresh and the window, over random link states.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::domain::Product;
use linkfresh::policy::{
    Cadence, Decision, Demand, Limits, LinkSchedule, ProductState, Rules, Why, decide, evaluate,
};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    (prop::array::uniform6(60i64..7200), 0i64..60, 0i64..900).prop_map(|(w, margin, coalesce)| {
        Rules {
            limits: Limits::new(w.map(secs), secs(margin)),
            coalesce: secs(coalesce),
            ..Rules::default()
        }
    })
}

fn arb_opt_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of((-40_000i64..20_000).prop_map(|s| t0() + secs(s)))
}

/// A demand rule whose cadences are anything the config allows (and
/// shorter ones: the policy must hold whatever the store hands back).
fn arb_demand() -> impl Strategy<Value = Demand> {
    let cadence = prop_oneof![
        Just(Cadence::AsOftenAsAllowed),
        (1i64..40_000).prop_map(|s| Cadence::Every(secs(s))),
    ];
    (1i64..40_000, cadence.clone(), prop::option::of(cadence)).prop_map(
        |(active_for, active, idle)| Demand {
            active_for: secs(active_for),
            active,
            idle,
        },
    )
}

fn arb_link() -> impl Strategy<Value = LinkSchedule> {
    (
        any::<u64>(),
        arb_opt_time(),
        prop::sample::subsequence(Product::ALL.to_vec(), 1..=4),
    )
        .prop_flat_map(|(hash, activity, products)| {
            let states: Vec<_> = products
                .into_iter()
                .map(|p| {
                    (
                        arb_demand(),
                        arb_opt_time(),
                        arb_opt_time(),
                        prop::bool::weighted(0.3),
                    )
                        .prop_map(move |(d, last, server, refresh)| {
                            ProductState {
                                cadence: Cadence::Demand(Arc::new(d)),
                                last_requested_at: last,
                                server_seen_at: server,
                                refresh_requested: refresh,
                                ..ProductState::new(p)
                            }
                        })
                })
                .collect();
            states.prop_map(move |products| LinkSchedule {
                hash,
                first_seen_at: t0() - secs(50_000),
                runnable: true,
                backoff_until: None,
                last_activity_at: activity,
                products,
            })
        })
}

fn arb_now() -> impl Strategy<Value = DateTime<Utc>> {
    (-5_000i64..60_000).prop_map(|s| t0() + secs(s))
}

fn demand_of(p: &ProductState) -> &Demand {
    match &p.cadence {
        Cadence::Demand(d) => d,
        other => panic!("not a demand cadence: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// On-demand refreshes (and activity, and idle cadences) never break a
    /// window: every product of a POST was last requested at least its
    /// spacing ago.
    #[test]
    fn on_demand_never_breaks_a_window(link in arb_link(), rules in arb_rules(), now in arb_now()) {
        if let Decision::Send { products, .. } = decide(&link, &rules, now) {
            for p in link.products.iter().filter(|p| products.contains(p.product)) {
                if let Some(last) = p.last() {
                    prop_assert!(now >= last + rules.limits.spacing(p.product),
                        "{} sent at {now}, last {last} (refresh asked: {})", p.product, p.refresh_requested);
                }
            }
        }
    }

    /// Activity never makes a product due sooner than its window: whatever
    /// the last activity, the due time is at or after the window end.
    #[test]
    fn activity_never_makes_a_product_due_before_its_window(
        link in arb_link(), rules in arb_rules(), now in arb_now(), activity in arb_opt_time()
    ) {
        let link = LinkSchedule { last_activity_at: activity, ..link };
        for plan in evaluate(&link, &rules, now).products {
            if let (Some(due), Some(end)) = (plan.due_at, plan.window_end) {
                prop_assert!(due >= end, "{} due {due} before its window end {end}", plan.product);
            }
        }
    }

    /// An idle link is never starved beyond its idle cadence: a product of
    /// a link outside its active period, with an idle cadence `every d`, is
    /// due no later than the later of its window end and `last + d` (no
    /// budget, no backoff in these states).
    #[test]
    fn an_idle_link_is_never_starved_beyond_its_idle_cadence(
        link in arb_link(), rules in arb_rules(), now in arb_now()
    ) {
        let eval = evaluate(&link, &rules, now);
        for (plan, state) in eval.products.iter().zip(&link.products) {
            let d = demand_of(state);
            let Some(last) = state.last() else { continue };
            // Idle: no activity, or its active period is over.
            if d.active_until(link.last_activity_at).is_some_and(|u| u > now) { continue; }
            let end = last + rules.limits.spacing(state.product);
            let bound = match &d.idle {
                Some(Cadence::Every(every)) => end.max(last + *every),
                Some(_) => end,
                None => continue,
            };
            let due = plan.due_at;
            prop_assert!(due.is_some_and(|due| due <= bound),
                "{} due {due:?}, idle bound {bound} ({:?})", state.product, plan.why);
        }
    }

    /// `idle` is said exactly when the idle cadence sets the time (or
    /// `never` keeps the product back), and never for a link inside its
    /// active period whose active cadence wants the product first.
    #[test]
    fn idle_is_the_reason_only_when_the_idle_cadence_holds_the_product(
        link in arb_link(), rules in arb_rules(), now in arb_now()
    ) {
        let eval = evaluate(&link, &rules, now);
        for (plan, state) in eval.products.iter().zip(&link.products) {
            if let Why::Idle { until } = plan.why {
                let d = demand_of(state);
                prop_assert!(!state.refresh_requested, "an on-demand refresh ignores cadences");
                match until {
                    None => prop_assert!(d.idle.is_none() && plan.due_at.is_none()),
                    Some(until) => prop_assert!(until > now || plan.due_at == Some(until)),
                }
            }
        }
    }
}

/// Activity switches a product from its idle to its active cadence and
/// back once `active_for` has passed.
#[test]
fn activity_switches_between_the_active_and_idle_cadence() {
    let rules = Rules::default();
    let last = t0();
    let demand = Demand {
        active_for: TimeDelta::hours(24),
        active: Cadence::Every(TimeDelta::hours(1)),
        idle: Some(Cadence::Every(TimeDelta::hours(24))),
    };
    let link = |activity: Option<DateTime<Utc>>| LinkSchedule {
        hash: 7,
        first_seen_at: t0() - TimeDelta::days(1),
        runnable: true,
        backoff_until: None,
        last_activity_at: activity,
        products: vec![ProductState {
            cadence: Cadence::Demand(Arc::new(demand.clone())),
            last_requested_at: Some(last),
            ..ProductState::new(Product::Transactions)
        }],
    };
    let now = t0() + TimeDelta::hours(2);
    let due = |l: &LinkSchedule, now| evaluate(l, &rules, now).products[0];
    let idle = due(&link(None), now);
    assert_eq!(idle.due_at, Some(last + TimeDelta::hours(24)));
    assert!(matches!(idle.why, Why::Idle { .. }), "{:?}", idle.why);
    let active = link(Some(now));
    assert!(matches!(
        decide(&active, &rules, now),
        Decision::Send { .. }
    ));
    // Two days later the activity has expired: idle again.
    let later = now + TimeDelta::days(2);
    let expired = due(&link(Some(now)), later);
    assert_eq!(expired.why, Why::DueNow);
    let never = LinkSchedule {
        products: vec![ProductState {
            cadence: Cadence::Demand(Arc::new(Demand {
                idle: None,
                ..demand.clone()
            })),
            last_requested_at: Some(last),
            ..ProductState::new(Product::Transactions)
        }],
        ..link(None)
    };
    assert_eq!(decide(&never, &rules, later), Decision::Idle);
    let asked = LinkSchedule {
        products: vec![ProductState {
            refresh_requested: true,
            ..never.products[0].clone()
        }],
        ..never
    };
    assert!(matches!(
        decide(&asked, &rules, later),
        Decision::Send { .. }
    ));
}
