//! Gauges computed from the link table: links per state, the age of the
//! last successful request per product as quantiles across links (one
//! series per product and quantile, never one per link), and per product
//! the longest time an active link is past its promised refresh
//! ([`crate::policy::overdue`]). The same pass leaves the age per profile
//! and product for the fleet page ([`crate::profile_ages`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::table::LinkTable;
use crate::domain::{LinkState, Product};
use crate::policy::Rules;
use crate::policy::overdue::{Promise, never_late_within, overdue};
use crate::profile_ages::{ProfileAge, ProfileAges, summarize};

const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// One profile's products: links carrying each, never requested, ages (s).
#[derive(Default)]
struct Group {
    links: [u64; Product::ALL.len()],
    never: [u64; Product::ALL.len()],
    ages: [Vec<f64>; Product::ALL.len()],
}

/// Publishes `linkfresh_links{state}`, `linkfresh_data_age_seconds` and
/// `linkfresh_data_overdue_seconds` (0 for every product when all are on
/// time, so an alert sees it recover), and leaves the age per profile in
/// `per_profile`.
pub fn publish(table: &LinkTable, rules: &Rules, now: DateTime<Utc>, per_profile: &ProfileAges) {
    let mut per_state = [0u64; LinkState::ALL.len()];
    let mut groups: BTreeMap<Arc<str>, Group> = BTreeMap::new();
    let mut worst = [chrono::TimeDelta::zero(); Product::ALL.len()];
    // Integer milliseconds for the common case (on time): measured with
    // dates only, the overdue scan of 1M links x 2 products took most of
    // this function's time.
    let now_ms = now.timestamp_millis();
    let on_time_ms = Product::ALL.map(|p| never_late_within(p, rules).num_milliseconds());
    for e in table.iter().filter(|e| !e.removed) {
        if let Some(i) = LinkState::ALL.iter().position(|s| *s == e.state) {
            per_state[i] += 1;
        }
        if e.state != LinkState::Active {
            continue;
        }
        for p in e.products.iter().filter(|p| !p.parked) {
            let i = p.product.index();
            if p.last_ms()
                .is_some_and(|l| now_ms.saturating_sub(l) <= on_time_ms[i])
            {
                continue;
            }
            let late = overdue(
                Promise {
                    product: p.product,
                    cadence: &e.rules.cadences[i],
                    last: p.last(),
                    first_seen_at: e.first_seen_at,
                    last_activity: e.last_activity_at(),
                },
                rules,
                now,
            );
            worst[i] = worst[i].max(late);
        }
        // Looked up by name first: one map insert (and Arc clone) per
        // profile, not per link, on a pass over a million links.
        let name = &e.rules.profile.name;
        if !groups.contains_key(&**name) {
            groups.insert(name.clone(), Group::default());
        }
        let Some(group) = groups.get_mut(&**name) else {
            continue;
        };
        for p in e.products.iter().filter(|p| !p.parked) {
            let i = p.product.index();
            group.links[i] += 1;
            match p.last_ms() {
                Some(last) => {
                    group.ages[i].push(now_ms.saturating_sub(last).max(0) as f64 / 1000.0)
                }
                None => group.never[i] += 1,
            }
        }
    }
    for (state, n) in LinkState::ALL.iter().zip(per_state) {
        metrics::gauge!(crate::metrics::LINKS, "state" => state.as_str()).set(n as f64);
    }
    for (p, late) in Product::ALL.into_iter().zip(worst) {
        metrics::gauge!(crate::metrics::DATA_OVERDUE_SECONDS, "product" => p.as_str())
            .set(late.num_milliseconds() as f64 / 1000.0);
    }
    let mut by_profile = Vec::new();
    for (name, group) in &mut groups {
        for p in Product::ALL {
            let i = p.index();
            if group.links[i] == 0 {
                continue;
            }
            let (p50, p99, max) = summarize(&mut group.ages[i]);
            by_profile.push(ProfileAge {
                profile: name.clone(),
                product: p,
                links: group.links[i],
                never: group.never[i],
                p50,
                p99,
                max,
            });
        }
    }
    per_profile.publish(now, by_profile);
    // Across profiles: one profile's values as they are, several joined.
    let mut groups = groups.into_values();
    let mut ages = groups.next().map(|g| g.ages).unwrap_or_default();
    for g in groups {
        for (all, more) in ages.iter_mut().zip(g.ages) {
            all.extend(more);
        }
    }
    for (p, mut values) in Product::ALL.into_iter().zip(ages) {
        if values.is_empty() {
            continue;
        }
        for (q, label) in QUANTILES {
            let rank = ((values.len() - 1) as f64 * q).round() as usize;
            let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
            metrics::gauge!(crate::metrics::DATA_AGE_SECONDS, "product" => p.as_str(), "quantile" => label).set(*v);
        }
    }
}
