//! Date arithmetic that saturates at chrono's ends instead of panicking.
//!
//! Every duration that enters linkfresh is bounded to 10 years
//! ([`crate::duration`]), but the policy also runs on what the store hands
//! back (values an older version accepted) and on `now` near chrono's
//! limits in property tests. `DateTime + TimeDelta` panics on overflow, so
//! the policy adds through these helpers: a time past the end of chrono's
//! calendar means "never", which is what such a cadence asks for anyway.

use chrono::{DateTime, TimeDelta, Utc};

/// `t + d`, or chrono's last (first) instant if that overflows.
pub(crate) fn add(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `a + b`, or the largest (smallest) span if that overflows.
pub(crate) fn sum(a: TimeDelta, b: TimeDelta) -> TimeDelta {
    a.checked_add(&b).unwrap_or(if b < TimeDelta::zero() {
        TimeDelta::MIN
    } else {
        TimeDelta::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_past_chronos_ends_stop_there() {
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(add(max, TimeDelta::hours(1)), max);
        assert_eq!(
            add(DateTime::<Utc>::MIN_UTC, -TimeDelta::hours(1)),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(sum(TimeDelta::MAX, TimeDelta::hours(1)), TimeDelta::MAX);
        let t = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        assert_eq!(add(t, TimeDelta::hours(1)).timestamp(), 3600);
    }
}
