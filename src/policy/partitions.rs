//! Partitioned ownership of the link space among replicas sharing one
//! PostgreSQL database (see "Several replicas" in [`crate::store::ownership`]): which
//! partition a link belongs to, which replica should hold each partition,
//! and each replica's share of the fleet-wide limits. Pure: the store and
//! the daemon call these with what the database returned.
//!
//! # The hash (never change it)
//!
//! A link's partition is `u32::from_be_bytes(SHA-256(id as UTF-8)[0..4]) %
//! partitions`. It is stored in the database (`links.part_hash`, computed
//! by PostgreSQL as `sha256(id::bytea)`'s first four bytes) and relied on
//! by every replica of every version at once: a replica that hashed
//! differently would schedule links another one owns. SHA-256 because it is
//! defined everywhere (PostgreSQL has it built in, so the database filters
//! a partition's links itself) and already in the tree; the test
//! `the_hash_of_some_ids_never_changes` pins it.
//!
//! # The assignment
//!
//! [`assign`] computes the target holder of every partition from the live
//! replicas and the current holders: balanced (the counts of any two live
//! replicas differ by at most one), sticky (a partition moves only if its
//! holder is gone or holds more than its quota) and deterministic (every
//! replica computes the same target from the same facts).

use sha2::{Digest, Sha256};

/// `[database] partitions` when not set: enough for dozens of replicas to
/// get even shares, few enough that a rebalance touches a handful of rows.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// The most partitions a database may be split into (and the ids fit `u16`).
pub const MAX_PARTITIONS: u32 = 4096;

/// The stable 32-bit hash of a link id (see the module docs).
pub fn link_hash(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The partition of a link id among `partitions` (at least 1).
pub fn partition_of(id: &str, partitions: u32) -> u32 {
    link_hash(id) % partitions.max(1)
}

/// The target holder of every partition (index = partition), given the
/// live replicas (any order; duplicates ignored) and the current holders
/// (`None`: free; a holder that is not live counts as free).
///
/// Quotas: `P / n` each, and the `P % n` replicas holding the most now
/// (ties: smaller id) get one more, so that as few partitions as possible
/// move. Each replica keeps its lowest-numbered partitions up to its
/// quota; the rest, with the free ones, go in ascending order to the
/// replicas below quota, in id order.
pub fn assign(live: &[String], holders: &[Option<String>]) -> Vec<Option<String>> {
    let mut live: Vec<&str> = live.iter().map(String::as_str).collect();
    live.sort_unstable();
    live.dedup();
    let total = holders.len();
    if live.is_empty() {
        return vec![None; total];
    }
    let index = |id: &str| live.binary_search(&id).ok();
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); live.len()];
    for (part, holder) in holders.iter().enumerate() {
        if let Some(r) = holder.as_deref().and_then(index) {
            held[r].push(part);
        }
    }
    let (base, extra) = (total / live.len(), total % live.len());
    let mut order: Vec<usize> = (0..live.len()).collect();
    order.sort_by(|&a, &b| held[b].len().cmp(&held[a].len()).then(a.cmp(&b)));
    let mut quota = vec![base; live.len()];
    for &r in order.iter().take(extra) {
        quota[r] += 1;
    }
    let mut target: Vec<Option<usize>> = vec![None; total];
    for (r, parts) in held.iter().enumerate() {
        for &part in parts.iter().take(quota[r]) {
            target[part] = Some(r);
        }
    }
    let mut counts: Vec<usize> = held
        .iter()
        .zip(&quota)
        .map(|(h, q)| h.len().min(*q))
        .collect();
    let mut next = 0;
    for slot in target.iter_mut().filter(|t| t.is_none()) {
        while counts[next] >= quota[next] {
            next += 1;
        }
        *slot = Some(next);
        counts[next] += 1;
    }
    target
        .into_iter()
        .map(|r| r.map(|r| live[r].to_owned()))
        .collect()
}

/// A replica's share of a fleet-wide limit `max` when it holds `held` of
/// `partitions`: `max × held / partitions`, rounded down so that the
/// shares of replicas holding disjoint partitions never add up to more than
/// `max`. A replica holding partitions whose share rounds to zero still
/// gets one (it could not refresh them otherwise), which can exceed `max`
/// only where `max` is below the number of replicas.
pub fn share(max: u32, held: u32, partitions: u32) -> u32 {
    if held == 0 {
        return 0;
    }
    let exact = u64::from(max) * u64::from(held.min(partitions)) / u64::from(partitions.max(1));
    u32::try_from(exact).unwrap_or(max).max(1)
}

/// A replica's share of a fleet-wide rate in requests per second, as a
/// real number: unlike [`share`] it needs no rounding, so the shares of
/// any split add up to at most `max`.
pub fn rate_share(max: u32, held: u32, partitions: u32) -> f64 {
    f64::from(max) * f64::from(held.min(partitions)) / f64::from(partitions.max(1))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_hash_of_some_ids_never_changes() {
        // Pinned: every replica of every version must agree (module docs).
        assert_eq!(link_hash("mk_a"), 2_153_721_307);
        assert_eq!(partition_of("mk_a", 64), 2_153_721_307 % 64);
        let pinned: Vec<u32> = ["mk_rep_000", "mk_rep_001", "link-42", "mk_é"]
            .iter()
            .map(|id| partition_of(id, 64))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    // Also what PostgreSQL computes for `links.part_hash % 64` (checked there
    // by `tests/store`'s partition test).
    const PINNED: [u32; 4] = [50, 8, 23, 48];

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    #[test]
    fn a_fourth_replica_takes_a_quarter_and_nobody_else_moves_more_than_needed() {
        let three = assign(&names(3), &vec![None; 64]);
        let four = assign(&names(4), &three);
        let of =
            |t: &[Option<String>], r: &str| t.iter().filter(|h| h.as_deref() == Some(r)).count();
        assert_eq!(of(&four, "r3"), 16);
        let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
        assert_eq!(moved, 16);
    }

    #[test]
    fn no_live_replica_means_no_holder() {
        assert_eq!(assign(&[], &[Some("r0".into()), None]), vec![None, None]);
    }

    fn holders(partitions: usize) -> impl Strategy<Value = Vec<Option<String>>> {
        proptest::collection::vec(proptest::option::of(0..8usize), partitions)
            .prop_map(|v| v.into_iter().map(|h| h.map(|i| format!("r{i}"))).collect())
    }

    proptest! {
        #[test]
        fn the_target_is_balanced_and_every_partition_has_one_live_holder(
            (live, now) in (1..8usize).prop_flat_map(|n| (Just(n), 1..200usize))
                .prop_flat_map(|(n, p)| (Just(names(n)), holders(p)))
        ) {
            let target = assign(&live, &now);
            prop_assert_eq!(target.len(), now.len());
            let mut counts: Vec<usize> = live.iter()
                .map(|r| target.iter().filter(|h| h.as_deref() == Some(r.as_str())).count())
                .collect();
            prop_assert!(target.iter().all(|h| h.as_ref().is_some_and(|h| live.contains(h))));
            counts.sort_unstable();
            prop_assert!(counts[counts.len() - 1] - counts[0] <= 1, "{:?}", counts);
        }

        #[test]
        fn only_partitions_over_quota_or_without_a_live_holder_move(
            (live, now) in (1..8usize).prop_flat_map(|n| (Just(n), 1..200usize))
                .prop_flat_map(|(n, p)| (Just(names(n)), holders(p)))
        ) {
            let target = assign(&live, &now);
            let (base, extra) = (now.len() / live.len(), now.len() % live.len());
            let alive = |h: &Option<String>| h.as_ref().is_some_and(|h| live.contains(h));
            // Moves are the minimum: every orphan, plus each replica's
            // holdings beyond the largest quota it could get.
            let mut held: Vec<usize> = live.iter()
                .map(|r| now.iter().filter(|h| h.as_deref() == Some(r.as_str())).count())
                .collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            let excess: usize = held.iter().enumerate()
                .map(|(i, h)| h.saturating_sub(base + usize::from(i < extra)))
                .sum();
            let orphans = now.iter().filter(|h| !alive(h)).count();
            let moved = now.iter().zip(&target).filter(|(a, b)| a != b).count();
            prop_assert_eq!(moved, orphans + excess);
            // And the target is a fixed point: computing it again moves nothing.
            prop_assert_eq!(assign(&live, &target), target.clone());
        }

        #[test]
        fn shares_of_disjoint_holdings_never_exceed_the_fleet_limit(
            max in 1..10_000u32,
            split in proptest::collection::vec(0..64u32, 1..8),
        ) {
            let partitions = 64u32;
            let mut left = partitions;
            let held: Vec<u32> = split.iter().map(|h| { let h = (*h).min(left); left -= h; h }).collect();
            let replicas = held.iter().filter(|h| **h > 0).count() as u32;
            let sum: u32 = held.iter().map(|h| share(max, *h, partitions)).sum();
            prop_assert!(sum <= max.max(replicas), "{} > {}", sum, max);
            let rate: f64 = held.iter().map(|h| rate_share(max, *h, partitions)).sum();
            prop_assert!(rate <= f64::from(max) + 1e-9);
        }
    }
}
