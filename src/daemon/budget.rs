//! The budget gate: the shell around [`crate::policy::budget`]. Links the
//! policy wants to send now wait here while a `[budget]` is set; each round
//! the pure allocator decides which go (on-demand first, then priority,
//! then stalest; paced over the window) and the rest wait, with `explain`
//! saying `budget`, until the allocator's retry time.
//!
//! The POSTs already spent come from the store at start (every replica's,
//! across restarts) and are then kept here, one entry per
//! [`Budget::bucket`], so the allocator's fold stays short whatever the
//! rate. A POST counts from the moment it is admitted,
//! before its intent is committed: one that is then not sent still counts
//! until it leaves the window (spending less, never more). Replicas sharing
//! a store re-read the count each second (see [`BudgetGate::refresh`]).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::BudgetConfig;
use crate::policy::budget::{Allocation, Budget, Candidate, Standing, allocate, standing};

/// Rounds that only wait for pacing come at most this often: each token
/// comes every `window / posts_per_day` (4 ms for 36,000 POSTs a 144 s
/// window), and a round sorts every waiting link. The tokens that gather
/// meanwhile go out together; on-demand offers still start a round at once.
const MIN_ROUND: TimeDelta = TimeDelta::milliseconds(20);

/// A link waiting for budget.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    candidate: Candidate,
    counted: bool,
}

/// The daemon's budget state: spent POSTs and the links waiting.
#[derive(Debug)]
pub struct BudgetGate {
    config: BudgetConfig,
    /// Spent POSTs, `(latest time in bucket, count)`, oldest first.
    usage: Vec<(DateTime<Utc>, u32)>,
    /// This process's own admissions in the window, bucketed like `usage`
    /// (replicas merge them with the others' count from the store).
    own: Vec<(DateTime<Utc>, u32)>,
    waiting: HashMap<usize, Waiting>,
    /// When the allocator can next admit a waiting link.
    retry_at: Option<DateTime<Utc>>,
    /// A new offer may be admissible before `retry_at`.
    dirty: bool,
    /// In an exhaustion episode (the cap is full): warned once.
    exhausted: bool,
    /// Why the last round deferred (a `linkfresh_deferred_total` reason).
    last_reason: &'static str,
    /// An episode announced but not yet handed to the writer (see
    /// [`BudgetGate::take_exhaustion`]).
    announced: Option<Exhaustion>,
}

/// A budget exhaustion episode as announced, for the `budget.exhausted`
/// event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhaustion {
    /// When this gate saw the cap full with links waiting.
    pub at: DateTime<Utc>,
    /// POSTs in the window then.
    pub used: u64,
    /// `posts_per_day`.
    pub limit: u64,
    /// `[budget] window`.
    pub window: TimeDelta,
    /// Links deferred in that round.
    pub waiting: u64,
}

impl BudgetGate {
    /// A gate over `usage`, the POSTs the store holds for the last window.
    pub fn new(config: BudgetConfig, usage: Vec<(DateTime<Utc>, u32)>) -> Self {
        Self {
            config,
            usage,
            own: Vec::new(),
            waiting: HashMap::new(),
            retry_at: None,
            dirty: false,
            exhausted: false,
            last_reason: "pacing",
            announced: None,
        }
    }

    /// The cap and window in force.
    pub fn budget(&self) -> &Budget {
        &self.config.budget
    }

    /// Replaces the rules after a reload (the history is kept).
    pub fn set_config(&mut self, config: BudgetConfig) {
        self.config = config;
        self.dirty = true;
    }

    /// Link `i` is due now: it joins the next round.
    ///
    /// Before the last round's retry time nothing scheduled can be
    /// admitted (that time is when the best waiting link first could), so
    /// a scheduled offer then waits without a round and is counted as
    /// deferred at once, for the reason the last round gave.
    pub fn offer(&mut self, i: usize, candidate: Candidate, now: DateTime<Utc>) {
        let mut counted = self.waiting.get(&i).is_some_and(|w| w.counted);
        if candidate.on_demand || self.retry_at.is_none_or(|r| r <= now) {
            self.dirty = true;
        } else if !counted {
            counted = true;
            metrics::counter!(crate::metrics::DEFERRED_TOTAL, "reason" => self.last_reason)
                .increment(1);
        }
        self.waiting.insert(i, Waiting { candidate, counted });
    }

    /// Link `i` is no longer due (rescheduled, removed, paused).
    pub fn withdraw(&mut self, i: usize) {
        self.waiting.remove(&i);
    }

    /// Whether link `i` waits for budget.
    pub fn is_waiting(&self, i: usize) -> bool {
        self.waiting.contains_key(&i)
    }

    /// The links waiting for budget.
    pub fn waiting(&self) -> Vec<usize> {
        self.waiting.keys().copied().collect()
    }

    /// When a round could admit something (None: nothing waits).
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        if self.waiting.is_empty() {
            None
        } else {
            self.retry_at
        }
    }

    /// Runs a round if one could admit anything: the links to send now, at
    /// most `room` of them, best first; each is counted as spent. Links
    /// that `live` says can no longer be sent (removed, in flight) leave
    /// the round first, so they never take budget.
    pub fn admit(
        &mut self,
        now: DateTime<Utc>,
        room: usize,
        live: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        if self.waiting.is_empty() || room == 0 {
            return Vec::new();
        }
        if !self.dirty && self.retry_at.is_some_and(|r| r > now) {
            return Vec::new();
        }
        self.dirty = false;
        self.waiting.retain(|i, _| live(*i));
        self.forget_before(now);
        let (ids, candidates): (Vec<usize>, Vec<Candidate>) =
            self.waiting.iter().map(|(i, w)| (*i, w.candidate)).unzip();
        let budget = self.config.budget;
        let Allocation {
            mut admitted,
            deferred,
            retry_at,
        } = allocate(&budget, &self.usage, now, &candidates);
        let over_room = admitted.split_off(admitted.len().min(room));
        let admitted: Vec<usize> = admitted.into_iter().map(|k| ids[k]).collect();
        for i in &admitted {
            self.waiting.remove(i);
        }
        if !admitted.is_empty() {
            self.spend(now, admitted.len() as u32);
        }
        let after = standing(&budget, &self.usage, now);
        // Scheduled work stops at the reserve: below it, the cap defers.
        let reason = if after.remaining <= budget.reserve() {
            "budget"
        } else {
            "pacing"
        };
        self.last_reason = reason;
        for k in &deferred {
            if let Some(w) = self.waiting.get_mut(&ids[*k])
                && !w.counted
            {
                w.counted = true;
                metrics::counter!(crate::metrics::DEFERRED_TOTAL, "reason" => reason).increment(1);
            }
        }
        self.retry_at = if over_room.is_empty() {
            retry_at.map(|r| r.max(now + MIN_ROUND))
        } else {
            Some(now)
        };
        self.note_exhaustion(&after, deferred.len(), now);
        admitted
    }

    /// How the budget stands at `now` (for the gauge, pages and `plan`).
    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        standing(&self.config.budget, &self.usage, now)
    }

    /// Takes the other replicas' POSTs in the window from the store (read
    /// at `read_at`) and counts this process's own from memory: from the
    /// first refresh on, the history the gate started with is replaced.
    pub fn refresh(&mut self, others: Vec<(DateTime<Utc>, u32)>, read_at: DateTime<Utc>) {
        let start = read_at - self.config.budget.span();
        let old = self.own.partition_point(|(t, _)| *t <= start);
        self.own.drain(..old);
        let mut usage = others;
        usage.extend(self.own.iter().copied());
        usage.sort_by_key(|(t, _)| *t);
        self.usage = usage;
        self.dirty = true;
    }

    fn spend(&mut self, now: DateTime<Utc>, n: u32) {
        let width = self.config.budget.bucket().num_milliseconds();
        add_to_bucket(&mut self.usage, now, n, width);
        add_to_bucket(&mut self.own, now, n, width);
    }

    fn forget_before(&mut self, now: DateTime<Utc>) {
        let start = now - self.config.budget.span();
        for history in [&mut self.usage, &mut self.own] {
            let old = history.partition_point(|(t, _)| *t <= start);
            history.drain(..old);
        }
    }

    /// The episode announced since the last call, if any: the run loop
    /// hands it to the writer, which records the `budget.exhausted` event
    /// without holding up the loop.
    pub fn take_exhaustion(&mut self) -> Option<Exhaustion> {
        self.announced.take()
    }

    fn note_exhaustion(&mut self, after: &Standing, deferred: usize, now: DateTime<Utc>) {
        if after.remaining == 0 && deferred > 0 {
            if !self.exhausted {
                self.exhausted = true;
                self.announced = Some(budget_exhausted(
                    after,
                    self.config.budget.window,
                    deferred,
                    now,
                ));
            }
        } else if after.remaining > 0 {
            self.exhausted = false;
        }
    }
}

/// Adds `n` POSTs at `now` to a bucketed history: into its last entry when
/// that is in the same bucket, stamped at the later time (so it leaves the
/// window late, never early), else as a new entry.
fn add_to_bucket(usage: &mut Vec<(DateTime<Utc>, u32)>, now: DateTime<Utc>, n: u32, width: i64) {
    let bucket = |t: DateTime<Utc>| t.timestamp_millis().div_euclid(width);
    match usage.last_mut() {
        Some((t, count)) if bucket(*t) == bucket(now) && *t <= now => {
            *t = now;
            *count = count.saturating_add(n);
        }
        _ => usage.push((now, n)),
    }
}

/// The one place a budget exhaustion episode is announced: when the cap is
/// full and links wait. A `tracing` warning, and the episode for the
/// outbound `budget.exhausted` event (written by the writer through
/// [`Outbox::record_budget_exhausted`](crate::store::Outbox::record_budget_exhausted),
/// once per episode across replicas).
fn budget_exhausted(
    standing: &Standing,
    window: TimeDelta,
    waiting: usize,
    now: DateTime<Utc>,
) -> Exhaustion {
    tracing::warn!(
        used = standing.used,
        limit = standing.limit,
        window_seconds = window.num_seconds(),
        waiting,
        "budget exhausted: no more POSTs until the oldest in the window leave it"
    );
    Exhaustion {
        at: now,
        used: standing.used,
        limit: standing.limit,
        window,
        waiting: waiting as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn on_demand() -> Candidate {
        Candidate {
            on_demand: true,
            priority: 0,
            stale_since: None,
        }
    }

    #[test]
    fn a_post_keeps_counting_for_the_window_and_the_slack() {
        let config = BudgetConfig {
            budget: Budget {
                posts_per_day: 2,
                window: TimeDelta::seconds(10),
                slack: TimeDelta::seconds(5),
            },
            price_per_post: None,
            currency: None,
        };
        let mut gate = BudgetGate::new(config, Vec::new());
        gate.offer(1, on_demand(), at(0));
        gate.offer(2, on_demand(), at(0));
        assert_eq!(gate.admit(at(0), 10, |_| true).len(), 2);
        // Past the window, inside window + slack: the cap is still full.
        gate.offer(3, on_demand(), at(12_000));
        assert_eq!(gate.admit(at(12_000), 10, |_| true), Vec::<usize>::new());
        assert_eq!(gate.wake_at(), Some(at(15_000)));
        assert_eq!(gate.admit(at(15_000), 10, |_| true), vec![3]);
    }

    #[test]
    fn a_link_that_can_no_longer_be_sent_takes_no_budget() {
        let config = BudgetConfig {
            budget: Budget {
                posts_per_day: 1,
                window: TimeDelta::seconds(10),
                slack: TimeDelta::zero(),
            },
            price_per_post: None,
            currency: None,
        };
        let mut gate = BudgetGate::new(config, Vec::new());
        gate.offer(1, on_demand(), at(0));
        gate.offer(2, on_demand(), at(0));
        assert_eq!(gate.admit(at(0), 10, |i| i != 1), vec![2]);
        assert_eq!(gate.standing(at(0)).used, 1);
    }
}
