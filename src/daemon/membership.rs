//! This replica's membership in a fleet sharing a PostgreSQL database: the
//! heartbeat that holds, acquires and releases partitions (see "Several
//! replicas" in [`crate::store`]), and the [`Holdings`] it publishes to
//! the scheduler (which links to load and schedule) and the dispatcher
//! (which partition and epoch fence each intent, and whether a committed
//! POST may still leave).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::share::{FleetShare, SETTLE_TIMEOUTS};
use crate::policy::partitions::{assign, partition_of};
use crate::store::Store;
use crate::store::ownership::Fence;

/// The partitions this replica holds, as of its last successful heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holdings {
    /// The database's partition count (0 before the first heartbeat).
    pub partitions: u32,
    /// Each held partition and the epoch it was acquired at.
    pub held: BTreeMap<u32, i64>,
    /// Partitions still held in the database but being given back (see
    /// [`Tick::leaving`]), with their epochs: no new intent is fenced by
    /// them, but a POST whose intent was committed before the tick still
    /// leaves. Nobody else can take them until they are given back, and
    /// its link's lease keeps the next holder off until its outcome is
    /// recorded. Dropping it instead (as before) skipped that link's
    /// refresh, its intent already counting it as sent: the failover
    /// benchmark counted 0-25 such skips per replica at each join.
    ///
    /// [`Tick::leaving`]: crate::store::ownership::Tick::leaving
    pub leaving: BTreeMap<u32, i64>,
    /// Until when the hold is certain, by this process's monotonic clock:
    /// the heartbeat's start plus the lease, which ends no later than the
    /// database's lease (stamped after that start). A paused or cut-off
    /// replica stops sending at this moment, before anyone may take over.
    pub valid_until: Option<Instant>,
}

impl Holdings {
    /// The partition of a link id.
    pub fn partition(&self, id: &str) -> u32 {
        partition_of(id, self.partitions)
    }

    /// Whether the link's partition is held (the scheduler's filter).
    pub fn holds(&self, id: &str) -> bool {
        self.partitions > 0 && self.held.contains_key(&self.partition(id))
    }

    /// The fence of an intent for the link, if its partition is held and
    /// the hold is still certain at `now`.
    pub fn fence(&self, id: &str, now: Instant) -> Option<Fence> {
        if self.valid_until.is_none_or(|v| now >= v) || self.partitions == 0 {
            return None;
        }
        let part = self.partition(id);
        self.held.get(&part).map(|&epoch| Fence { part, epoch })
    }

    /// Whether a POST fenced by `fence` may still leave at `now`: the same
    /// partition at the same epoch, held or not yet given back, and the
    /// hold still certain.
    pub fn still_holds(&self, fence: Fence, now: Instant) -> bool {
        let epoch = Some(&fence.epoch);
        self.valid_until.is_some_and(|v| now < v)
            && (self.held.get(&fence.part) == epoch || self.leaving.get(&fence.part) == epoch)
    }
}

/// The heartbeat's settings.
pub(crate) struct Membership {
    /// The store; its [`ownership`](Store::ownership) must exist.
    pub store: Arc<dyn Store>,
    /// This process's replica name.
    pub replica: String,
    /// `[database] lease`.
    pub lease: Duration,
    /// `[moneykit] request_timeout`: how long a previous holder may still
    /// have requests in flight (see [`super::share`]).
    pub request_timeout: Duration,
    /// The limits resized at every heartbeat.
    pub share: FleetShare,
    /// `[database] initial_settle`: the wait before the first tick when
    /// the fleet is starting cold.
    pub initial_settle: Duration,
}

impl Membership {
    /// How often the heartbeat runs: three times per lease, so that one
    /// slow or failed heartbeat does not lose the partitions.
    pub fn every(lease: Duration) -> Duration {
        (lease / 3).max(Duration::from_millis(50))
    }

    /// Beats until `cancel`, publishing every result to `holdings`. A failed
    /// heartbeat keeps the previous holdings, which lapse at their
    /// `valid_until`. Leaving (releasing everything) is the caller's, once
    /// the requests in flight are done.
    pub async fn run(self, holdings: watch::Sender<Arc<Holdings>>, cancel: CancellationToken) {
        let Some(ownership) = self.store.ownership() else {
            return;
        };
        // Decision (issue 16, memory): a replica that finds no partition
        // held by anyone (a fleet starting cold) waits `initial_settle`
        // (2 s by default, at most half a lease) after announcing itself,
        // then assigns; one joining a running fleet (some partition held)
        // beats at once, as before. Kafka's `group.initial.rebalance.delay.ms`,
        // bounded and only where it helps.
        //
        // Why: taking partitions at the first heartbeat let the first of
        // replicas started together see no other live replica, take every
        // partition, load every link and give two thirds back a third of a
        // lease later: its peak memory was the whole fleet's (and so the
        // fleet's machines had to be sized for it). Rejected alternatives:
        // a settle on every start (delays a replica joining a running
        // fleet, and every failover replacement, for nothing); loading
        // gained partitions only once a second heartbeat confirms them
        // (delays every start by a third of a lease, 5 s by default).
        //
        // Failure analysis:
        // - A lone replica starting cold sends its first POST
        //   `initial_settle` later than before (an on-demand refresh too):
        //   the cost, paid only when no replica of the fleet is running.
        //   `"0s"` restores the old behaviour.
        // - Replicas started further apart than the settle: the first
        //   takes the partitions of the replicas live at its first tick
        //   (itself and any that announced), the later ones join a running
        //   fleet and rebalance as before; the peak is then the share of
        //   the replicas that had announced, not worse than before.
        // - A replica that announces and dies during its settle: its row
        //   lapses after a lease; the others' targets gave it partitions
        //   that nobody acquired, which they take when its row lapses:
        //   within lease + one heartbeat, inside lease + one window.
        // - The announcement renews the replica's row for one lease, so the
        //   settle is shorter than the lease (checked at start).
        // - Failover is unchanged: a fleet with a live replica is never cold.
        if !self.initial_settle.is_zero() {
            match ownership.announce(&self.replica, self.lease).await {
                Ok(true) => {
                    tracing::info!(
                        settle = ?self.initial_settle,
                        "no partition is held: the fleet is starting; waiting for the replicas started with this one before taking partitions"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(self.initial_settle) => {}
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not announce this replica; taking partitions at once")
                }
            }
        }
        let settle = self.request_timeout * SETTLE_TIMEOUTS;
        let mut lapsed_logged = false;
        let mut leaving: Vec<u32> = Vec::new();
        loop {
            let started = Instant::now();
            let mut next_lapse = None;
            // Given back only once the share no longer counts them.
            let ready: &[u32] = if self.share.shrunk() { &leaving } else { &[] };
            match ownership
                .tick(&self.replica, self.lease, settle, ready, assign)
                .await
            {
                Ok(tick) => {
                    lapsed_logged = false;
                    leaving = tick.leaving.iter().map(|l| l.0).collect();
                    next_lapse = tick.next_lapse;
                    let held: BTreeMap<u32, i64> = tick.held.iter().copied().collect();
                    if tick.rebalanced {
                        metrics::counter!(crate::metrics::REBALANCES_TOTAL).increment(1);
                        tracing::info!(
                            partitions = held.len(),
                            of = tick.partitions,
                            replicas = tick.live,
                            "rebalanced: this replica's partitions changed"
                        );
                    }
                    metrics::gauge!(crate::metrics::PARTITIONS_OWNED).set(held.len() as f64);
                    self.share.apply(tick.settled, tick.partitions);
                    holdings.send_replace(Arc::new(Holdings {
                        partitions: tick.partitions,
                        held,
                        leaving: tick.leaving.into_iter().collect(),
                        valid_until: Some(started + self.lease),
                    }));
                }
                Err(e) => {
                    let current = holdings.borrow().clone();
                    if current.valid_until.is_some_and(|v| Instant::now() >= v) && !lapsed_logged {
                        lapsed_logged = true;
                        tracing::error!(error = %e, "could not renew this replica's partitions in time; not sending until the store answers");
                        self.share.apply(0, current.partitions);
                        metrics::gauge!(crate::metrics::PARTITIONS_OWNED).set(0.0);
                    } else {
                        tracing::warn!(error = %e, "could not renew this replica's partitions; retrying");
                    }
                }
            }
            let wake = heartbeat_wake(started, Self::every(self.lease), Instant::now(), next_lapse);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// When the heartbeat that `started` (and whose tick returned at
/// `returned`) runs next: after its period, or just past the end of another
/// replica's lease if that comes first ([`Tick::next_lapse`], measured from
/// the tick's reading of the database's clock, which came before
/// `returned`), so that a replica that stopped renewing (killed, paused)
/// has its partitions taken over as its lease ends, not up to a period (a
/// third of the lease) later. Failover on 1,000 links, lease 15 s, 1 s
/// windows: the killed replica's links waited 18.1 s (p50) with the period
/// alone.
///
/// The lease ends come from the tick, not from a later look at the fleet:
/// replicas started together heartbeat in step, so a dead one's lease
/// tends to end just as the survivors' heartbeats run, and a look taken
/// after it ended no longer showed the partitions as that replica's
/// (failover: one run in twelve, every link of the killed replica ~4 s late).
///
/// [`Tick::next_lapse`]: crate::store::ownership::Tick::next_lapse
fn heartbeat_wake(
    started: Instant,
    every: Duration,
    returned: Instant,
    next_lapse: Option<Duration>,
) -> Instant {
    let period = started + every;
    next_lapse.map_or(period, |left| {
        period.min(returned + left + Duration::from_millis(LAPSE_MARGIN_MS))
    })
}

/// Past a lease's end before the heartbeat looks again: the two clocks
/// (ours, the database's) and the read itself.
const LAPSE_MARGIN_MS: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_millis(LAPSE_MARGIN_MS);
    const EVERY: Duration = Duration::from_secs(5);

    #[test]
    fn a_lease_ending_before_the_period_wakes_the_heartbeat_just_past_its_end() {
        let started = Instant::now();
        let returned = started + Duration::from_millis(30);
        let wake = heartbeat_wake(started, EVERY, returned, Some(Duration::from_millis(900)));
        assert_eq!(wake, returned + Duration::from_millis(900) + MARGIN);
    }

    #[test]
    fn a_lease_ending_at_once_wakes_the_heartbeat_at_once() {
        let started = Instant::now();
        let returned = started + Duration::from_millis(30);
        let wake = heartbeat_wake(started, EVERY, returned, Some(Duration::ZERO));
        assert_eq!(wake, returned + MARGIN);
    }

    #[test]
    fn a_post_committed_for_a_partition_being_given_back_still_leaves_until_it_is() {
        let now = Instant::now();
        let fence = |part, epoch| Fence { part, epoch };
        let holdings = Holdings {
            partitions: 4,
            held: BTreeMap::from([(0, 3)]),
            leaving: BTreeMap::from([(1, 5)]),
            valid_until: Some(now + EVERY),
        };
        assert!(holdings.still_holds(fence(0, 3), now));
        assert!(holdings.still_holds(fence(1, 5), now), "being given back");
        assert!(!holdings.still_holds(fence(1, 4), now), "another epoch");
        assert!(!holdings.still_holds(fence(2, 5), now), "given back");
        assert!(
            !holdings.still_holds(fence(1, 5), now + EVERY),
            "hold lapsed"
        );
        // No new intent for it, and its links are no longer scheduled.
        let id = (0..)
            .map(|k| format!("mk_l{k}"))
            .find(|id| holdings.partition(id) == 1)
            .unwrap();
        assert_eq!(holdings.fence(&id, now), None);
        assert!(!holdings.holds(&id));
    }

    #[test]
    fn without_a_lease_ending_sooner_the_heartbeat_keeps_its_period() {
        let started = Instant::now();
        let returned = started + Duration::from_millis(30);
        assert_eq!(
            heartbeat_wake(started, EVERY, returned, None),
            started + EVERY
        );
        let late = Some(Duration::from_secs(12));
        assert_eq!(
            heartbeat_wake(started, EVERY, returned, late),
            started + EVERY
        );
    }
}
