//! Whether the store can commit right now: set by the daemon's writer on
//! every failed or successful round, read by `/readyz` and exported as the
//! gauge `linkfresh_store_writable`.
//!
//! A handle of its own, in the store layer both sides already depend on, so
//! the server learns about the writer's trouble without importing the daemon.
//! `/readyz`'s own `SELECT 1` cannot see it: on a full disk reads still
//! work, and only commits fail.

use std::sync::{Arc, Mutex};

/// Shared, cheap to clone; healthy until told otherwise.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    problem: Arc<Mutex<Option<String>>>,
}

impl StoreHealth {
    /// A healthy handle; exports the gauge at 1 (the store was just opened
    /// and migrated, so it could write a moment ago).
    pub fn new() -> Self {
        metrics::gauge!(crate::metrics::STORE_WRITABLE).set(1.0);
        Self::default()
    }

    /// Records that the store failed, with the reason readiness reports.
    pub fn failed(&self, reason: impl Into<String>) {
        let reason = reason.into();
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(reason);
        }
        metrics::gauge!(crate::metrics::STORE_WRITABLE).set(0.0);
    }

    /// Records that the store answered again.
    pub fn recovered(&self) {
        if let Ok(mut p) = self.problem.lock()
            && p.take().is_some()
        {
            tracing::info!("the store answers again");
        }
        metrics::gauge!(crate::metrics::STORE_WRITABLE).set(1.0);
    }

    /// Why the store is not usable now; `None` while it is.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }
}
