//! How often a product is wanted: as often as allowed (the default), every
//! fixed duration, or at the times of a cron expression.
//!
//! Cron expressions are parsed by `croner`, the parser tokio-cron-scheduler is
//! built on. We use the parser alone: the policy needs a pure "next match after
//! T" to compute due times, not a wall-clock job runner.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed cron expression, cheap to clone and share across links.
#[derive(Clone)]
pub struct CronSchedule {
    cron: Arc<Cron>,
    source: Arc<str>,
}

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cron expression {expr:?}: {reason}; use 5 or 6 fields (seconds optional), e.g. \"0 0 6 * * *\" for 06:00:00 UTC daily"
)]
pub struct CronError {
    /// The rejected expression.
    pub expr: String,
    /// The parser's reason.
    pub reason: String,
}

impl CronSchedule {
    /// Parses a 5- or 6-field expression (seconds optional), evaluated in UTC.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(expr).map_err(|e| CronError {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        let schedule = Self {
            cron: Arc::new(cron),
            source: Arc::from(expr),
        };
        // An expression that never fires (e.g. 30 February) is as bad as one
        // that does not parse.
        let probe = DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
        if schedule.next_after(probe).is_none() {
            return Err(CronError {
                expr: expr.to_owned(),
                reason: "it never matches".to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The first matching time strictly after `t`, if any.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.as_str())
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The wanted cadence of one product of one link.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cadence {
    /// As often as the window allows.
    #[default]
    AsOftenAsAllowed,
    /// No sooner than this long after the last request (and never inside the window).
    Every(TimeDelta),
    /// At each matching time; a match inside the window is served when the window ends.
    Cron(CronSchedule),
    /// Follows demand from the owning app: the `active` cadence for a while
    /// after an activity call, the `idle` one otherwise (from a profile).
    Demand(Arc<super::demand::Demand>),
}

impl Cadence {
    /// When the product is wanted next, before the window is taken into
    /// account. `last` is the last time it was requested (or refreshed by the
    /// server); `None` means never.
    pub fn wanted_after(&self, last: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match (self, last) {
            (Cadence::AsOftenAsAllowed, _) | (Cadence::Every(_), None) => None,
            (Cadence::Every(every), Some(last)) => Some(super::saturating::add(last, *every)),
            // Never requested: the next match from the beginning of time is in
            // the past, so the first request goes out at once (a fresh link
            // should not wait a day); afterwards, the first match after the
            // last request. This is what "daily at 06:00" means to a user:
            // one request per matching time, none skipped because the window
            // ended a few seconds after the match.
            (Cadence::Cron(_), None) => None,
            (Cadence::Cron(c), Some(last)) => c.next_after(last),
            // Without knowing the link's activity: the idle cadence, and
            // `never` as the end of time. The policy itself asks
            // [`Demand::wanted_after`](super::demand::Demand::wanted_after).
            (Cadence::Demand(d), last) => match &d.idle {
                Some(idle) => idle.wanted_after(last),
                None => Some(DateTime::<Utc>::MAX_UTC),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_daily_cron_is_wanted_at_its_next_match_after_the_last_request() {
        let c = Cadence::Cron(CronSchedule::parse("0 0 6 * * *").unwrap());
        assert_eq!(
            c.wanted_after(Some(t("2026-01-01T06:00:31Z"))),
            Some(t("2026-01-02T06:00:00Z"))
        );
        let five_fields = CronSchedule::parse("30 6 * * *").unwrap();
        assert_eq!(
            five_fields.next_after(t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T06:30:00Z"))
        );
    }

    #[test]
    fn bad_cron_expressions_say_what_is_allowed() {
        let err = CronSchedule::parse("every day").unwrap_err();
        assert!(err.to_string().contains("5 or 6 fields"), "{err}");
        assert!(CronSchedule::parse("0 0 0 30 2 *").is_err());
    }
}
