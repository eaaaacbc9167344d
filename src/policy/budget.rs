//! The budget: which of the POSTs due now may go, when `[budget]
//! posts_per_day` caps what the fleet may spend in any rolling window
//! (24 h by default).
//!
//! Two rules, both computed from the POSTs already sent in the window (as
//! the store counts them, so restarts and replicas share them) and `now`:
//!
//! 1. **Cap.** A POST is admitted only if the POSTs in `(t - window, t]`,
//!    itself included, stay within `posts_per_day`. Checked at every send,
//!    this holds for every rolling window (the busiest window always ends at
//!    a send). The window is stretched by [`Budget::slack`], what a POST's
//!    way to MoneyKit may add, so that the cap also holds in MoneyKit's
//!    own count (seen broken by one POST on PostgreSQL without it).
//! 2. **Pacing.** Scheduled work also needs a token from a bucket refilled
//!    at `(posts_per_day - 2 x reserve) / window` and holding at most
//!    [`BURST_SHARE`] of the day (an hour's worth with a 24 h window).
//!    Every POST takes a token, on-demand ones included, but on-demand
//!    POSTs are never refused for pacing (the bucket may go into debt),
//!    only for the cap. So over any
//!    span `s` scheduled work spends at most `burst + s x rate`: the budget
//!    is spread over the day, not gone by 9 am, and over a whole window
//!    scheduled and on-demand work up to the last scheduled admission stay
//!    a reserve short of the cap.
//! 3. **Reserve.** Scheduled work stops [`Budget::reserve`] short of the
//!    cap (an hour of budget with a 24 h window): that room is kept for
//!    on-demand refreshes, so a fleet whose scheduled demand alone exceeds
//!    the budget still serves every on-demand refresh at once as long as
//!    those take at most the reserve in any window, and, through the
//!    pacing rate above, as long as no more than the reserve arrives while
//!    scheduled work waits for tokens. Without them pacing let the window
//!    reach the cap (a full bucket plus a window of refill is `cap +
//!    burst`), and the `demand` benchmark saw up to 1.5 % of on-demand
//!    refreshes wait for the window to roll on. The price: scheduled work
//!    alone spends at most `posts_per_day - reserve` per window, in the
//!    long run `posts_per_day - 2 x reserve` (22/24 of the budget).
//!
//! Order among the candidates of one round: on-demand first, then higher
//! priority, then stalest (never refreshed counts as stalest).
//!
//! The bucket is not stored: it is refolded from the window's history on
//! each call (a bucket that started full at `now - window`). Folding from
//! the same history gives every replica and every restart the same answer.
//! Hand-written rather than a rate-limiter crate (`governor`): those keep
//! their state in memory and read a clock, and this must be a pure
//! function of stored history.

use chrono::{DateTime, TimeDelta, Utc};

use super::saturating;

/// The bucket holds this share of `posts_per_day`: with a 24 h window, an
/// hour of budget. Small enough that a morning cannot spend the day, large
/// enough that a burst of due links after a quiet spell goes out at once.
pub const BURST_SHARE: f64 = 1.0 / 24.0;

/// A fleet-wide spending limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most POSTs in any rolling `window`.
    pub posts_per_day: u32,
    /// The rolling window the cap counts over (`[budget] window`, 24 h).
    pub window: TimeDelta,
    /// How much later than its admission a POST may reach MoneyKit (the
    /// intent commit, the wait for the wire, the margin for clock skew):
    /// the cap counts each POST over `window + slack`, so that however the
    /// POSTs' delays differ, MoneyKit never sees more than the cap in one
    /// `window` of its own clock.
    pub slack: TimeDelta,
}

impl Budget {
    /// How long an admitted POST counts against the cap.
    pub fn span(&self) -> TimeDelta {
        saturating::sum(self.window, self.slack)
    }

    /// Tokens per millisecond: the budget less twice the reserve, spread
    /// over the window. With a full bucket (the reserve's size) that keeps
    /// every span's POSTs, on-demand ones included, a reserve short of the
    /// cap, so on-demand finds the reserve free even in the first window,
    /// before any POST has left it (with the whole budget as the rate, the
    /// bucket plus a window of refill reached the cap an hour before the
    /// first window's end, and on-demand refreshes waited).
    fn rate(&self) -> f64 {
        let paced = u64::from(self.posts_per_day).saturating_sub(2 * self.reserve());
        paced as f64 / self.window.num_milliseconds().max(1) as f64
    }

    /// The width of the time buckets the spent POSTs are counted in, by
    /// the store and the daemon: 1/1440 of the window (a minute of a day),
    /// so a window's history is at most 1,441 entries whatever the rate.
    pub fn bucket(&self) -> TimeDelta {
        (self.window / 1440).max(TimeDelta::milliseconds(1))
    }

    /// [`BURST_SHARE`] of the budget: an hour of it with a 24 h window.
    fn hour_of_budget(&self) -> f64 {
        f64::from(self.posts_per_day) * BURST_SHARE
    }

    /// The bucket's size, at least one POST.
    pub fn burst(&self) -> f64 {
        self.hour_of_budget().max(1.0)
    }

    /// The room under the cap that scheduled work leaves to on-demand
    /// refreshes: the bucket's size, rounded down (none for a budget under
    /// 24 POSTs a day, where an hour of budget is less than one POST).
    pub fn reserve(&self) -> u64 {
        self.hour_of_budget().floor() as u64
    }
}

/// What the allocator needs to know of one link whose POST is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Asked for by the app or an operator (refresh, `max_age`): goes first
    /// and is never paced, only capped.
    pub on_demand: bool,
    /// Its profile's priority (higher first); 0 without profiles.
    pub priority: i32,
    /// The oldest data among the products it would refresh (None: never
    /// refreshed, the stalest of all).
    pub stale_since: Option<DateTime<Utc>>,
}

/// The allocator's answer for one round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    /// Indices of the candidates to send now, in the order to send them.
    pub admitted: Vec<usize>,
    /// Indices of the candidates that wait for budget, best first.
    pub deferred: Vec<usize>,
    /// When the first deferred candidate could be admitted (None: nothing
    /// deferred).
    pub retry_at: Option<DateTime<Utc>>,
}

/// How the budget stands at `now`: for metrics, `explain`, `plan` and the
/// fleet page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// POSTs sent in the rolling window.
    pub used: u64,
    /// `posts_per_day`.
    pub limit: u64,
    /// What the cap still allows now.
    pub remaining: u64,
    /// Pacing tokens available now (negative: on-demand debt).
    pub tokens: f64,
    /// POSTs a full window would spend at the pace of the last
    /// [`BURST_SHARE`] of the window, at most the limit.
    pub projected: u64,
}

/// POSTs sent, as `(time, count)` sorted by time. Entries older than the
/// window are ignored; several POSTs may share one time (a store bucket,
/// stamped with the bucket's end so that it leaves the window late, never
/// early).
pub type Usage<'a> = &'a [(DateTime<Utc>, u32)];

/// The sends of `usage` inside `(now - span, now]`.
fn in_window<'a>(budget: &Budget, usage: Usage<'a>, now: DateTime<Utc>) -> Usage<'a> {
    let start = saturating::add(now, -budget.span());
    let from = usage.partition_point(|(t, _)| *t <= start);
    let to = usage.partition_point(|(t, _)| *t <= now);
    &usage[from..to.max(from)]
}

/// The pacing bucket at `now`, folded from a full bucket at `now - span`.
fn tokens(budget: &Budget, window: Usage<'_>, now: DateTime<Utc>) -> f64 {
    let (rate, burst) = (budget.rate(), budget.burst());
    let mut at = saturating::add(now, -budget.span());
    let mut tokens = burst;
    for &(t, n) in window {
        tokens = (tokens + (t - at).num_milliseconds() as f64 * rate).min(burst) - f64::from(n);
        at = t;
    }
    (tokens + (now - at).num_milliseconds() as f64 * rate).min(burst)
}

/// How the budget stands at `now`.
pub fn standing(budget: &Budget, usage: Usage<'_>, now: DateTime<Utc>) -> Standing {
    let window = in_window(budget, usage, now);
    let used: u64 = window.iter().map(|(_, n)| u64::from(*n)).sum();
    let limit = u64::from(budget.posts_per_day);
    let recent_from = saturating::add(now, -share(budget.window, BURST_SHARE));
    let recent: u64 = window
        .iter()
        .filter(|(t, _)| *t > recent_from)
        .map(|(_, n)| u64::from(*n))
        .sum();
    Standing {
        used,
        limit,
        remaining: limit.saturating_sub(used),
        tokens: tokens(budget, window, now),
        projected: ((recent as f64 / BURST_SHARE) as u64).min(limit),
    }
}

/// Decides which candidates may be sent at `now` and which wait for budget.
pub fn allocate(
    budget: &Budget,
    usage: Usage<'_>,
    now: DateTime<Utc>,
    candidates: &[Candidate],
) -> Allocation {
    let window = in_window(budget, usage, now);
    let used: u64 = window.iter().map(|(_, n)| u64::from(*n)).sum();
    let mut remaining = u64::from(budget.posts_per_day).saturating_sub(used);
    let mut tokens = tokens(budget, window, now);
    let reserve = budget.reserve();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        b.on_demand
            .cmp(&a.on_demand)
            .then(b.priority.cmp(&a.priority))
            .then(a.stale_since.cmp(&b.stale_since))
    });
    let mut out = Allocation::default();
    for i in order {
        let c = &candidates[i];
        let admissible = if c.on_demand {
            remaining > 0
        } else {
            remaining > reserve && tokens >= 1.0
        };
        if admissible {
            remaining -= 1;
            tokens -= 1.0;
            out.admitted.push(i);
        } else {
            out.deferred.push(i);
        }
    }
    if let Some(&first) = out.deferred.first() {
        let admitted_now = out.admitted.len() as u32;
        let limit = u64::from(budget.posts_per_day);
        out.retry_at = Some(if candidates[first].on_demand {
            cap_frees_at(budget, window, now, admitted_now, limit)
        } else {
            let cap_at = cap_frees_at(budget, window, now, admitted_now, limit - reserve);
            let short = (1.0 - tokens).max(0.0) / budget.rate();
            let paced = saturating::add(now, TimeDelta::milliseconds(short.ceil() as i64 + 1));
            cap_at.max(paced)
        });
    }
    out
}

/// The first time after `now` at which one more POST fits under `limit`
/// (the cap, or the cap less the reserve for scheduled work), given the
/// window's history and `extra` POSTs admitted at `now`.
fn cap_frees_at(
    budget: &Budget,
    window: Usage<'_>,
    now: DateTime<Utc>,
    extra: u32,
    limit: u64,
) -> DateTime<Utc> {
    let mut used: u64 = window.iter().map(|(_, n)| u64::from(*n)).sum::<u64>() + u64::from(extra);
    if used < limit {
        return now;
    }
    for &(t, n) in window {
        used -= u64::from(n);
        if used < limit {
            // The send at `t` stops counting once `x >= t + span`.
            return saturating::add(t, budget.span()).max(now);
        }
    }
    // Only what was admitted now fills the cap: it frees a span later.
    saturating::add(now, budget.span())
}

/// `share` of `span`, to the millisecond.
fn share(span: TimeDelta, share: f64) -> TimeDelta {
    TimeDelta::milliseconds((span.num_milliseconds() as f64 * share) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn scheduled() -> Candidate {
        Candidate {
            on_demand: false,
            priority: 0,
            stale_since: None,
        }
    }

    #[test]
    fn a_full_window_defers_until_its_oldest_post_leaves_it() {
        let budget = Budget {
            posts_per_day: 2,
            window: TimeDelta::seconds(100),
            slack: TimeDelta::zero(),
        };
        let usage = [(at(10), 1), (at(50), 1)];
        let asked = Candidate {
            on_demand: true,
            ..scheduled()
        };
        let a = allocate(&budget, &usage, at(60), &[asked]);
        assert_eq!(a.admitted, Vec::<usize>::new());
        assert_eq!(a.retry_at, Some(at(110)));
        let a = allocate(&budget, &usage, at(110), &[scheduled()]);
        assert_eq!(a.admitted, vec![0]);
    }
}
