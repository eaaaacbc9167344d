//! The daemon's liveness, shared by the run loop (which beats) and the
//! server (whose `/healthz` reads it), plus the fatal slot through which a
//! supervised server task or a fatal MoneyKit answer stops the daemon.
//!
//! A module of its own, below both `daemon` and `server`, so that neither
//! names the other: the composition root ([`crate::app`]) hands one
//! [`Heartbeat`] to each.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Liveness shared between the loop and `/healthz`, plus the fatal error
/// that stops the daemon.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    last: Arc<AtomicI64>,
    /// Set by the loop when MoneyKit's answer means the daemon must stop,
    /// or by a supervised server task that ended early.
    pub fatal: Arc<Mutex<Option<String>>>,
    /// Rung by the admin API after it wrote a change the loop must act on
    /// at once (an on-demand refresh, an activity): the loop polls the
    /// store's changes now instead of at its next one-second tick, so a
    /// refresh the window allows leaves within milliseconds.
    pub changed: Arc<tokio::sync::Notify>,
}

impl Heartbeat {
    /// Marks the loop alive now.
    pub fn beat(&self) {
        self.last.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the loop last marked itself alive.
    pub fn age_ms(&self) -> i64 {
        monotonic_ms() - self.last.load(Ordering::Relaxed)
    }

    /// Records `why` as the fatal error, unless one is recorded already
    /// (the first cause is the one worth reporting).
    pub fn set_fatal(&self, why: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(why);
        }
    }

    /// The fatal error recorded so far, if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|f| f.clone())
    }
}

fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}
