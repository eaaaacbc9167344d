//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date in any of
//! the three forms a recipient must accept (IMF-fixdate, the obsolete RFC 850
//! form and asctime). Parsing is pure and total: a header that fits none of
//! them is `None` and the caller falls back to its own backoff.

use chrono::{DateTime, TimeDelta, Utc};

/// When the server asked us to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(TimeDelta),
    /// `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT` (or an obsolete form).
    At(DateTime<Utc>),
}

/// The longest delay honoured; a larger value is clamped (a broken server
/// must not park a link for years).
pub const MAX_RETRY_AFTER: TimeDelta = TimeDelta::days(7);

impl RetryAfter {
    /// Parses a header value; `None` when it fits no RFC 9110 form.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            // Very long digit strings saturate instead of failing.
            let secs = raw.parse::<i64>().unwrap_or(i64::MAX);
            let secs = secs.min(MAX_RETRY_AFTER.num_seconds());
            return Some(RetryAfter::Delay(TimeDelta::seconds(secs)));
        }
        // httpdate accepts IMF-fixdate, RFC 850 and asctime, as RFC 9110 asks.
        let at = httpdate::parse_http_date(raw).ok()?;
        Some(RetryAfter::At(DateTime::<Utc>::from(at)))
    }

    /// The instant before which no retry may be sent, given when the answer
    /// arrived; never earlier than `received_at`, never later than a week.
    pub fn until(self, received_at: DateTime<Utc>) -> DateTime<Utc> {
        let delay = match self {
            RetryAfter::Delay(d) => d,
            RetryAfter::At(at) => at - received_at,
        };
        received_at + delay.clamp(TimeDelta::zero(), MAX_RETRY_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn delta_seconds_are_a_delay() {
        assert_eq!(
            RetryAfter::parse(" 120 "),
            Some(RetryAfter::Delay(TimeDelta::seconds(120)))
        );
    }

    #[test]
    fn all_three_http_date_forms_parse_to_the_same_instant() {
        let want = Some(RetryAfter::At(t("1994-11-06T08:49:37Z")));
        assert_eq!(RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(RetryAfter::parse("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(RetryAfter::parse("Sun Nov  6 08:49:37 1994"), want);
    }

    #[test]
    fn garbage_is_none() {
        for raw in ["", "-5", "soon", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(RetryAfter::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn a_date_in_the_past_means_now_and_huge_delays_are_clamped() {
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(RetryAfter::At(t("2025-01-01T00:00:00Z")).until(now), now);
        assert_eq!(
            RetryAfter::parse("99999999999999999999999")
                .unwrap()
                .until(now),
            now + MAX_RETRY_AFTER
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_until_is_bounded(raw in ".{0,64}", secs in 0i64..4_000_000_000) {
            let now = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            if let Some(ra) = RetryAfter::parse(&raw) {
                let until = ra.until(now);
                prop_assert!(until >= now && until <= now + MAX_RETRY_AFTER);
            }
        }
    }
}
