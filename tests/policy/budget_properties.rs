//! Property tests of the budget allocator: whatever the demand, the cap
//! holds in every rolling window, on-demand goes first, and scheduled work
//! is paced over the window.

use chrono::{DateTime, TimeDelta, Utc};
use linkfresh::policy::budget::{Budget, Candidate, allocate};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn arb_budget() -> impl Strategy<Value = Budget> {
    (1u32..200, 60i64..5000, 0f64..0.3).prop_map(|(posts_per_day, w, slack)| Budget {
        posts_per_day,
        window: TimeDelta::seconds(w),
        slack: TimeDelta::milliseconds((w as f64 * 1000.0 * slack) as i64),
    })
}

fn arb_candidate() -> impl Strategy<Value = Candidate> {
    (
        prop::bool::weighted(0.2),
        -3i32..4,
        prop::option::of((-10_000i64..0).prop_map(|s| t0() + TimeDelta::seconds(s))),
    )
        .prop_map(|(on_demand, priority, stale_since)| Candidate {
            on_demand,
            priority,
            stale_since,
        })
}

/// Rounds of demand: the gap since the previous round (ms) and the
/// candidates due in it.
fn arb_rounds() -> impl Strategy<Value = Vec<(i64, Vec<Candidate>)>> {
    prop::collection::vec(
        (0i64..400_000, prop::collection::vec(arb_candidate(), 0..30)),
        1..80,
    )
}

/// The share of the budget's slack each round's POSTs take to reach
/// MoneyKit.
fn arb_delays() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0f64..=1.0, 80)
}

/// POSTs sent, `(time, count)`.
type Sends = Vec<(DateTime<Utc>, u32)>;
/// One round as the allocator saw it: time, candidates, admitted, deferred.
type Round = (DateTime<Utc>, Vec<Candidate>, Vec<usize>, Vec<usize>);

/// Runs the rounds, recording every admitted POST; returns the sends and
/// the allocations.
fn run(budget: &Budget, rounds: &[(i64, Vec<Candidate>)]) -> (Sends, Vec<Round>) {
    let mut usage: Vec<(DateTime<Utc>, u32)> = Vec::new();
    let mut seen = Vec::new();
    let mut now = t0();
    for (gap, candidates) in rounds {
        now += TimeDelta::milliseconds(*gap);
        let a = allocate(budget, &usage, now, candidates);
        if !a.admitted.is_empty() {
            usage.push((now, a.admitted.len() as u32));
        }
        seen.push((now, candidates.clone(), a.admitted, a.deferred));
    }
    (usage, seen)
}

fn sent_in(
    usage: &[(DateTime<Utc>, u32)],
    from_excl: DateTime<Utc>,
    to_incl: DateTime<Utc>,
) -> u64 {
    usage
        .iter()
        .filter(|(t, _)| *t > from_excl && *t <= to_incl)
        .map(|(_, n)| u64::from(*n))
        .sum()
}

/// Better in the allocator's order: on-demand, then priority, then staler.
fn key(c: &Candidate) -> (bool, i32, std::cmp::Reverse<Option<DateTime<Utc>>>) {
    (c.on_demand, c.priority, std::cmp::Reverse(c.stale_since))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_budget_is_never_exceeded_in_any_rolling_window(budget in arb_budget(), rounds in arb_rounds()) {
        let (usage, _) = run(&budget, &rounds);
        for &(t, _) in &usage {
            let n = sent_in(&usage, t - budget.window, t);
            prop_assert!(n <= u64::from(budget.posts_per_day), "{n} POSTs in the window ending {t}");
        }
    }

    #[test]
    fn nor_where_moneykit_counts_when_each_post_arrives_up_to_the_slack_late(
        budget in arb_budget(),
        rounds in arb_rounds(),
        delays in arb_delays(),
    ) {
        let (usage, _) = run(&budget, &rounds);
        let mut arrived: Vec<(DateTime<Utc>, u32)> = usage
            .iter()
            .zip(delays.iter().cycle())
            .map(|(&(t, n), d)| (t + TimeDelta::milliseconds((budget.slack.num_milliseconds() as f64 * d) as i64), n))
            .collect();
        arrived.sort_by_key(|(t, _)| *t);
        for &(t, _) in &arrived {
            let n = sent_in(&arrived, t - budget.window, t);
            prop_assert!(n <= u64::from(budget.posts_per_day), "MoneyKit saw {n} POSTs in the window ending {t}");
        }
    }

    #[test]
    fn every_candidate_is_decided_once(budget in arb_budget(), rounds in arb_rounds()) {
        let (_, seen) = run(&budget, &rounds);
        for (_, candidates, admitted, deferred) in seen {
            let mut all: Vec<usize> = admitted.iter().chain(&deferred).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..candidates.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn on_demand_goes_first_then_priority_then_the_stalest(budget in arb_budget(), rounds in arb_rounds()) {
        let (_, seen) = run(&budget, &rounds);
        for (_, candidates, admitted, deferred) in seen {
            for &d in &deferred {
                for &a in &admitted {
                    prop_assert!(
                        key(&candidates[a]) >= key(&candidates[d]),
                        "{:?} was sent while {:?} waited", candidates[a], candidates[d]
                    );
                }
            }
        }
    }

    #[test]
    fn on_demand_is_refused_only_by_the_cap(budget in arb_budget(), rounds in arb_rounds()) {
        let mut usage: Vec<(DateTime<Utc>, u32)> = Vec::new();
        let mut now = t0();
        for (gap, candidates) in &rounds {
            now += TimeDelta::milliseconds(*gap);
            let a = allocate(&budget, &usage, now, candidates);
            let used = sent_in(&usage, now - budget.span(), now);
            let on_demand = candidates.iter().filter(|c| c.on_demand).count() as u64;
            let served = a.admitted.iter().filter(|&&i| candidates[i].on_demand).count() as u64;
            let room = u64::from(budget.posts_per_day).saturating_sub(used);
            prop_assert_eq!(served, on_demand.min(room));
            if !a.admitted.is_empty() {
                usage.push((now, a.admitted.len() as u32));
            }
        }
    }

    #[test]
    fn scheduled_work_is_paced_over_the_window(budget in arb_budget(), rounds in prop::collection::vec(0i64..120_000, 1..150)) {
        // Unlimited scheduled demand: every round, more due than the budget.
        let demand = vec![Candidate { on_demand: false, priority: 0, stale_since: None }; 300];
        let rounds: Vec<(i64, Vec<Candidate>)> = rounds.into_iter().map(|g| (g, demand.clone())).collect();
        let (usage, _) = run(&budget, &rounds);
        let rate = f64::from(budget.posts_per_day) / budget.window.num_milliseconds() as f64;
        for (i, &(a, _)) in usage.iter().enumerate() {
            for &(c, _) in &usage[i..] {
                if c - a >= budget.window {
                    break;
                }
                let n = sent_in(&usage, a - TimeDelta::milliseconds(1), c) as f64;
                let allowed = budget.burst() + rate * (c - a).num_milliseconds() as f64;
                prop_assert!(n <= allowed + 1e-6, "{n} POSTs from {a} to {c}, pacing allows {allowed}");
            }
        }
    }

    #[test]
    fn scheduled_work_leaves_the_reserve_to_on_demand(budget in arb_budget(), rounds in prop::collection::vec(0i64..120_000, 1..150)) {
        // Unlimited scheduled demand: it never fills a window past the cap
        // less the reserve.
        let demand = vec![Candidate { on_demand: false, priority: 0, stale_since: None }; 300];
        let rounds: Vec<(i64, Vec<Candidate>)> = rounds.into_iter().map(|g| (g, demand.clone())).collect();
        let (usage, _) = run(&budget, &rounds);
        let most = u64::from(budget.posts_per_day) - budget.reserve();
        for &(t, _) in &usage {
            let n = sent_in(&usage, t - budget.span(), t);
            prop_assert!(n <= most, "{n} scheduled POSTs in the window ending {t}, more than {most}");
        }
    }

    #[test]
    fn on_demand_within_the_reserve_is_always_served_however_much_is_scheduled(
        budget in arb_budget(),
        rounds in prop::collection::vec((0i64..120_000, prop::bool::weighted(0.3)), 1..150),
    ) {
        // Scheduled demand beyond the budget every round, and now and then
        // one on-demand refresh, never more than the reserve in a window.
        let scheduled = Candidate { on_demand: false, priority: 5, stale_since: None };
        let asked = Candidate { on_demand: true, priority: -3, stale_since: Some(t0()) };
        let mut usage: Vec<(DateTime<Utc>, u32)> = Vec::new();
        let mut asked_at: Vec<DateTime<Utc>> = Vec::new();
        let mut now = t0();
        for (gap, ask) in rounds {
            now += TimeDelta::milliseconds(gap);
            let recent = asked_at.iter().filter(|t| **t > now - budget.span()).count() as u64;
            let ask = ask && recent < budget.reserve();
            let mut candidates = vec![scheduled; 300];
            if ask {
                candidates.push(asked);
                asked_at.push(now);
            }
            let a = allocate(&budget, &usage, now, &candidates);
            if ask {
                prop_assert!(a.admitted.contains(&300), "an on-demand refresh waited at {now}");
            }
            if !a.admitted.is_empty() {
                usage.push((now, a.admitted.len() as u32));
            }
        }
    }

    #[test]
    fn a_deferred_candidate_fits_at_its_retry_time(budget in arb_budget(), rounds in arb_rounds()) {
        let mut usage: Vec<(DateTime<Utc>, u32)> = Vec::new();
        let mut now = t0();
        for (gap, candidates) in &rounds {
            now += TimeDelta::milliseconds(*gap);
            let a = allocate(&budget, &usage, now, candidates);
            if !a.admitted.is_empty() {
                usage.push((now, a.admitted.len() as u32));
            }
            if let (Some(&first), Some(retry)) = (a.deferred.first(), a.retry_at) {
                prop_assert!(retry > now);
                let again = allocate(&budget, &usage, retry, &[candidates[first]]);
                prop_assert_eq!(again.admitted, vec![0]);
            } else {
                prop_assert!(a.deferred.is_empty() && a.retry_at.is_none());
            }
        }
    }
}

#[test]
fn a_morning_of_demand_spends_about_an_hour_of_budget_plus_the_mornings_share() {
    // 24 posts a day, a POST wanted every minute from midnight to 9 am:
    // pacing allows the hour's burst (1) plus one per hour, about 10.
    let budget = Budget {
        posts_per_day: 24,
        window: TimeDelta::hours(24),
        slack: TimeDelta::seconds(30),
    };
    let demand = vec![Candidate {
        on_demand: false,
        priority: 0,
        stale_since: None,
    }];
    let rounds: Vec<(i64, Vec<Candidate>)> =
        (0..9 * 60).map(|_| (60_000, demand.clone())).collect();
    let (usage, _) = run(&budget, &rounds);
    let sent: u32 = usage.iter().map(|(_, n)| n).sum();
    assert!((9..=11).contains(&sent), "sent {sent} by 9 am");
}

#[test]
fn on_demand_is_served_through_the_first_window_when_scheduled_work_is_unlimited() {
    // The demand benchmark's budget side in small: a day of 144 s and
    // 36,000 POSTs, scheduled work always waiting, and every 6 s
    // ("hour") 850 logins asking on demand, more than the reserve over a
    // window. Before anything leaves the first window, on-demand must not
    // find the cap full (it did at 138 s when pacing allowed the bucket
    // plus a whole window of refill).
    let budget = Budget {
        posts_per_day: 36_000,
        window: TimeDelta::seconds(144),
        slack: TimeDelta::zero(),
    };
    let scheduled = Candidate {
        on_demand: false,
        priority: 10,
        stale_since: None,
    };
    let asked = Candidate {
        on_demand: true,
        priority: 0,
        stale_since: Some(t0()),
    };
    let mut usage: Vec<(DateTime<Utc>, u32)> = Vec::new();
    let mut now = t0();
    for round in 0..(3 * 1440) {
        now += TimeDelta::milliseconds(100);
        let mut candidates = vec![scheduled; 400];
        let logins = if round % 60 == 0 { 850 } else { 0 };
        candidates.extend(std::iter::repeat_n(asked, logins));
        let a = allocate(&budget, &usage, now, &candidates);
        let served = a.admitted.iter().filter(|&&i| i >= 400).count();
        assert_eq!(served, logins, "round {round}: on-demand waited at {now}");
        if !a.admitted.is_empty() {
            usage.push((now, a.admitted.len() as u32));
        }
    }
}
