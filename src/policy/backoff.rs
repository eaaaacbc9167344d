//! Exponential backoff with full jitter, deterministic for a given seed.
//!
//! The jitter comes from a hash of (seed, attempt) instead of a random number
//! generator so that the policy stays a pure function: the same inputs always
//! give the same answer, and property tests can replay any case.

use chrono::TimeDelta;

use super::phase::mix64;

/// The wait after the `failures`-th consecutive failure (1 = first).
///
/// The cap doubles with every failure, from `base` up to `max`; the wait is
/// drawn uniformly from `[base, cap]` ("full jitter" over that range; never
/// below `base`, so a failing link is never retried at once).
pub fn backoff_delay(base: TimeDelta, max: TimeDelta, failures: u32, seed: u64) -> TimeDelta {
    let base_ms = base.num_milliseconds().max(1);
    let cap_ms = backoff_cap(base, max, failures).num_milliseconds();
    let span = (cap_ms - base_ms) as u64;
    let jitter = if span == 0 {
        0
    } else {
        mix64(seed ^ u64::from(failures).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % (span + 1)
    };
    TimeDelta::milliseconds(base_ms + jitter as i64)
}

/// The largest wait after the `failures`-th consecutive failure:
/// `base * 2^(failures-1)`, at most `max`.
pub fn backoff_cap(base: TimeDelta, max: TimeDelta, failures: u32) -> TimeDelta {
    let base_ms = base.num_milliseconds().max(1);
    let max_ms = max.num_milliseconds().max(base_ms);
    let doublings = failures.saturating_sub(1).min(62);
    TimeDelta::milliseconds(
        base_ms
            .checked_mul(1_i64 << doublings)
            .unwrap_or(i64::MAX)
            .min(max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_failure_waits_between_base_and_twice_base() {
        let d = backoff_delay(TimeDelta::minutes(1), TimeDelta::hours(6), 1, 42);
        assert_eq!(d, TimeDelta::minutes(1));
        let d = backoff_delay(TimeDelta::minutes(1), TimeDelta::hours(6), 2, 42);
        assert!(d >= TimeDelta::minutes(1) && d <= TimeDelta::minutes(2));
    }

    proptest! {
        /// Backoff stays within [base, max] for any failure count and seed.
        #[test]
        fn backoff_is_within_bounds(
            base_s in 1i64..3600, extra_s in 0i64..100_000, failures in 0u32..200, seed: u64
        ) {
            let base = TimeDelta::seconds(base_s);
            let max = TimeDelta::seconds(base_s + extra_s);
            let d = backoff_delay(base, max, failures, seed);
            prop_assert!(d >= base && d <= max, "{d} not in [{base}, {max}]");
            prop_assert_eq!(d, backoff_delay(base, max, failures, seed));
        }

        /// The cap never shrinks with more failures, and every wait is under it.
        #[test]
        fn the_cap_grows_and_bounds_the_wait(failures in 0u32..100, seed: u64) {
            let (base, max) = (TimeDelta::seconds(1), TimeDelta::hours(6));
            prop_assert!(backoff_cap(base, max, failures + 1) >= backoff_cap(base, max, failures));
            prop_assert!(backoff_delay(base, max, failures, seed) <= backoff_cap(base, max, failures));
        }
    }
}
