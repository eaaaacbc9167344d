//! The one parse and bound for every duration that enters linkfresh: config
//! file and environment, admin API, command-line flags.
//!
//! Why a bound at all: chrono's `TimeDelta` holds ~292 million years, but
//! `DateTime` ends in the year 262143, so a duration of a few hundred
//! thousand years passed every check and then overflowed the scheduler's
//! date arithmetic. No window, cadence, margin or horizon of linkfresh is
//! meaningful beyond a few years, so one bound, [`MAX`] (10 years), applies
//! everywhere a human writes a duration; the policy additionally saturates
//! its arithmetic, so even a value that slipped past (one stored by an older
//! version) cannot crash it.

use std::time::Duration;

use chrono::TimeDelta;

/// The longest duration accepted anywhere: 10 years of 365.25 days (what
/// `humantime` calls `10y`).
pub const MAX: Duration = Duration::from_secs(10 * 31_557_600);

/// What is allowed, for every message about a bad duration.
pub const ALLOWED: &str = "a positive duration up to 10 years such as 90s, 15m, 1h or 1d";

/// Why a string is not an acceptable duration; `Display` says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all (`humantime` could not read it).
    #[error("not a duration ({reason}); use {ALLOWED}")]
    Malformed {
        /// The parser's reason.
        reason: String,
    },
    /// Zero where a positive duration is needed.
    #[error("must be more than zero; use {ALLOWED}")]
    Zero,
    /// Longer than [`MAX`].
    #[error("too long: at most 10 years is allowed; use {ALLOWED}")]
    TooLong,
}

/// Parses a human duration (`90s`, `15m`, `1h`, `1d`, `2w`) that must be
/// positive and at most [`MAX`].
pub fn parse_duration_bounded(raw: &str) -> Result<Duration, DurationError> {
    let d = parse_duration_bounded_or_zero(raw)?;
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    Ok(d)
}

/// Like [`parse_duration_bounded`], but `0s` is allowed (a margin or a
/// coalescing time may be zero).
pub fn parse_duration_bounded_or_zero(raw: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| DurationError::Malformed {
        reason: e.to_string(),
    })?;
    if d > MAX {
        return Err(DurationError::TooLong);
    }
    Ok(d)
}

/// A duration already checked against [`MAX`] as a `TimeDelta`; it always
/// fits (10 years is far inside chrono's range), so no error path is needed.
pub fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d.min(MAX)).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_years_is_accepted_and_a_second_more_is_not() {
        assert_eq!(parse_duration_bounded("10y"), Ok(MAX));
        assert_eq!(
            parse_duration_bounded("10y 1s"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse_duration_bounded("300000y"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn every_error_says_what_is_allowed() {
        for bad in ["", "soon", "0s", "300000y", "99999999999999999999999y"] {
            let e = parse_duration_bounded(bad).unwrap_err().to_string();
            assert!(e.contains("up to 10 years such as 90s"), "{bad}: {e}");
        }
        assert_eq!(parse_duration_bounded_or_zero("0s"), Ok(Duration::ZERO));
    }
}
