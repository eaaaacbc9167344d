//! The daemon's timer: a min-heap of (wake time, link) with lazy deletion.
//!
//! Rescheduling a link bumps its generation and pushes a new entry; the old
//! one is skipped when popped. O(log n) per operation, one small tuple per
//! pending wake-up, which is what a fleet of a million links needs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

use super::table::LinkTable;

/// The heap drops its stale entries once it holds more than two entries a
/// link plus this many: a link rescheduled earlier leaves its later entry
/// behind until that time comes, and for a million links each entry a link
/// is 20 megabytes. Compacting is O(n) and comes at most once every n
/// pushes.
const COMPACT_SLACK: usize = 1024;

/// Pending wake-ups.
#[derive(Debug, Default)]
pub struct Timer {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, u32, u32)>>,
}

impl Timer {
    /// Schedules link `i` at `at`, replacing any earlier schedule of it.
    pub fn schedule(&mut self, table: &mut LinkTable, i: usize, at: DateTime<Utc>) {
        let entry = table.get_mut(i);
        entry.generation = entry.generation.wrapping_add(1);
        let slot = u32::try_from(i).expect("fewer than 2^32 links");
        self.heap.push(Reverse((at, entry.generation, slot)));
        if self.heap.len() > 2 * table.len() + COMPACT_SLACK {
            self.heap.retain(|Reverse((_, generation, i))| {
                table.get(*i as usize).generation == *generation
            });
        }
    }

    /// Forgets any schedule of link `i`.
    pub fn cancel(&mut self, table: &mut LinkTable, i: usize) {
        let entry = table.get_mut(i);
        entry.generation = entry.generation.wrapping_add(1);
    }

    /// The earliest live wake time, dropping stale entries on the way.
    pub fn next_at(&mut self, table: &LinkTable) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, generation, i))) = self.heap.peek().copied() {
            if table.get(i as usize).generation == generation {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one link whose wake time is at or before `now`.
    pub fn pop_due(&mut self, table: &LinkTable, now: DateTime<Utc>) -> Option<usize> {
        while let Some(Reverse((at, generation, i))) = self.heap.peek().copied() {
            if table.get(i as usize).generation != generation {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            return Some(i as usize);
        }
        None
    }

    /// Number of heap entries, live or stale (the tests' bound on stale ones).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::daemon::table::{LinkTable, fresh_record};

    fn table(n: usize) -> LinkTable {
        let mut table = LinkTable::default();
        for i in 0..n {
            table.merge(&fresh_record(&format!("mk_{i}"), "accounts"));
        }
        table
    }

    #[test]
    fn rescheduling_earlier_and_earlier_keeps_the_heap_bounded_and_the_latest_wins() {
        let mut links = table(10);
        let mut timer = Timer::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        for k in 0..10_000 {
            timer.schedule(
                &mut links,
                k % 10,
                t0 + TimeDelta::seconds(100_000 - k as i64),
            );
        }
        assert!(
            timer.len() <= 2 * links.len() + COMPACT_SLACK + 1,
            "{} entries for 10 links",
            timer.len()
        );
        let mut fired = Vec::new();
        while let Some(i) = timer.pop_due(&links, t0 + TimeDelta::seconds(1_000_000)) {
            fired.push(i);
        }
        fired.sort_unstable();
        assert_eq!(fired, (0..10).collect::<Vec<_>>(), "each link fires once");
    }

    /// Issue 16: a released slot goes to the next link merged while the
    /// heap may still hold the old link's wake-ups; those must not fire
    /// for the new link (it would be evaluated before its time, or twice).
    #[test]
    fn a_stale_wake_up_for_a_reused_slot_does_not_fire_for_its_new_link() {
        let mut links = LinkTable::default();
        let mut timer = Timer::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let old = links.merge(&fresh_record("mk_old", "accounts"));
        timer.schedule(&mut links, old, t0 + TimeDelta::seconds(5));
        timer.schedule(&mut links, old, t0 + TimeDelta::seconds(1));
        links.get_mut(old).removed = true;
        links.release(old);
        let new = links.merge(&fresh_record("mk_new", "accounts"));
        assert_eq!(new, old, "the slot is reused");
        // The old link's wake-ups (at 1 s and 5 s) are still in the heap
        // when the new link is scheduled, at 10 s: only that one fires.
        timer.schedule(&mut links, new, t0 + TimeDelta::seconds(10));
        assert_eq!(
            timer.pop_due(&links, t0 + TimeDelta::seconds(9)),
            None,
            "a stale wake-up fired for the new link"
        );
        let late = t0 + TimeDelta::seconds(60);
        assert_eq!(timer.pop_due(&links, late), Some(new));
        assert_eq!(timer.pop_due(&links, late), None);
    }
}
