//! The one source of "now" for the shell.
//!
//! Wall-clock time is derived from `tokio::time::Instant`, so a test that
//! pauses the tokio clock (`tokio::time::pause`) and advances it moves every
//! timestamp the daemon and the simulator see, without sleeping. The pure
//! policy never reads a clock: the shell passes `now` in.

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// A wall clock anchored to the tokio clock at construction.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_wall: DateTime<Utc>,
    base_instant: Instant,
}

impl Clock {
    /// A clock that reads the system time once and then follows tokio time.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock whose "now" is `start` at this tokio instant; for tests and
    /// simulations that need a fixed calendar date.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            base_wall: start,
            base_instant: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        self.base_wall + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }

    /// The tokio instant at which wall time `at` is reached (now, if past).
    pub fn instant_at(&self, at: DateTime<Utc>) -> Instant {
        let from_now = (at - self.now()).to_std().unwrap_or_default();
        Instant::now() + from_now
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_paused_tokio_time() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::starting_at(start);
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + TimeDelta::hours(1));
    }
}
