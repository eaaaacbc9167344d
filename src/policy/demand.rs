//! Demand from the owning app: a product whose profile has a demand rule
//! follows its `active` cadence for `active_for` after the app last said
//! "this user is active" (`POST /api/links/{id}/activity`), and its `idle`
//! cadence otherwise, where `never` means "only when asked".
//!
//! Pure: the last activity time and `now` are arguments. The window still
//! rules over both cadences ([`super::evaluate`] takes the later of the
//! window end and what the cadence wants), so no amount of activity makes a
//! product due sooner than its window allows.

use chrono::{DateTime, TimeDelta, Utc};

use super::Cadence;
use super::saturating;

/// One product's demand rule: its cadence while the user is active and
/// while idle. Shared by every link of the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// How long after an activity call the `active` cadence applies.
    pub active_for: TimeDelta,
    /// The cadence while active (never itself a demand rule).
    pub active: Cadence,
    /// The cadence while idle; `None` is `never`: only an on-demand refresh
    /// (or activity) sends the product.
    pub idle: Option<Cadence>,
}

/// When a demand-ruled product is wanted next, and whether that time comes
/// from the idle cadence (what `explain` calls `idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The active cadence wants it then (`None`: as soon as the window allows).
    Active(Option<DateTime<Utc>>),
    /// The idle cadence wants it then (`None`: as soon as the window allows).
    Idle(Option<DateTime<Utc>>),
    /// Idle with `never`: not wanted until the app asks or becomes active.
    Never,
}

impl Demand {
    /// The end of the active period started by the last activity call.
    pub fn active_until(&self, last_activity: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        last_activity.map(|a| saturating::add(a, self.active_for))
    }

    /// When the product is wanted next, before the window is taken into
    /// account, given its last request `last` and the link's last activity.
    ///
    /// The cadence is piecewise in time: the active one before the end of the
    /// active period, the idle one from then on. So a product the active
    /// cadence wants before the period ends is wanted then; otherwise it is
    /// wanted at the later of the period's end and what the idle cadence
    /// wants (a link going idle never waits longer than its idle cadence,
    /// and never less than its active one would have).
    pub fn wanted_after(
        &self,
        last: Option<DateTime<Utc>>,
        last_activity: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Wanted {
        if let Some(until) = self.active_until(last_activity).filter(|u| *u > now) {
            let active = self.active.wanted_after(last);
            if active.is_none_or(|t| t < until) {
                return Wanted::Active(active);
            }
            return match &self.idle {
                None => Wanted::Never,
                Some(idle) => Wanted::Idle(Some(
                    idle.wanted_after(last).map_or(until, |t| t.max(until)),
                )),
            };
        }
        match &self.idle {
            None => Wanted::Never,
            Some(idle) => Wanted::Idle(idle.wanted_after(last)),
        }
    }
}

/// An activity time in whole unix seconds (up to 2106), 0 for none: how
/// the daemon's table keeps it in 4 bytes per link. Activity is about
/// minutes and hours; a second is plenty.
pub fn activity_secs(t: Option<DateTime<Utc>>) -> u32 {
    t.map_or(0, |t| {
        u32::try_from(t.timestamp().max(1)).unwrap_or(u32::MAX)
    })
}

/// The time [`activity_secs`] stands for.
pub fn activity_from_secs(s: u32) -> Option<DateTime<Utc>> {
    (s != 0)
        .then(|| DateTime::from_timestamp(i64::from(s), 0))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::hours(h)
    }

    fn hourly_then_daily() -> Demand {
        Demand {
            active_for: TimeDelta::hours(24),
            active: Cadence::Every(TimeDelta::hours(1)),
            idle: Some(Cadence::Every(TimeDelta::hours(24))),
        }
    }

    #[test]
    fn an_active_link_follows_the_active_cadence_and_an_idle_one_the_idle_cadence() {
        let d = hourly_then_daily();
        assert_eq!(
            d.wanted_after(Some(t(0)), Some(t(0)), t(0)),
            Wanted::Active(Some(t(1)))
        );
        assert_eq!(
            d.wanted_after(Some(t(0)), None, t(0)),
            Wanted::Idle(Some(t(24)))
        );
        // Activity two days ago is over.
        assert_eq!(
            d.wanted_after(Some(t(0)), Some(t(-48)), t(0)),
            Wanted::Idle(Some(t(24)))
        );
    }

    #[test]
    fn the_active_period_ending_hands_over_to_the_idle_cadence_not_later() {
        let d = Demand {
            active_for: TimeDelta::minutes(30),
            ..hourly_then_daily()
        };
        // Active until 00:30, the active cadence wants 01:00: idle rules, 24h.
        assert_eq!(
            d.wanted_after(Some(t(0)), Some(t(0)), t(0)),
            Wanted::Idle(Some(t(24)))
        );
        let never = Demand { idle: None, ..d };
        assert_eq!(
            never.wanted_after(Some(t(0)), Some(t(0)), t(0)),
            Wanted::Never
        );
        assert_eq!(never.wanted_after(None, None, t(0)), Wanted::Never);
    }
}
