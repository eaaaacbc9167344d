//! The daemon's timer: a min-heap of (wake time, link) with lazy deletion.
//!
//! Rescheduling a link bumps its generation and pushes a new entry; the old
//! one is skipped when popped. O(log n) per operation, one small tuple per
//! pending wake-up, which is what a fleet of a million links needs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

use super::table::LinkTable;

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

    /// Number of heap entries, live or stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no wake-up is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
