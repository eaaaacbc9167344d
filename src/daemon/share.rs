//! Fleet-wide limits: on PostgreSQL, `max_requests_per_second` and
//! `max_in_flight` are the whole fleet's, and each replica uses the share
//! of the partitions it holds (see "Several replicas" in [`crate::store::ownership`]).
//!
//! - Rate: `max × settled / partitions` requests per second, a real number
//!   ([`rate_share`]): the shares of disjoint holdings add up to at most
//!   the setting.
//! - In flight: `⌊max × settled / partitions⌋` places on the wire
//!   ([`share`]), at least one while the replica holds a settled partition,
//!   so the sum stays within the setting as long as `max_in_flight` is at
//!   least the number of replicas (below that some replica must get none,
//!   and the minimum of one lets the fleet exceed it by at most one per
//!   replica: set `max_in_flight` no lower than the replicas you run).
//!
//! While rebalancing, a replica shrinks before another grows. A partition
//! the assignment gives to another replica first leaves the holder's
//! schedule and share (the rate is rebuilt at once, in-flight places are
//! withdrawn as its requests end); only once every place is withdrawn does
//! its next heartbeat give the partition back, and the next holder counts
//! it at once. A partition taken from a holder whose lease lapsed (dead or
//! paused) counts only [`SETTLE_TIMEOUTS`] request timeouts after that
//! lease ended, when its last requests are over. Newly held links are
//! scheduled at once, within the replica's current share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::limiter::Limiter;
use crate::policy::partitions::{rate_share, share};

/// How many request timeouts a partition's previous holder may still have
/// requests of it in flight, or queued for the wire, after it let go.
pub const SETTLE_TIMEOUTS: u32 = 2;

/// This replica's limits, resized at every heartbeat.
pub struct FleetShare {
    limiter: Limiter,
    in_flight: Arc<Semaphore>,
    max_rate: u32,
    max_in_flight: u32,
    /// Places on the wire created and not yet withdrawn.
    places: Mutex<usize>,
    /// Places being withdrawn: still on the wire or queued for it.
    withdrawing: Arc<AtomicUsize>,
}

impl FleetShare {
    /// A share of nothing yet: no place on the wire and no rate until the
    /// first heartbeat says which partitions this replica holds. The
    /// semaphore must start with no permits.
    pub fn new(
        limiter: Limiter,
        in_flight: Arc<Semaphore>,
        max_rate: u32,
        max_in_flight: u32,
    ) -> Self {
        limiter.set_share(0.0);
        Self {
            limiter,
            in_flight,
            max_rate,
            max_in_flight,
            places: Mutex::new(0),
            withdrawing: Arc::default(),
        }
    }

    /// Whether every withdrawal has completed: this replica's requests fit
    /// its current share, so what it stopped counting can be given back.
    pub fn shrunk(&self) -> bool {
        self.withdrawing.load(Ordering::Acquire) == 0
    }

    /// Applies the share of `settled` of `partitions`: the rate at once,
    /// the places on the wire by adding permits or withdrawing them as
    /// they are given back (tokio's semaphore is fair, so a withdrawal
    /// queued now goes before any later send).
    pub fn apply(&self, settled: u32, partitions: u32) {
        let rate = rate_share(self.max_rate, settled, partitions);
        self.limiter
            .set_share(rate / f64::from(self.max_rate.max(1)));
        let target = share(self.max_in_flight, settled, partitions) as usize;
        let Ok(mut places) = self.places.lock() else {
            return;
        };
        if target > *places {
            self.in_flight.add_permits(target - *places);
        } else if target < *places {
            let withdraw = u32::try_from(*places - target).unwrap_or(u32::MAX);
            let sem = self.in_flight.clone();
            let withdrawing = self.withdrawing.clone();
            withdrawing.fetch_add(withdraw as usize, Ordering::AcqRel);
            tokio::spawn(async move {
                if let Ok(permits) = sem.acquire_many_owned(withdraw).await {
                    permits.forget();
                }
                withdrawing.fetch_sub(withdraw as usize, Ordering::AcqRel);
            });
        }
        *places = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn places_grow_at_once_and_shrink_as_requests_give_them_back() {
        let sem = Arc::new(Semaphore::new(0));
        let share = FleetShare::new(Limiter::new(100), sem.clone(), 100, 64);
        share.apply(32, 64);
        assert_eq!(sem.available_permits(), 32);
        let busy = sem.clone().acquire_many_owned(30).await.unwrap();
        share.apply(16, 64);
        tokio::task::yield_now().await;
        assert_eq!(sem.available_permits(), 0, "the two free places go first");
        assert!(!share.shrunk(), "14 places are still on the wire");
        drop(busy);
        tokio::task::yield_now().await;
        assert_eq!(sem.available_permits(), 16);
        assert!(share.shrunk());
        share.apply(0, 64);
        tokio::task::yield_now().await;
        assert_eq!(sem.available_permits(), 0);
    }
}
