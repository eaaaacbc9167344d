//! Partitioned ownership among replicas sharing a PostgreSQL database: what
//! the daemon asks of the store (join the fleet, heartbeat and rebalance,
//! leave, load the links of some partitions) and what the operator's view
//! reads. The design and its failure analysis follow; the assignment itself is the pure
//! [`crate::policy::partitions`]. SQLite serves one daemon that owns
//! everything, so only the PostgreSQL store has an [`Ownership`].
//!
//! # Several replicas
//!
//! Replicas sharing one PostgreSQL database split the links between them by
//! *partition*, the way consumer groups do, on PostgreSQL itself
//! (this module; the pure rules in [`crate::policy::partitions`]):
//!
//! - A link's partition is a stable hash of its id modulo a fixed count
//!   (`[database] partitions`, 64 by default). The first replica stores the
//!   count (`fleet_settings`); one configured otherwise refuses to start,
//!   naming both. `links.part_hash` is computed by PostgreSQL from the same
//!   hash, so a replica reads only its partitions' links.
//! - Every replica heartbeats once per a third of `[database] lease`, in one
//!   short transaction serialized by an advisory lock: it renews its row in
//!   `replicas` (`lease_until` in the *database's* clock, `now()`), computes
//!   the target assignment from the live replicas and current holders
//!   (balanced, sticky, deterministic), renews the partitions it keeps,
//!   releases those the target gives to others, and acquires those the
//!   target gives it that nobody holds under an unexpired lease. Every
//!   acquisition bumps the partition's `epoch`: the fencing token. A clean
//!   shutdown releases everything at once.
//! - A replica that finds no partition held at start (a fleet starting
//!   cold) [announces](Ownership::announce) itself and waits `[database]
//!   initial_settle` before its first tick, so that replicas started
//!   together are all live when the first of them assigns, and none loads
//!   the whole fleet (the decision and its failure analysis are in
//!   `daemon::membership`).
//! - A replica loads, evaluates and schedules only the links of the
//!   partitions it holds, and each intent carries its partition and epoch
//!   ([`Fence`]). The intent transaction reads those partitions
//!   (in ascending order, `FOR SHARE`) and writes the intent only if the
//!   replica still holds the partition at that epoch and its lease has not
//!   expired by the database's clock (`clock_timestamp()`). A heartbeat
//!   that takes a partition locks it in the same order, so it waits for an
//!   intent transaction in progress, and the new holder's load sees it.
//!
//! Inside that, the per-link claim stays as the last line of defence:
//!
//! - The link row is locked with `FOR UPDATE SKIP LOCKED`, and its schedule
//!   rows too: a row another replica is writing right now is skipped, and the
//!   claim refused. A claim transaction never waits on a row lock, so claims
//!   from several replicas cannot deadlock.
//! - Each product's stored `last_requested_at` must be `NULL` or at most what
//!   the replica believed ([`Claim::known`](super::Claim::known), rounded up to the stored
//!   millisecond): nobody has requested it since the state the decision was
//!   based on. This check alone makes double sends impossible, whatever the
//!   leases or clocks do: every intent moves the time, so of two replicas
//!   that decided from the same state only the first to commit passes.
//! - No other replica may hold an unexpired lease (`lease_owner`,
//!   `lease_until`, set by the claim and cleared by the outcome): a link
//!   whose request is still in the air elsewhere (its outcome may yet park it
//!   or restore times after a 429) is left alone. A dead replica's leases
//!   expire after `[database] lease`; its intents already count as sent.
//!
//! A refused claim returns `None`; the daemon reloads that link and decides
//! again. Every claim and released lease stamps `links.intent_seq`
//! ([`Store::claims_since`](super::Store::claims_since) reads what changed
//! since a mark). Partitioned replicas do not poll it: a link has one
//! holder, and a handover's first moments are covered by a refused claim
//! and its reload. So the stamp has no index on PostgreSQL (an indexed
//! column that changes made every lease update write into every index of
//! `links`), and the read is a scan, for tools and tests. On PostgreSQL
//! the stamp comes from a sequence, which costs no lock but may commit out
//! of order; a reader therefore re-reads a small overlap below its
//! high-water mark.
//!
//! ## Failure analysis
//!
//! - **Death (kill -9, host lost)**: its partitions' leases run out after
//!   `lease`; the others' heartbeats wake as it ends (each tick tells when
//!   the next lease of another replica ends, [`Tick::next_lapse`]) and
//!   reassign them, the new holders load their links and find the
//!   dead one's intents (which count as sent), so each link is requested
//!   again within lease + one window, never early.
//! - **Pause (SIGSTOP, a long GC-like stall, a VM migration) past the
//!   lease**: the database's clock decides, so the partitions go to the
//!   others while the paused replica cannot object. On waking it can no
//!   longer commit an intent for them (the lease check, and the epoch once
//!   someone took them). A POST whose intent it committed *before* the
//!   pause could still leave late: the dispatcher therefore checks, just
//!   before sending, that the replica's hold is still valid by its own
//!   monotonic clock (valid until the heartbeat's start + lease, which ends
//!   no later than the database's lease) and drops the send otherwise (its
//!   intent already counts it as sent, so at worst a refresh is skipped).
//!   Only a pause between that check and the bytes leaving the socket
//!   remains, microseconds wide. A replica paused *inside* a transaction
//!   would hold its partitions' rows (and stall the others' heartbeats
//!   waiting on them): the server ends any of our sessions idle in a
//!   transaction for 5 s (`postgres::IDLE_IN_TRANSACTION`), heartbeats take
//!   others' partitions with `SKIP LOCKED` and stop waiting for a lock after
//!   a third of a lease, so the others go on and take its partitions a few
//!   seconds later; its transaction fails, and its POSTs are not sent.
//! - **Clock skew**: leases never use a replica's wall clock: the database
//!   stamps and judges them, and each replica measures its own hold with a
//!   monotonic clock from *before* the heartbeat, so it always stops
//!   before the database would let another start. Send times and window
//!   ends are still each replica's wall clock (they are compared with
//!   MoneyKit's), so skew between replicas must stay below
//!   `[limits] margin` (30 s by default) for the link-level guard; with
//!   partitions two replicas no longer decide for one link at once except
//!   across a handover.
//! - **Split brain** (a replica cut off from the database but not from
//!   MoneyKit): it cannot renew, so its hold lapses by its own monotonic
//!   clock at the same moment the database lets others take over; it cannot
//!   commit intents either, and without a committed intent nothing is sent.
//! - **Database failover**: a promoted standby that lost the last
//!   transactions may have lost heartbeats (replicas re-acquire, at a new
//!   epoch) and intents (the POSTs they guarded were sent: as with a power
//!   loss on SQLite, a handful of refreshes may be requested once more,
//!   which MoneyKit may count inside a window). Synchronous replication
//!   (`synchronous_commit = on` with a synchronous standby) closes this.
//!   While no database answers, nobody commits, so nobody sends.
//!
//! SQLite serves one daemon, held by the [`owner`](super::owner) lock on the file, so the
//! daemon sends its intents there without a claim; the store still honours
//! a claim on SQLite (tools and tests use it), where it only refuses in the
//! rare race of a claim decided on a state that a write just changed.
//!

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
    /// With its epoch: a POST already committed for it may still leave
    /// until it is given back (see `daemon::membership::Holdings`).
    pub leaving: Vec<(u32, i64)>,
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
    /// How long after this tick's reading of the database's clock the
    /// earliest lease of another replica ends (its row or a partition it
    /// holds): the heartbeat looks again just past it, so a dead replica's
    /// partitions are taken as its lease ends, not a heartbeat period later.
    /// From the tick itself, not a later read: by then the lease may have
    /// ended and the partitions no longer show as that replica's.
    pub next_lapse: Option<Duration>,
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

    /// Announces this replica (renews its row under a lease, as a tick
    /// does) without taking any partition, and says whether the fleet is
    /// starting cold: no partition held under an unexpired lease. A cold
    /// replica waits `[database] initial_settle` before its first tick, so
    /// that the replicas started with it are live when it assigns.
    async fn announce(&self, replica: &str, lease: Duration) -> Result<bool, StoreError>;

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
