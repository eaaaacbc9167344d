//! When a failed delivery is tried again: exponential backoff with jitter
//! (`backon`'s builder, used as a delay calculator because the retries are
//! durable: the attempt count lives in the outbox row and survives
//! restarts), never past the event's `retry_for`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};

/// The next try of an event created at `created` after its `attempts`-th
/// failed try at `now`, or `None` when `retry_for` is spent (the event is
/// then marked failed). The last try falls on `created + retry_for`.
pub fn next_try(
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    attempts: u32,
    base: Duration,
    max: Duration,
    retry_for: Duration,
    seed: u64,
) -> Option<DateTime<Utc>> {
    let deadline = created + crate::duration::to_delta(retry_for);
    if now >= deadline {
        return None;
    }
    let delay = ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter_seed(seed)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1).min(64) as usize)
        .unwrap_or(max);
    Some((now + crate::duration::to_delta(delay)).min(deadline))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    proptest! {
        /// A retry is always later than now, never after the deadline, and
        /// never more than twice the longest pause away (jitter adds up to
        /// one pause).
        #[test]
        fn retries_stay_inside_retry_for(
            age in 0i64..10_000_000, attempts in 1u32..100, seed in any::<u64>(),
            base in 1u64..10_000, max_extra in 0u64..1_000_000, retry_for in 1u64..100_000_000,
        ) {
            let (base, max, retry_for) = (
                Duration::from_millis(base),
                Duration::from_millis(base + max_extra),
                Duration::from_millis(retry_for),
            );
            let now = t(age);
            match next_try(t(0), now, attempts, base, max, retry_for, seed) {
                None => prop_assert!(age as u128 >= retry_for.as_millis()),
                Some(at) => {
                    prop_assert!(at > now);
                    prop_assert!(at <= t(retry_for.as_millis() as i64));
                    prop_assert!((at - now).num_milliseconds() as u128 <= 2 * max.as_millis());
                }
            }
        }
    }

    #[test]
    fn pauses_grow_until_the_maximum() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let day = Duration::from_secs(86_400);
        let pause = |n| (next_try(t(0), t(0), n, base, max, day, 7).unwrap() - t(0)).num_seconds();
        assert!(pause(1) < 2 && pause(4) >= 8 && pause(20) >= 60);
    }
}
