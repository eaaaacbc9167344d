//! Property tests of the pure scheduling policy: the invariants the daemon's
//! correctness rests on, checked over random link states.

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::domain::{Product, ProductSet};
use linkfresh::policy::plan::simulate;
use linkfresh::policy::{
    Cadence, Decision, Limits, LinkSchedule, ProductState, Rules, Why, decide, evaluate,
};
use proptest::prelude::*;

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

/// Rules with short, random windows so that random states hit every branch.
pub(crate) fn arb_rules() -> impl Strategy<Value = Rules> {
    (
        prop::array::uniform6(60i64..7200),
        0i64..60,
        0i64..900,
        1i64..120,
        0i64..20_000,
    )
        .prop_map(|(w, margin, coalesce, base, extra)| Rules {
            limits: Limits::new(w.map(secs), secs(margin)),
            coalesce: secs(coalesce),
            backoff_base: secs(base),
            backoff_max: secs(base + extra),
            ride_along_share: 0.05,
            first_spread: secs(60),
            profiles: Default::default(),
        })
}

fn arb_opt_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of((-20_000i64..20_000).prop_map(|s| t0() + secs(s)))
}

fn arb_cadence() -> impl Strategy<Value = Cadence> {
    prop_oneof![
        3 => Just(Cadence::AsOftenAsAllowed),
        1 => (60i64..20_000).prop_map(|s| Cadence::Every(secs(s))),
        1 => Just(Cadence::Cron(linkfresh::policy::CronSchedule::parse("0 */7 * * * *").unwrap())),
    ]
}

fn arb_product_state(p: Product) -> impl Strategy<Value = ProductState> {
    (
        arb_cadence(),
        arb_opt_time(),
        arb_opt_time(),
        arb_opt_time(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            move |(cadence, last, server, backoff, parked, refresh)| ProductState {
                product: p,
                cadence,
                last_requested_at: last,
                server_seen_at: server,
                backoff_until: backoff,
                parked,
                refresh_requested: refresh,
            },
        )
}

pub(crate) fn arb_link() -> impl Strategy<Value = LinkSchedule> {
    (
        any::<u64>(),
        (-20_000i64..0).prop_map(|s| t0() + secs(s)),
        prop::bool::weighted(0.9),
        arb_opt_time(),
        prop::sample::subsequence(Product::ALL.to_vec(), 1..=6),
    )
        .prop_flat_map(|(hash, first_seen_at, runnable, backoff, products)| {
            let states: Vec<_> = products.into_iter().map(arb_product_state).collect();
            states.prop_map(move |products| LinkSchedule {
                hash,
                first_seen_at,
                runnable,
                backoff_until: backoff,
                last_activity_at: None,
                products,
            })
        })
}

fn arb_now() -> impl Strategy<Value = DateTime<Utc>> {
    (-5_000i64..30_000).prop_map(|s| t0() + secs(s))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Never a product inside its window: every product in a POST was last
    /// requested (or refreshed by the server) at least limit + margin ago,
    /// and nothing parked, backed off or inactive is ever sent.
    #[test]
    fn never_a_product_inside_its_window(link in arb_link(), rules in arb_rules(), now in arb_now()) {
        if let Decision::Send { products, due_at } = decide(&link, &rules, now) {
            prop_assert!(!products.is_empty());
            prop_assert!(due_at <= now);
            prop_assert!(link.runnable);
            prop_assert!(link.backoff_until.is_none_or(|b| b <= now));
            for p in &link.products {
                if !products.contains(p.product) { continue; }
                prop_assert!(!p.parked);
                prop_assert!(p.backoff_until.is_none_or(|b| b <= now));
                if let Some(last) = p.last() {
                    prop_assert!(now >= last + rules.limits.spacing(p.product),
                        "{} sent at {now}, last {last}", p.product);
                }
            }
        }
    }

    /// The same, probed right at the edges of the windows, where an
    /// off-by-one in the spacing would show.
    #[test]
    fn never_a_product_inside_its_window_at_the_edge(
        link in arb_link(), rules in arb_rules(), pick in any::<prop::sample::Index>(), delta_ms in -2_000i64..2_000
    ) {
        let lasts: Vec<_> = link.products.iter().filter_map(|p| p.last().map(|l| l + rules.limits.spacing(p.product))).collect();
        prop_assume!(!lasts.is_empty());
        let now = *pick.get(&lasts) + TimeDelta::milliseconds(delta_ms);
        if let Decision::Send { products, .. } = decide(&link, &rules, now) {
            for p in link.products.iter().filter(|p| products.contains(p.product)) {
                if let Some(last) = p.last() {
                    prop_assert!(now >= last + rules.limits.spacing(p.product), "{} sent at {now}, last {last}", p.product);
                }
            }
        }
    }

    /// Every due, eligible product is in the batch unless coalescing holds it
    /// (for at most `coalesce` past the earliest due product that must go) or
    /// it rides along (for at most its share of its own window).
    #[test]
    fn due_products_are_sent_or_held_within_bounds(link in arb_link(), rules in arb_rules(), now in arb_now()) {
        let eval = evaluate(&link, &rules, now);
        let sent = match eval.decision { Decision::Send { products, .. } => products, _ => ProductSet::EMPTY };
        for plan in &eval.products {
            let Some(due) = plan.due_at else { continue };
            if due > now { prop_assert!(!sent.contains(plan.product)); continue; }
            match plan.why {
                Why::DueNow => prop_assert!(sent.contains(plan.product)),
                Why::Coalescing { until, .. } => {
                    // A product that must go waits at most `coalesce`; one that
                    // could ride along anyway waits at most its share on top.
                    prop_assert!(until > now);
                    prop_assert!(until - due <= rules.coalesce + share(&rules, plan.product),
                        "{} held until {until}, due {due}", plan.product);
                }
                Why::RidingAlong { until } => {
                    prop_assert!(until > now);
                    prop_assert!(until - due <= share(&rules, plan.product));
                }
                other => prop_assert!(false, "due product {} has reason {other:?}", plan.product),
            }
        }
        if let Decision::Wait { until } = eval.decision { prop_assert!(until > now); }
    }

    /// The same inputs always give the same answer (no hidden clock or RNG).
    #[test]
    fn a_policy_answer_is_deterministic(link in arb_link(), rules in arb_rules(), now in arb_now()) {
        prop_assert_eq!(evaluate(&link, &rules, now), evaluate(&link.clone(), &rules.clone(), now));
    }

    /// Whatever the state, a simulation never sends a product inside its
    /// window and after downtime catches up with one POST per link, not one
    /// per missed slot.
    #[test]
    fn catch_up_after_downtime_is_one_post(link in arb_link(), rules in arb_rules(), down_for in 0i64..200_000) {
        let mut links = vec![link];
        let now = t0() + secs(down_for);
        let posts = simulate(&mut links, &rules, now, TimeDelta::zero());
        prop_assert!(posts.len() <= 1, "{} POSTs at one instant", posts.len());
    }

    /// Over a long simulation, no product is ever requested twice within
    /// its spacing, whatever the cadence and starting state.
    #[test]
    fn simulated_posts_respect_every_window(link in arb_link(), rules in arb_rules()) {
        let mut links = vec![link.clone()];
        let posts = simulate(&mut links, &rules, t0(), TimeDelta::hours(12));
        for p in &link.products {
            let mut last = p.last();
            for post in posts.iter().filter(|x| x.products.contains(p.product)) {
                if let Some(l) = last {
                    prop_assert!(post.at >= l + rules.limits.spacing(p.product));
                }
                last = Some(post.at);
            }
        }
    }
}

fn share(rules: &Rules, p: Product) -> TimeDelta {
    TimeDelta::milliseconds(
        (rules.limits.window(p).num_milliseconds() as f64 * rules.ride_along_share) as i64,
    )
}
