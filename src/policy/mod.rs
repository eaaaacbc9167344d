//! The scheduling policy: pure functions from a link's stored state, the
//! limits, the wanted cadence and `now` to "send these products now" or
//! "wake me at T".
//!
//! Nothing here reads a clock, a database or the network, so every rule is
//! proven by property tests over random states (see `tests` below and
//! `tests/policy_properties.rs`). The daemon, `plan`, `status` and `explain`
//! all call [`evaluate`], so what the operator reads is what the daemon does.
//!
//! The rules, in the order they apply to one link:
//! 1. Window: a product is never sent before `last + limit + margin`, where
//!    `last` is the later of our last request and what the server reported.
//! 2. Cadence: it is *due* at the window end, or later if `every`/`cron` say so;
//!    a never-refreshed product is due at a phase spread by a hash of the link
//!    id, so a fleet added at once never fires in one second.
//! 3. Backoff: a product or link in backoff is due no sooner than its end.
//! 4. Riding along: a due product whose wait for the link's next POST is at
//!    most [`Rules::ride_along_share`] of its own window waits for it (a daily
//!    product rides on an hourly POST instead of costing one of its own).
//! 5. Coalescing: what must go now waits up to `coalesce` for another product
//!    that becomes due by then, or drifts up to `coalesce` toward a product
//!    of the same or a faster cadence that is due within half its window, so
//!    that over time the link's products fall onto one grid.
//! 6. Batching: everything due goes in one POST. After downtime every overdue
//!    product is simply due: one request per link, not one per missed slot.
//!
//! An operator's `refresh` (or the app's on-demand `refresh` with `max_age`)
//! marks products as wanted at their window end; such a product neither
//! rides along nor coalesces, and ignores its cadence, idle or not.
//!
//! A product whose profile has a demand rule ([`demand`]) follows its
//! `active` cadence for `active_for` after the link's last activity call,
//! and its `idle` cadence otherwise; with `idle = never` it is not due at
//! all until asked. The window rules over both.

pub(crate) mod backoff;
pub mod budget;
pub(crate) mod cadence;
pub mod cadences;
pub mod demand;
pub mod overdue;
pub mod partitions;
pub mod phase;
pub mod plan;
pub(crate) mod profile;
mod saturating;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

pub use cadence::{Cadence, CronSchedule};
pub use demand::{Demand, Wanted};
pub use profile::{Profile, Profiles};

use crate::domain::{Product, ProductSet};

/// Minimum spacing between two requests of a product on one link.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    windows: [TimeDelta; Product::ALL.len()],
    /// Added to every window, to absorb clock skew between us and MoneyKit.
    pub margin: TimeDelta,
}

impl Limits {
    /// Limits from a window per product (indexed by [`Product::index`]).
    pub fn new(windows: [TimeDelta; Product::ALL.len()], margin: TimeDelta) -> Self {
        Self { windows, margin }
    }

    /// MoneyKit's documented limits (undocumented products treated as daily)
    /// and a 30 s margin.
    pub fn moneykit() -> Self {
        let (h, d) = (TimeDelta::hours(1), TimeDelta::days(1));
        Self::new([h, h, d, d, d, d], TimeDelta::seconds(30))
    }

    /// The limit of one product.
    pub fn window(&self, p: Product) -> TimeDelta {
        self.windows[p.index()]
    }

    /// The limit plus the margin: how far apart two requests are sent.
    pub fn spacing(&self, p: Product) -> TimeDelta {
        saturating::sum(self.window(p), self.margin)
    }
}

/// Every tunable of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Per-product windows and the margin.
    pub limits: Limits,
    /// How long a due product may wait for another to share its POST.
    pub coalesce: TimeDelta,
    /// First backoff after a failure.
    pub backoff_base: TimeDelta,
    /// Largest backoff.
    pub backoff_max: TimeDelta,
    /// Share of its own window a due product may wait to ride on the link's
    /// next POST (0.05: 72 minutes for a daily product).
    pub ride_along_share: f64,
    /// First requests of new links are spread over at most this long (and
    /// never over more than the link's shortest window).
    pub first_spread: TimeDelta,
    /// `[defaults]` and `[profiles.NAME]`: which cadence and priority each
    /// link follows (resolved by the daemon's table and by `explain`).
    pub profiles: std::sync::Arc<Profiles>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            limits: Limits::moneykit(),
            coalesce: TimeDelta::minutes(10),
            backoff_base: TimeDelta::minutes(1),
            backoff_max: TimeDelta::hours(6),
            ride_along_share: 0.05,
            first_spread: TimeDelta::minutes(1),
            profiles: Default::default(),
        }
    }
}

/// What the policy needs to know of one product of one link.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductState {
    /// Which product.
    pub product: Product,
    /// How often it is wanted.
    pub cadence: Cadence,
    /// Send time of our last request that may have reached MoneyKit.
    pub last_requested_at: Option<DateTime<Utc>>,
    /// The later of `refreshed_at`/`last_attempted_at` the server reported.
    pub server_seen_at: Option<DateTime<Utc>>,
    /// No request before this (a per-product `rate_limit` answer).
    pub backoff_until: Option<DateTime<Utc>>,
    /// Forbidden (403) for this link: never requested.
    pub parked: bool,
    /// An operator asked for it as soon as the window allows.
    pub refresh_requested: bool,
}

impl ProductState {
    /// A product never requested, wanted as often as allowed.
    pub fn new(product: Product) -> Self {
        Self {
            product,
            cadence: Cadence::AsOftenAsAllowed,
            last_requested_at: None,
            server_seen_at: None,
            backoff_until: None,
            parked: false,
            refresh_requested: false,
        }
    }

    /// The last time the product is known to have been requested.
    pub fn last(&self) -> Option<DateTime<Utc>> {
        self.last_requested_at.max(self.server_seen_at)
    }
}

/// What the policy needs to know of one link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSchedule {
    /// `phase::link_hash` of the id: spreads first requests and jitter.
    pub hash: u64,
    /// When linkfresh first saw the link; first requests are phased from here.
    pub first_seen_at: DateTime<Utc>,
    /// Whether the link may be refreshed at all (active and configured).
    pub runnable: bool,
    /// No request for this link before this (429, 5xx, timeouts).
    pub backoff_until: Option<DateTime<Utc>>,
    /// The owning app's last "this user is active" call, which moves
    /// demand-ruled products to their `active` cadence.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Its products, one entry each.
    pub products: Vec<ProductState>,
}

/// The policy's answer for one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send one POST with these products now; `due_at` is the earliest due
    /// time among them (send time minus it is the lateness).
    Send {
        /// The products of the POST.
        products: ProductSet,
        /// Earliest due time among them.
        due_at: DateTime<Utc>,
    },
    /// Nothing to send before `until`; ask again then.
    Wait {
        /// When to evaluate the link again.
        until: DateTime<Utc>,
    },
    /// Nothing will become due by waiting (paused, parked, no products).
    Idle,
}

/// Why a product is or is not being sent; shown by `status` and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Goes out in the POST being sent now.
    DueNow,
    /// Inside its window until then.
    Window {
        /// Window end.
        until: DateTime<Utc>,
    },
    /// Its `every`/`cron` cadence (or its profile's `active` one) wants it
    /// only then.
    Cadence {
        /// Next wanted time.
        until: DateTime<Utc>,
    },
    /// The link is idle (no activity within `active_for`) and the profile's
    /// `idle` cadence wants it only then; `None`: `never`, only on demand.
    Idle {
        /// Next wanted time, if the idle cadence ever wants it.
        until: Option<DateTime<Utc>>,
    },
    /// A new link: its first request is phased to then.
    FirstPhase {
        /// Phased first request.
        until: DateTime<Utc>,
    },
    /// The product is in backoff (a per-product rate limit).
    Backoff {
        /// Backoff end.
        until: DateTime<Utc>,
    },
    /// The whole link is in backoff (429, server error, timeout).
    LinkBackoff {
        /// Backoff end.
        until: DateTime<Utc>,
    },
    /// Due, but waiting so that another product shares its POST.
    Coalescing {
        /// The product it waits for.
        with: Product,
        /// When the shared POST goes.
        until: DateTime<Utc>,
    },
    /// Due, but riding on the link's next POST, which is close.
    RidingAlong {
        /// When the next POST goes.
        until: DateTime<Utc>,
    },
    /// Due, but held back by the `[budget]`: its cap is full or pacing
    /// spreads it over the day (see [`budget`]).
    Budget {
        /// When the budget can next admit it.
        until: DateTime<Utc>,
    },
    /// Forbidden for this link (403).
    Parked,
    /// The link is not refreshed (paused, parked or not configured).
    Inactive,
}

/// One product's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProductPlan {
    /// Which product.
    pub product: Product,
    /// When its window ends (None: never requested).
    pub window_end: Option<DateTime<Utc>>,
    /// When it is due (None: parked or inactive).
    pub due_at: Option<DateTime<Utc>>,
    /// Why it is or is not sent now.
    pub why: Why,
}

/// The policy's decision for a link together with each product's reasoning.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// What to do.
    pub decision: Decision,
    /// Why, per product, in the link's product order.
    pub products: Vec<ProductPlan>,
}

/// Decides for one link at `now`.
pub fn decide(link: &LinkSchedule, rules: &Rules, now: DateTime<Utc>) -> Decision {
    evaluate(link, rules, now).decision
}

/// When a product is due and which constraint sets that time; `None` when
/// it is not wanted at all (idle with `never`).
fn product_due(
    link: &LinkSchedule,
    rules: &Rules,
    p: &ProductState,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Why)> {
    let spacing = rules.limits.spacing(p.product);
    let (mut due, mut why) = match p.last() {
        Some(last) => {
            let end = saturating::add(last, spacing);
            (end, Why::Window { until: end })
        }
        None if p.refresh_requested => (link.first_seen_at, Why::DueNow),
        None => {
            let at = saturating::add(
                link.first_seen_at,
                phase::first_phase(link.hash, first_spread(link, rules)),
            );
            (at, Why::FirstPhase { until: at })
        }
    };
    if !p.refresh_requested {
        let (wanted, idle) = match &p.cadence {
            Cadence::Demand(d) => match d.wanted_after(p.last(), link.last_activity_at, now) {
                Wanted::Active(w) => (w, false),
                Wanted::Idle(w) => (w, true),
                Wanted::Never => return None,
            },
            other => (other.wanted_after(p.last()), false),
        };
        if let Some(wanted) = wanted.filter(|w| *w > due) {
            why = if idle {
                Why::Idle {
                    until: Some(wanted),
                }
            } else {
                Why::Cadence { until: wanted }
            };
            due = wanted;
        }
    }
    if let Some(b) = p.backoff_until.filter(|b| *b > due) {
        (due, why) = (b, Why::Backoff { until: b });
    }
    if let Some(b) = link.backoff_until.filter(|b| *b > due) {
        (due, why) = (b, Why::LinkBackoff { until: b });
    }
    Some((due, why))
}

fn first_spread(link: &LinkSchedule, rules: &Rules) -> TimeDelta {
    link.products
        .iter()
        .map(|p| rules.limits.window(p.product))
        .min()
        .unwrap_or(rules.first_spread)
        .min(rules.first_spread)
}

/// Decides for one link at `now` and explains every product.
pub fn evaluate(link: &LinkSchedule, rules: &Rules, now: DateTime<Utc>) -> Evaluation {
    let mut plans: Vec<ProductPlan> = link
        .products
        .iter()
        .map(|p| {
            let window_end = p
                .last()
                .map(|l| saturating::add(l, rules.limits.spacing(p.product)));
            let (due_at, why) = if !link.runnable {
                (None, Why::Inactive)
            } else if p.parked {
                (None, Why::Parked)
            } else {
                match product_due(link, rules, p, now) {
                    Some((due, why)) => (Some(due), why),
                    None => (None, Why::Idle { until: None }),
                }
            };
            ProductPlan {
                product: p.product,
                window_end,
                due_at,
                why,
            }
        })
        .collect();

    let decision = batch(link, rules, now, &mut plans);
    Evaluation {
        decision,
        products: plans,
    }
}

/// Rules 4 to 6: turns per-product due times into one decision, and marks
/// the products that are due but held back.
fn batch(
    link: &LinkSchedule,
    rules: &Rules,
    now: DateTime<Utc>,
    plans: &mut [ProductPlan],
) -> Decision {
    let due = |plans: &[ProductPlan], i: usize| plans[i].due_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let window = |plans: &[ProductPlan], i: usize| rules.limits.window(plans[i].product);
    let forced = |i: usize| link.products[i].refresh_requested;

    let (due_now, later): (Vec<usize>, Vec<usize>) = (0..plans.len())
        .filter(|&i| plans[i].due_at.is_some())
        .partition(|&i| due(plans, i) <= now);
    let next_other = later.iter().map(|&i| due(plans, i)).min();
    let Some(first_due) = due_now.iter().map(|&i| due(plans, i)).min() else {
        return match next_other {
            Some(until) => Decision::Wait { until },
            None => Decision::Idle,
        };
    };

    // Rule 4: a due product rides on the link's next POST when that is close
    // relative to its own window.
    let can_ride = |i: usize| {
        !forced(i)
            && next_other.is_some_and(|t| {
                t - due(plans, i) <= share_of(window(plans, i), rules.ride_along_share)
            })
    };
    let must: Vec<usize> = due_now.iter().copied().filter(|&i| !can_ride(i)).collect();
    if must.is_empty() {
        // can_ride implies next_other is Some.
        let until = next_other.unwrap_or(now);
        for &i in &due_now {
            plans[i].why = Why::RidingAlong { until };
        }
        return Decision::Wait { until };
    }

    // Rule 5: coalesce with a product due soon, or drift toward one.
    if !must.iter().any(|&i| forced(i)) {
        let must_first = must.iter().map(|&i| due(plans, i)).min().unwrap_or(now);
        let deadline = saturating::add(must_first, rules.coalesce);
        let fastest = must
            .iter()
            .map(|&i| window(plans, i))
            .min()
            .unwrap_or_default();
        let partner = later
            .iter()
            .copied()
            .filter(|&j| due(plans, j) <= deadline)
            .max_by_key(|&j| due(plans, j))
            .map(|j| (j, due(plans, j)))
            .or_else(|| {
                later
                    .iter()
                    .copied()
                    .filter(|&j| window(plans, j) <= fastest && due(plans, j) - now < fastest / 2)
                    .min_by_key(|&j| due(plans, j))
                    .map(|j| (j, due(plans, j).min(deadline)))
            });
        if let Some((j, until)) = partner
            && until > now
        {
            let with = plans[j].product;
            for &i in &due_now {
                plans[i].why = Why::Coalescing { with, until };
            }
            return Decision::Wait { until };
        }
    }

    // Rule 6: everything due goes in one POST.
    let mut products = ProductSet::EMPTY;
    for &i in &due_now {
        products.insert(plans[i].product);
        plans[i].why = Why::DueNow;
    }
    Decision::Send {
        products,
        due_at: first_due,
    }
}

/// `share` of `window`, to the millisecond.
fn share_of(window: TimeDelta, share: f64) -> TimeDelta {
    TimeDelta::milliseconds((window.num_milliseconds() as f64 * share) as i64)
}
