//! Partitioned ownership among replicas sharing a PostgreSQL database: what
//! the daemon asks of the store (join the fleet, heartbeat and rebalance,
//! leave, load the links of some partitions) and what the operator's view
//! reads. The design and its failure analysis are in "Several replicas" in
//! the [store docs](super); the assignment itself is the pure
//! [`crate::policy::partitions`]. SQLite serves one daemon that owns
//! everything, so only the PostgreSQL store has an [`Ownership`].

use std::time::Duration;

use async_trait::async_trait;

use super::{LinkRecord, StoreError};

/// The fencing token an intent carries: the partition of its link and the
/// epoch at which this replica acquired it. The intent is refused unless
/// the replica still holds the partition at that epoch under an unexpired
/// lease, checked in the intent's own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The link's partition.
    pub part: u32,
    /// The epoch this replica holds it at.
    pub epoch: i64,
}

/// What one heartbeat left this replica holding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tick {
    /// The partition count of the database.
    pub partitions: u32,
    /// Each partition held and kept after the tick, ascending, with its epoch.
    pub held: Vec<(u32, i64)>,
    /// Partitions still held that the target gives to another replica:
    /// this replica stops scheduling them and drops them from its share of
    /// the limits now, and gives them back at a later tick (passed as
    /// `ready` once the share has shrunk), so that the next holder counts
    /// them at once and the two never add up to more than the limits.
    pub leaving: Vec<u32>,
    /// How many of `held` count toward this replica's share of the fleet's
    /// limits: never held, given back by a holder that had shrunk its share
    /// first, or taken over from a lapsed holder at least `settle` after its
    /// lease ended (its last requests may be in flight till then; see
    /// `daemon::share`).
    pub settled: u32,
    /// Live replicas, this one included.
    pub live: u32,
    /// Whether this tick acquired or released any partition.
    pub rebalanced: bool,
}

/// The target assignment: the holder each partition should have, given the
/// live replicas and the current holders. The daemon passes
/// `policy::partitions::assign`; the store only applies it (it depends on
/// the domain, never on the policy).
pub type Assign = fn(&[String], &[Option<String>]) -> Vec<Option<String>>;

/// One replica as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaView {
    /// Its name (host, pid, random suffix).
    pub id: String,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Milliseconds until its lease expires (negative: expired, presumed dead).
    pub lease_left_ms: i64,
    /// Milliseconds since it first joined.
    pub age_ms: i64,
    /// The partitions it holds, ascending.
    pub partitions: Vec<u32>,
    /// Ticks in which it acquired or released partitions.
    pub rebalances: i64,
}

/// The whole fleet as the operator sees it: `status`, the fleet page and API.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FleetView {
    /// The partition count of the database (0: no replica joined yet).
    pub partitions: u32,
    /// Every replica with a row: live ones, and dead ones until cleaned up.
    pub replicas: Vec<ReplicaView>,
    /// Partitions nobody holds under an unexpired lease.
    pub unheld: Vec<u32>,
}

/// Partitions as operators read them (`status`, the replicas page):
/// `0-5, 9, 12-13`.
pub fn ranges(parts: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let mut j = i;
        while j + 1 < parts.len() && parts[j + 1] == parts[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            parts[i].to_string()
        } else {
            format!("{}-{}", parts[i], parts[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(", ")
    }
}

/// Partitioned ownership, as the PostgreSQL store implements it.
#[async_trait]
pub trait Ownership: Send + Sync {
    /// Fixes the database's partition count on first use, or checks that
    /// `partitions` is the stored one ([`StoreError::PartitionsMismatch`]).
    async fn join(&self, partitions: u32) -> Result<(), StoreError>;

    /// One heartbeat, in one short transaction: renews this replica's
    /// lease and those of the partitions it keeps, releases what the
    /// target assignment (`assign`) gives to others among `ready` (the rest it keeps
    /// for now: [`Tick::leaving`]), acquires (bumping the epoch) what the
    /// target gives to this replica and nobody holds under an unexpired
    /// lease. Every lease is in the database's clock. `settle`: how long
    /// after a lapsed holder's lease a partition taken from it counts as
    /// settled.
    async fn tick(
        &self,
        replica: &str,
        lease: Duration,
        settle: Duration,
        ready: &[u32],
        assign: Assign,
    ) -> Result<Tick, StoreError>;

    /// Leaves the fleet at shutdown: releases every partition at once so
    /// that the others take them on their next tick, not after a lease.
    async fn leave(&self, replica: &str) -> Result<(), StoreError>;

    /// One page of the non-removed links of `parts` (partitions of the
    /// database's count) whose id sorts after `after`, like
    /// [`Store::load_links_page`](super::Store::load_links_page).
    async fn load_partitions_page(
        &self,
        parts: &[u32],
        after: &str,
    ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError>;

    /// Replicas, their partitions and lease ages, for operators.
    async fn view(&self) -> Result<FleetView, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn partitions_read_as_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        assert_eq!(ranges(&[]), "-");
    }
}
