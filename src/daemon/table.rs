//! The daemon's in-memory view of every link: what the policy needs, plus
//! the bookkeeping of requests in flight. Loaded from the store at start and
//! kept in step with it; the store stays the durable truth.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use chrono::{DateTime, Utc};

use crate::config::cadence_from_json;
use crate::domain::{LinkId, LinkState, Product, ProductSet};
use crate::policy::phase::link_hash;
use crate::policy::{LinkSchedule, ProductState};
use crate::store::LinkRecord;

/// One link as the daemon tracks it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The link id.
    pub id: LinkId,
    /// The policy's input.
    pub schedule: LinkSchedule,
    /// Lifecycle state.
    pub state: LinkState,
    /// No longer configured: not scheduled.
    pub removed: bool,
    /// Consecutive failures of the link (drives backoff).
    pub failures: u32,
    /// Consecutive per-product rate limits inside 202s.
    pub product_failures: [u32; Product::ALL.len()],
    /// A request for this link is under way: do not schedule it again.
    pub in_flight: bool,
    /// Timer generation: a wake-up from an older generation is stale.
    pub generation: u64,
    /// No local history: read `GET /links/{id}` before the first POST.
    pub needs_reconcile: bool,
    /// Products suspected by an ambiguous 403: sent one at a time until known.
    pub isolate: ProductSet,
    /// When a link parked as needs_user_action is checked again.
    pub recheck_at: Option<DateTime<Utc>>,
}

impl Entry {
    /// Builds an entry from a stored link.
    pub fn from_record(rec: &LinkRecord) -> Self {
        let cadence = cadence_from_json(rec.cadence.as_deref());
        let products: Vec<ProductState> = rec
            .products
            .iter()
            .map(|p| {
                let stored = rec.schedules.iter().find(|s| s.product == p);
                ProductState {
                    product: p,
                    cadence: cadence.get(&p).cloned().unwrap_or_default(),
                    last_requested_at: stored.and_then(|s| s.last_requested_at),
                    server_seen_at: stored
                        .and_then(|s| s.server_refreshed_at.max(s.server_attempted_at)),
                    backoff_until: stored.and_then(|s| s.backoff_until),
                    parked: stored.is_some_and(|s| s.parked_reason.is_some()),
                    refresh_requested: stored.is_some_and(|s| s.refresh_requested),
                }
            })
            .collect();
        let never_seen = products
            .iter()
            .all(|p| p.last_requested_at.is_none() && p.server_seen_at.is_none());
        let mut entry = Self {
            id: rec.id.clone(),
            schedule: LinkSchedule {
                hash: link_hash(&rec.id),
                first_seen_at: rec.created_at,
                runnable: false,
                backoff_until: rec.backoff_until,
                products,
            },
            state: rec.state,
            removed: rec.removed,
            failures: rec.failures,
            product_failures: [0; Product::ALL.len()],
            in_flight: false,
            generation: 0,
            needs_reconcile: never_seen,
            isolate: ProductSet::EMPTY,
            recheck_at: None,
        };
        entry.refresh_runnable();
        entry
    }

    /// Recomputes whether the policy may schedule the link.
    pub fn refresh_runnable(&mut self) {
        self.schedule.runnable = self.state == LinkState::Active && !self.removed;
    }

    /// The product's policy state, if the link has it.
    pub fn product_mut(&mut self, p: Product) -> Option<&mut ProductState> {
        self.schedule.products.iter_mut().find(|s| s.product == p)
    }

    /// Takes a record from the store (operator change, reload). What the
    /// operator controls (state, products, cadence, refresh requests, parked
    /// products) comes from the store; times take the later of memory and
    /// store, because outcome writes may still be queued; what only the
    /// daemon knows (in flight, timer generation, isolation) is kept.
    pub fn merge_from(&mut self, rec: &LinkRecord) {
        let mut fresh = Entry::from_record(rec);
        for p in fresh.schedule.products.iter_mut() {
            if let Some(old) = self
                .schedule
                .products
                .iter()
                .find(|o| o.product == p.product)
            {
                p.last_requested_at = p.last_requested_at.max(old.last_requested_at);
                p.server_seen_at = p.server_seen_at.max(old.server_seen_at);
                p.backoff_until = p.backoff_until.max(old.backoff_until);
            }
        }
        fresh.schedule.backoff_until = fresh
            .schedule
            .backoff_until
            .max(self.schedule.backoff_until);
        fresh.failures = fresh.failures.max(self.failures);
        fresh.needs_reconcile = fresh.needs_reconcile && self.needs_reconcile;
        fresh.in_flight = self.in_flight;
        fresh.generation = self.generation;
        fresh.isolate = self.isolate;
        fresh.product_failures = self.product_failures;
        if fresh.state == self.state {
            fresh.recheck_at = self.recheck_at;
        }
        *self = fresh;
    }
}

/// Every link the daemon knows, addressable by index (timer) and by id.
///
/// The id index holds entry numbers hashed by the entry's own id, not a
/// second copy of every id: for a million links a `HashMap<LinkId, usize>`
/// was about a hundred megabytes of the daemon's memory budget.
#[derive(Debug, Default)]
pub struct LinkTable {
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl LinkTable {
    /// Adds a link or merges a newer record of it; returns its index.
    pub fn merge(&mut self, rec: &LinkRecord) -> usize {
        if let Some(i) = self.find(&rec.id) {
            self.entries[i].merge_from(rec);
            return i;
        }
        let i = self.entries.len();
        let slot = u32::try_from(i).expect("fewer than 2^32 links");
        self.entries.push(Entry::from_record(rec));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hasher.hash_one(rec.id.as_str()), slot, |&j| {
                hasher.hash_one(entries[j as usize].id.as_str())
            });
        i
    }

    /// The index of a link.
    pub fn find(&self, id: &LinkId) -> Option<usize> {
        let hash = self.hasher.hash_one(id.as_str());
        self.index
            .find(hash, |&j| self.entries[j as usize].id == *id)
            .map(|&j| j as usize)
    }

    /// A link by index.
    pub fn get(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// A link by index, mutably.
    pub fn get_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.entries[i]
    }

    /// Every link.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Every link, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.entries.iter_mut()
    }

    /// Number of links (removed ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no link at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
