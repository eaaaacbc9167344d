//! The global request rate: `max_requests_per_second` across all links,
//! lowered when 429s spread across links (multiplicative decrease) and raised
//! back slowly while none come (additive increase).
//!
//! On PostgreSQL the setting is the whole fleet's: each replica paces at
//! its share, `rate × settled partitions / partitions` (see
//! [`share`](super::share)), a real number, so the shares add up to at most
//! the setting.
//!
//! governor does the pacing; its quotas are fixed at construction, so a rate
//! change swaps in a new limiter. Changes are rare (at most one decrease per
//! 10 s, one increase per 30 s), so the swap costs nothing on the hot path.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Distinct links answering 429 within [`WINDOW`] that trigger a slow-down.
pub const SPREAD_THRESHOLD: usize = 3;
/// How far back 429s are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
const DECREASE_EVERY: Duration = Duration::from_secs(10);
const INCREASE_EVERY: Duration = Duration::from_secs(30);

struct State {
    rate: u32,
    /// This replica's share of the fleet's rate, 0 to 1 (1 on SQLite).
    share: f64,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// 429s within [`WINDOW`]: when, and the link's `phase::link_hash`
    /// (not its table slot, which a later link may reuse).
    recent: VecDeque<(Instant, u64)>,
    last_change: Instant,
}

/// The shared limiter; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    max: u32,
    state: Arc<Mutex<State>>,
    /// Wakes waiters when the rate changes: a wait on the old limiter (an
    /// hour per request while this replica held no partition) would
    /// otherwise outlast the change.
    changed: Arc<Notify>,
}

fn build(rate: u32, share: f64) -> Arc<DefaultDirectRateLimiter> {
    let effective = f64::from(rate.max(1)) * share.clamp(0.0, 1.0);
    // A replica without partitions sends nothing; an hour per request
    // stands for "never" without a special case on the hot path.
    let period = if effective > 0.0 {
        Duration::from_secs_f64(1.0 / effective)
    } else {
        Duration::from_secs(3600)
    };
    // A burst of 1/20 s worth: smooth pacing without a timer per request at
    // thousands of requests per second.
    let burst = NonZeroU32::new(((effective / 20.0) as u32).max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    Arc::new(RateLimiter::direct(quota))
}

impl Limiter {
    /// A limiter allowing `max` requests per second.
    pub fn new(max: u32) -> Self {
        Self::with_share(max, 1.0)
    }

    /// A limiter allowing `share` (0 to 1) of `max` requests per second:
    /// a replica's part of the fleet's rate.
    pub fn with_share(max: u32, share: f64) -> Self {
        let max = max.max(1);
        Self {
            max,
            state: Arc::new(Mutex::new(State {
                rate: max,
                share,
                limiter: build(max, share),
                recent: VecDeque::new(),
                last_change: Instant::now(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    fn current(&self) -> Arc<DefaultDirectRateLimiter> {
        self.state
            .lock()
            .map(|s| s.limiter.clone())
            .unwrap_or_else(|p| p.into_inner().limiter.clone())
    }

    /// Waits for the next request slot.
    pub async fn acquire(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let limiter = self.current();
            tokio::select! {
                () = limiter.until_ready() => return,
                () = changed => {}
            }
        }
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(&self) -> bool {
        self.current().check().is_ok()
    }

    /// Sets this replica's share of the fleet's rate (0 to 1); a smaller
    /// share takes effect at once, before any other replica takes the
    /// difference (see [`share`](super::share)).
    pub fn set_share(&self, share: f64) {
        let Ok(mut s) = self.state.lock() else { return };
        if (s.share - share).abs() > f64::EPSILON {
            s.share = share;
            s.limiter = build(s.rate, share);
            self.changed.notify_waiters();
        }
    }

    /// The current rate, requests per second (the tests' view of a slow-down).
    #[cfg(test)]
    pub fn rate(&self) -> u32 {
        self.state.lock().map(|s| s.rate).unwrap_or(self.max)
    }

    /// Reports a 429 for the link whose `phase::link_hash` is `link`; halves the rate when 429s came from
    /// several links within a minute (a global signal, not one hot link).
    pub fn on_rate_limited(&self, link: u64) {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else { return };
        s.recent.push_back((now, link));
        while s
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            s.recent.pop_front();
        }
        let mut links: Vec<u64> = s.recent.iter().map(|(_, l)| *l).collect();
        links.sort_unstable();
        links.dedup();
        if links.len() >= SPREAD_THRESHOLD && now.duration_since(s.last_change) >= DECREASE_EVERY {
            let rate = (s.rate / 2).max(1);
            if rate != s.rate {
                tracing::warn!(
                    from = s.rate,
                    to = rate,
                    links = links.len(),
                    "429s across links: lowering the global request rate"
                );
                s.rate = rate;
                s.limiter = build(rate, s.share);
                self.changed.notify_waiters();
            }
            s.last_change = now;
        }
    }

    /// Called periodically: raises the rate by a tenth of the maximum when no
    /// slow-down happened for a while.
    pub fn tick(&self) {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else { return };
        if s.rate < self.max && now.duration_since(s.last_change) >= INCREASE_EVERY {
            let spread = {
                let mut l: Vec<u64> = s
                    .recent
                    .iter()
                    .filter(|(t, _)| now.duration_since(*t) <= WINDOW)
                    .map(|(_, l)| *l)
                    .collect();
                l.sort_unstable();
                l.dedup();
                l.len()
            };
            if spread < SPREAD_THRESHOLD {
                let rate = (s.rate + (self.max / 10).max(1)).min(self.max);
                tracing::info!(
                    from = s.rate,
                    to = rate,
                    "no 429 spread: raising the global request rate"
                );
                s.rate = rate;
                s.limiter = build(rate, s.share);
                self.changed.notify_waiters();
                s.last_change = now;
            }
        }
        metrics::gauge!(crate::metrics::REQUEST_RATE_LIMIT).set(f64::from(s.rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_under_a_share_of_nothing_ends_when_the_share_grows() {
        let l = Limiter::with_share(100, 0.0);
        l.acquire().await;
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "no share, no slot");
        l.set_share(0.5);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiter sees the new share")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn spread_429s_halve_the_rate_and_quiet_raises_it_back() {
        let l = Limiter::new(100);
        l.on_rate_limited(1);
        l.on_rate_limited(1);
        assert_eq!(l.rate(), 100, "one hot link is not a global signal");
        tokio::time::advance(DECREASE_EVERY).await;
        l.on_rate_limited(2);
        l.on_rate_limited(3);
        assert_eq!(l.rate(), 50);
        tokio::time::advance(WINDOW + INCREASE_EVERY).await;
        l.tick();
        assert_eq!(l.rate(), 60);
    }
}
