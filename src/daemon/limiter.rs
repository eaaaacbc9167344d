//! The global request rate: `max_requests_per_second` across all links,
//! lowered when 429s spread across links (multiplicative decrease) and raised
//! back slowly while none come (additive increase).
//!
//! governor does the pacing; its quotas are fixed at construction, so a rate
//! change swaps in a new limiter. Changes are rare (at most one decrease per
//! 10 s, one increase per 30 s), so the swap costs nothing on the hot path.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Distinct links answering 429 within [`WINDOW`] that trigger a slow-down.
pub const SPREAD_THRESHOLD: usize = 3;
/// How far back 429s are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
const DECREASE_EVERY: Duration = Duration::from_secs(10);
const INCREASE_EVERY: Duration = Duration::from_secs(30);

struct State {
    rate: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    recent: VecDeque<(Instant, usize)>,
    last_change: Instant,
}

/// The shared limiter; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    max: u32,
    state: Arc<Mutex<State>>,
}

fn build(rate: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
    // A burst of 1/20 s worth: smooth pacing without a timer per request at
    // thousands of requests per second.
    let burst = NonZeroU32::new((rate.get() / 20).max(1)).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Limiter {
    /// A limiter allowing `max` requests per second.
    pub fn new(max: u32) -> Self {
        let max = max.max(1);
        Self {
            max,
            state: Arc::new(Mutex::new(State {
                rate: max,
                limiter: build(max),
                recent: VecDeque::new(),
                last_change: Instant::now(),
            })),
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
        self.current().until_ready().await;
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(&self) -> bool {
        self.current().check().is_ok()
    }

    /// The current rate, requests per second (the tests' view of a slow-down).
    #[cfg(test)]
    pub fn rate(&self) -> u32 {
        self.state.lock().map(|s| s.rate).unwrap_or(self.max)
    }

    /// Reports a 429 for link `link`; halves the rate when 429s came from
    /// several links within a minute (a global signal, not one hot link).
    pub fn on_rate_limited(&self, link: usize) {
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
        let mut links: Vec<usize> = s.recent.iter().map(|(_, l)| *l).collect();
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
                s.limiter = build(rate);
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
                let mut l: Vec<usize> = s
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
                s.limiter = build(rate);
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
