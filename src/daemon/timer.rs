//! The daemon's timer: a min-heap of (wake time, link) with lazy deletion.
//!
//! Rescheduling a link bumps its generation and pushes a new entry; the old
//! one is skipped when popped. O(log n) per operation, one small tuple per
//! pending wake-up, which is what a fleet of a million links needs.
//!
//! On-demand refreshes (the app's `refresh`, issue 17: "it goes ahead of
//! scheduled work") wait in a second heap that is always popped first: when
//! a burst of scheduled work is due (the links an app's activity calls just
//! made active) and the dispatcher has no room, a refresh asked for now
//! would otherwise queue behind every link due earlier than now.

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
    heap: BinaryHeap<Reverse<Wake>>,
    /// On-demand links, popped before any link of `heap` due by then.
    urgent: BinaryHeap<Reverse<Wake>>,
}

/// (wake time, the link's generation when scheduled, the link's slot).
type Wake = (DateTime<Utc>, u32, u32);

impl Timer {
    /// Schedules link `i` at `at`, replacing any earlier schedule of it.
    pub fn schedule(&mut self, table: &mut LinkTable, i: usize, at: DateTime<Utc>) {
        push(&mut self.heap, table, i, at);
    }

    /// Schedules link `i` at `at` ahead of every other link due by then:
    /// for a link with a product asked for on demand.
    pub fn schedule_urgent(&mut self, table: &mut LinkTable, i: usize, at: DateTime<Utc>) {
        push(&mut self.urgent, table, i, at);
    }

    /// Forgets any schedule of link `i`.
    pub fn cancel(&mut self, table: &mut LinkTable, i: usize) {
        let entry = table.get_mut(i);
        entry.generation = entry.generation.wrapping_add(1);
    }

    /// The earliest live wake time, dropping stale entries on the way.
    pub fn next_at(&mut self, table: &LinkTable) -> Option<DateTime<Utc>> {
        let urgent = live_top(&mut self.urgent, table);
        let other = live_top(&mut self.heap, table);
        urgent.into_iter().chain(other).min()
    }

    /// Pops one link whose wake time is at or before `now`: an on-demand
    /// one first.
    pub fn pop_due(&mut self, table: &LinkTable, now: DateTime<Utc>) -> Option<usize> {
        pop_due_from(&mut self.urgent, table, now)
            .or_else(|| pop_due_from(&mut self.heap, table, now))
    }

    /// Number of heap entries, live or stale (the tests' bound on stale ones).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len() + self.urgent.len()
    }
}

/// Pushes link `i` at `at` onto `heap` under a new generation (which makes
/// its entries in either heap stale), compacting when stale entries pile up.
fn push(heap: &mut BinaryHeap<Reverse<Wake>>, table: &mut LinkTable, i: usize, at: DateTime<Utc>) {
    let entry = table.get_mut(i);
    entry.generation = entry.generation.wrapping_add(1);
    let slot = u32::try_from(i).expect("fewer than 2^32 links");
    heap.push(Reverse((at, entry.generation, slot)));
    if heap.len() > 2 * table.len() + COMPACT_SLACK {
        heap.retain(|Reverse((_, generation, i))| table.get(*i as usize).generation == *generation);
    }
}

/// The earliest live wake time of `heap`, dropping stale entries on the way.
fn live_top(heap: &mut BinaryHeap<Reverse<Wake>>, table: &LinkTable) -> Option<DateTime<Utc>> {
    while let Some(Reverse((at, generation, i))) = heap.peek().copied() {
        if table.get(i as usize).generation == generation {
            return Some(at);
        }
        heap.pop();
    }
    None
}

/// Pops one live link of `heap` due at or before `now`.
fn pop_due_from(
    heap: &mut BinaryHeap<Reverse<Wake>>,
    table: &LinkTable,
    now: DateTime<Utc>,
) -> Option<usize> {
    let at = live_top(heap, table)?;
    if at > now {
        return None;
    }
    heap.pop().map(|Reverse((_, _, i))| i as usize)
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

    /// Issue 17: a refresh asked for on demand goes ahead of the scheduled
    /// work already due, and a link moved between the lanes fires once.
    #[test]
    fn an_on_demand_link_pops_before_links_due_earlier_and_each_link_fires_once() {
        let mut links = table(4);
        let mut timer = Timer::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..3 {
            timer.schedule(&mut links, i, t0 + TimeDelta::seconds(i as i64));
        }
        timer.schedule_urgent(&mut links, 3, t0 + TimeDelta::seconds(10));
        // Link 1 asked for on demand too: its scheduled wake-up goes stale.
        timer.schedule_urgent(&mut links, 1, t0 + TimeDelta::seconds(20));
        assert_eq!(
            timer.next_at(&links),
            Some(t0),
            "the earliest of both lanes"
        );
        let now = t0 + TimeDelta::seconds(30);
        let mut fired = Vec::new();
        while let Some(i) = timer.pop_due(&links, now) {
            fired.push(i);
        }
        assert_eq!(fired, [3, 1, 0, 2]);
        // Not yet due: an urgent link waits for its time like any other.
        timer.schedule_urgent(&mut links, 0, now + TimeDelta::seconds(5));
        timer.schedule(&mut links, 2, now);
        assert_eq!(timer.pop_due(&links, now), Some(2));
        assert_eq!(timer.pop_due(&links, now), None);
    }
}
