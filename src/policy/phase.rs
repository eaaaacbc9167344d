//! Stable hashing of link ids, for phases and jitter.
//!
//! Hand-written FNV-1a plus a finaliser, not `std`'s `DefaultHasher`: its
//! algorithm may change between Rust releases, and a link's phase must stay
//! the same across upgrades and across replicas so the fleet stays spread.

use chrono::TimeDelta;

use crate::domain::LinkId;

/// A well-mixed 64-bit hash of a link id, the same on every machine.
pub fn link_hash(id: &LinkId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// The splitmix64 finaliser: spreads nearby inputs over all 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The offset in `[0, spread)` at which a link with no history is first
/// refreshed, so that a fleet added at once does not fire in one second.
pub fn first_phase(hash: u64, spread: TimeDelta) -> TimeDelta {
    let spread_ms = spread.num_milliseconds();
    if spread_ms <= 0 {
        return TimeDelta::zero();
    }
    TimeDelta::milliseconds((hash % spread_ms as u64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    const PINNED: u64 = 6_488_511_298_746_634_903;

    #[test]
    fn phases_of_a_fleet_cover_the_spread_evenly() {
        let spread = TimeDelta::seconds(60);
        let mut per_second = [0u32; 60];
        for i in 0..60_000 {
            let id = LinkId::parse(&format!("mk_{i}")).unwrap();
            let phase = first_phase(link_hash(&id), spread);
            per_second[phase.num_seconds() as usize] += 1;
        }
        // 1,000 expected per second; no second may hold more than 1.2x that.
        assert!(
            per_second.iter().all(|&n| (800..1200).contains(&n)),
            "{per_second:?}"
        );
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        // Pinned: a change here moves every link's phase in every deployment.
        let id = LinkId::parse("mk_eqkWN34UEoa2NxyALG8pcV").unwrap();
        assert_eq!(link_hash(&id), PINNED);
    }
}
