//! How far a product's data is past the latest time the policy promised to
//! refresh it: the signal behind the "stale data beyond its window" alert
//! (`linkfresh_data_overdue_seconds{product}`, see `daemon::gauges`).
//!
//! `linkfresh_data_age_seconds` alone cannot carry that alert: the age a
//! product may reach depends on each link's window and `every`/`cron`
//! cadence, so no fixed threshold in a rule fits a fleet configured per
//! link. This measure is zero as long as the policy is on time and grows
//! one second per second once it is late, whatever the cadence.
//!
//! The promise: a product is wanted at the later of its window end
//! (`last + limit + margin`) and its cadence's next wanted time (a product
//! never requested: at `first_seen_at + first_spread`, where its first
//! request is phased). The policy may then hold it for up to `coalesce`
//! plus its riding-along share of its window ([`Rules::ride_along_share`]);
//! only what lies beyond that counts as overdue. Backoff (429s, server
//! errors, a per-product rate limit) does not extend the promise: data held
//! back by it is stale all the same, which is what the alert is for.

use chrono::{DateTime, TimeDelta, Utc};

use super::demand::Wanted;
use super::{Cadence, Rules, saturating};
use crate::domain::Product;

/// One product of one runnable link, as [`overdue`] reads it: borrowed
/// parts rather than a [`super::ProductState`], so the daemon's gauges can
/// ask for every product of a million links without cloning cadences.
#[derive(Debug, Clone, Copy)]
pub struct Promise<'a> {
    /// Which product.
    pub product: Product,
    /// Its wanted cadence.
    pub cadence: &'a Cadence,
    /// The later of our last request and what the server reported.
    pub last: Option<DateTime<Utc>>,
    /// When linkfresh first saw the link (the first request is phased from it).
    pub first_seen_at: DateTime<Utc>,
    /// The app's last activity call for the link (demand cadences).
    pub last_activity: Option<DateTime<Utc>>,
}

/// How long `p` is past its promised refresh at `now`; zero when it is on
/// time, or only refreshed on demand (an idle `never`). Only for products
/// the policy schedules: the caller leaves out parked products and links
/// not refreshed at all (paused, parked, needing user action:
/// `linkfresh_links{state}` shows those).
pub fn overdue(p: Promise<'_>, rules: &Rules, now: DateTime<Utc>) -> TimeDelta {
    let Some(wanted) = wanted_at(p, rules, now) else {
        return TimeDelta::zero();
    };
    let deadline = saturating::add(wanted, slack(p.product, rules));
    now.signed_duration_since(deadline).max(TimeDelta::zero())
}

/// How long after its last request a product is never overdue, whatever
/// its cadence: its spacing plus the slack. With it a caller that scans a
/// million links (`daemon::gauges`, every two seconds) compares integers
/// for the many on time and calls [`overdue`] only for the rest.
pub fn never_late_within(product: Product, rules: &Rules) -> TimeDelta {
    saturating::sum(rules.limits.spacing(product), slack(product, rules))
}

/// The later of the window end (never requested: the end of the first
/// spread) and what the cadence wants, as the policy's `product_due` takes
/// them. `None` when not wanted at all (demand, idle `never`) or when `now`
/// is still inside the window plus slack: nothing after it can be earlier,
/// so the (possibly costly) cron lookup is skipped for the many links on
/// time.
fn wanted_at(p: Promise<'_>, rules: &Rules, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let base = match p.last {
        Some(last) if now <= saturating::add(last, never_late_within(p.product, rules)) => {
            return None;
        }
        Some(last) => saturating::add(last, rules.limits.spacing(p.product)),
        None => saturating::add(p.first_seen_at, rules.first_spread),
    };
    let wanted = match p.cadence {
        Cadence::Demand(d) => match d.wanted_after(p.last, p.last_activity, now) {
            Wanted::Active(w) | Wanted::Idle(w) => w,
            Wanted::Never => return None,
        },
        other => other.wanted_after(p.last),
    };
    Some(wanted.map_or(base, |w| w.max(base)))
}

/// How long the policy may hold a due product on purpose.
fn slack(product: Product, rules: &Rules) -> TimeDelta {
    let window_ms = rules.limits.window(product).num_milliseconds() as f64;
    let ride = TimeDelta::milliseconds((window_ms * rules.ride_along_share.max(0.0)) as i64);
    saturating::sum(rules.coalesce, ride)
}
