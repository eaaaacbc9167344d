//! The daemon's in-memory view of every link: what the policy needs, plus
//! the bookkeeping of requests in flight. Loaded from the store at start and
//! kept in step with it; the store stays the durable truth.
//!
//! Stored compactly, because a million links must fit in the daemon's memory
//! budget: a link's cadences are shared with every link configured alike
//! ([`CadenceBook`]), its products sit in one boxed slice of [`ProductSlot`]s
//! without a cadence each, and the policy's [`LinkSchedule`] is built from
//! them only when the link is evaluated ([`Entry::schedule`]).
//!
//! With partitioned ownership (PostgreSQL) the links a replica holds come
//! and go. A link dropped with its partition, once nothing refers to its
//! index any more, is [released](LinkTable::release): its entry becomes a
//! vacant slot (no id, no products) on a free list, and the next link
//! merged takes that slot. The table therefore grows with the most links
//! held at once, not with every link ever held. Indexes are held by the
//! timer (lazily deleted entries, told apart by the entry's generation,
//! which a vacant slot and its next link carry on), the dispatcher's jobs
//! (only while the link is in flight: never released then), the budget
//! gate (withdrawn before release) and the loop's short-lived lists.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use chrono::{DateTime, Utc};

use crate::domain::{LinkId, LinkState, Product, ProductSet};
use crate::policy::cadences::{CadenceBook, LinkRules};
use crate::policy::demand::{activity_from_secs, activity_secs};
use crate::policy::phase::link_hash;
use crate::policy::{LinkSchedule, ProductState, Profile, Profiles};
use crate::store::LinkRecord;

use super::chunked::Chunked;
pub use super::slot::ProductSlot;

/// One link as the daemon tracks it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The link id.
    pub id: LinkId,
    /// `phase::link_hash` of the id: spreads first requests and jitter.
    pub hash: u64,
    /// Its products, one slot each, in the stored order.
    pub products: Box<[ProductSlot]>,
    /// Its profile (by name, tags or `[defaults]`; name and `priority` for
    /// the budget) and the cadence of each product, shared with links
    /// configured alike.
    pub rules: Arc<LinkRules>,
    /// The owning app's last activity call, in whole unix seconds (0 for
    /// none; [`activity_secs`]): 4 bytes where an `i64` of milliseconds
    /// would have grown every link by 8, and activity is about minutes.
    last_activity_s: u32,
    /// When linkfresh first saw the link; first requests are phased from here.
    pub first_seen_at: DateTime<Utc>,
    /// No request for this link before this (429, 5xx, timeouts).
    pub backoff_until: Option<DateTime<Utc>>,
    /// When a link parked as needs_user_action is checked again.
    pub recheck_at: Option<DateTime<Utc>>,
    /// Consecutive failures of the link (drives backoff).
    pub failures: u32,
    /// Timer generation: a wake-up from an older generation is stale.
    pub generation: u32,
    /// Consecutive per-product rate limits inside 202s (saturating: the
    /// backoff reaches its maximum long before).
    pub product_failures: [u8; Product::ALL.len()],
    /// Lifecycle state.
    pub state: LinkState,
    /// No longer configured: not scheduled.
    pub removed: bool,
    /// A request for this link is under way: do not schedule it again.
    pub in_flight: bool,
    /// No local history: read `GET /links/{id}` before the first POST.
    pub needs_reconcile: bool,
    /// Products suspected by an ambiguous 403: sent one at a time until known.
    pub isolate: ProductSet,
}

impl Entry {
    /// Builds an entry from a stored link whose profile and cadences are
    /// `rules` (from the table's [`CadenceBook`]).
    pub fn from_record(rec: &LinkRecord, rules: Arc<LinkRules>) -> Self {
        let products: Box<[ProductSlot]> = rec
            .products
            .iter()
            .map(|p| {
                let stored = rec.schedules.iter().find(|s| s.product == p);
                let mut slot = ProductSlot::new(p);
                if let Some(s) = stored {
                    slot.set_last_requested_at(s.last_requested_at);
                    slot.saw_server_time(s.server_refreshed_at.max(s.server_attempted_at));
                    slot.set_backoff_until(s.backoff_until);
                    slot.parked = s.parked_reason.is_some();
                    slot.refresh_requested = s.refresh_requested;
                    slot.refresh_seq = rec.change_seq as u32;
                }
                slot
            })
            .collect();
        let never_seen = products.iter().all(|p| p.last().is_none());
        Self {
            id: rec.id.clone(),
            hash: link_hash(&rec.id),
            products,
            rules,
            last_activity_s: activity_secs(rec.last_activity_at),
            first_seen_at: rec.created_at,
            backoff_until: rec.backoff_until,
            recheck_at: None,
            failures: rec.failures,
            generation: 0,
            product_failures: [0; Product::ALL.len()],
            state: rec.state,
            removed: rec.removed,
            in_flight: false,
            needs_reconcile: never_seen,
            isolate: ProductSet::EMPTY,
        }
    }

    /// A freed slot: no link, nothing to schedule, the generation it
    /// carries on (see [`LinkTable::release`]).
    fn vacant(rules: Arc<LinkRules>, generation: u32) -> Self {
        Self {
            id: LinkId::vacant(),
            hash: 0,
            products: Box::default(),
            rules,
            last_activity_s: 0,
            first_seen_at: DateTime::UNIX_EPOCH,
            backoff_until: None,
            recheck_at: None,
            failures: 0,
            generation,
            product_failures: [0; Product::ALL.len()],
            state: LinkState::Active,
            removed: true,
            in_flight: false,
            needs_reconcile: false,
            isolate: ProductSet::EMPTY,
        }
    }

    /// Whether this entry is a freed slot rather than a link.
    pub fn is_vacant(&self) -> bool {
        self.id.is_vacant()
    }

    /// Whether the policy may schedule the link at all (active and configured).
    pub fn runnable(&self) -> bool {
        self.state == LinkState::Active && !self.removed
    }

    /// The policy's input for this link, built afresh: the table keeps the
    /// compact form, the policy reads this one.
    pub fn schedule(&self) -> LinkSchedule {
        LinkSchedule {
            hash: self.hash,
            first_seen_at: self.first_seen_at,
            runnable: self.runnable(),
            backoff_until: self.backoff_until,
            last_activity_at: self.last_activity_at(),
            products: self
                .products
                .iter()
                .map(|s| ProductState {
                    product: s.product,
                    cadence: self.rules.cadences[s.product.index()].clone(),
                    last_requested_at: s.last_requested_at(),
                    server_seen_at: s.server_seen_at(),
                    backoff_until: s.backoff_until(),
                    parked: s.parked,
                    refresh_requested: s.refresh_requested,
                })
                .collect(),
        }
    }

    /// The link's profile.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.rules.profile
    }

    /// The owning app's last activity call.
    pub fn last_activity_at(&self) -> Option<DateTime<Utc>> {
        activity_from_secs(self.last_activity_s)
    }

    /// Whether one of `products` was asked for on demand (the admin API's
    /// or the app's `refresh`): a POST carrying one goes first when the
    /// budget is short.
    pub fn on_demand_of(&self, products: ProductSet) -> bool {
        self.products
            .iter()
            .any(|p| p.refresh_requested && products.contains(p.product))
    }

    /// Whether any of its products was asked for on demand: its wake-ups
    /// go ahead of the scheduled work (see [`super::timer`]).
    pub fn on_demand(&self) -> bool {
        self.products.iter().any(|p| p.refresh_requested)
    }

    /// The product's state, if the link has it.
    pub fn product(&self, p: Product) -> Option<&ProductSlot> {
        self.products.iter().find(|s| s.product == p)
    }

    /// The product's state, mutably, if the link has it.
    pub fn product_mut(&mut self, p: Product) -> Option<&mut ProductSlot> {
        self.products.iter_mut().find(|s| s.product == p)
    }

    /// Takes a record from the store (operator change, reload). What the
    /// operator controls (state, products, cadence, refresh requests, parked
    /// products) comes from the store; times take the later of memory and
    /// store, because outcome writes may still be queued; what only the
    /// daemon knows (in flight, timer generation, isolation) is kept.
    pub fn merge_from(&mut self, rec: &LinkRecord, rules: Arc<LinkRules>) {
        let mut fresh = Entry::from_record(rec, rules);
        for p in fresh.products.iter_mut() {
            if let Some(old) = self.product(p.product) {
                p.keep_later(old);
                // The request this record carries was already served (the
                // outcome that cleared it is not committed yet): not again.
                if p.refresh_requested && !old.refresh_requested && p.refresh_seq == old.refresh_seq
                {
                    p.refresh_requested = false;
                }
            }
        }
        fresh.backoff_until = fresh.backoff_until.max(self.backoff_until);
        fresh.failures = fresh.failures.max(self.failures);
        fresh.last_activity_s = fresh.last_activity_s.max(self.last_activity_s);
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
    /// In chunks, so that loading links never copies the table (see
    /// [`Chunked`]).
    entries: Chunked<Entry>,
    index: HashTable<u32>,
    hasher: RandomState,
    cadences: CadenceBook,
    /// Released slots, reused by the next links merged.
    free: Vec<u32>,
    /// The rules a vacant slot points to (shared: a release allocates nothing).
    vacant_rules: Arc<LinkRules>,
}

impl LinkTable {
    /// Resolves profiles from `profiles` from now on (a reload); the caller
    /// merges every link again, which re-resolves each.
    pub fn set_profiles(&mut self, profiles: Arc<Profiles>) {
        self.cadences = CadenceBook::new(profiles);
    }

    /// Resolves link `i`'s profile again for MoneyKit `tags` (learned by a
    /// read); true when its profile changed.
    pub fn retag(&mut self, i: usize, tags: &[String]) -> bool {
        let rules = &self.entries[i].rules;
        if rules.named {
            return false;
        }
        let settings = rules.settings.clone();
        let fresh = self.cadences.get(settings.as_deref(), tags);
        let changed = !Arc::ptr_eq(&fresh.profile, &self.entries[i].rules.profile);
        self.entries[i].rules = fresh;
        changed
    }

    /// Adds a link or merges a newer record of it; returns its index.
    pub fn merge(&mut self, rec: &LinkRecord) -> usize {
        let cadences = self.cadences.get(rec.cadence.as_deref(), &rec.tags);
        if let Some(i) = self.find(&rec.id) {
            self.entries[i].merge_from(rec, cadences);
            return i;
        }
        let mut entry = Entry::from_record(rec, cadences);
        let i = match self.free.pop() {
            Some(slot) => {
                let i = slot as usize;
                // The timer may still hold entries for this slot's earlier
                // link: they carry older generations, so they stay stale.
                entry.generation = self.entries[i].generation;
                self.entries[i] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        let slot = u32::try_from(i).expect("fewer than 2^32 links");
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hasher.hash_one(rec.id.as_str()), slot, |&j| {
                hasher.hash_one(entries[j as usize].id.as_str())
            });
        i
    }

    /// Frees link `i`'s slot for the next link merged: forgets its id and
    /// drops its products, and makes any timer entry for it stale. The
    /// caller makes sure nothing else still refers to `i` (not in flight,
    /// not waiting for budget).
    pub fn release(&mut self, i: usize) {
        let e = &self.entries[i];
        if e.is_vacant() {
            return;
        }
        let hash = self.hasher.hash_one(e.id.as_str());
        if let Ok(found) = self.index.find_entry(hash, |&j| j as usize == i) {
            found.remove();
        }
        let generation = e.generation.wrapping_add(1);
        self.entries[i] = Entry::vacant(self.vacant_rules.clone(), generation);
        self.free
            .push(u32::try_from(i).expect("fewer than 2^32 links"));
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

    /// Every link (vacant slots skipped).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.is_vacant())
    }

    /// Number of slots: links (removed ones included) and vacant slots.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of links held (slots less vacant ones).
    pub fn held(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

/// A configured, active link with `products` and no history, first seen at
/// 1,800,000,000 s: the daemon's unit tests' starting point.
#[cfg(test)]
pub(crate) fn fresh_record(id: &str, products: &str) -> LinkRecord {
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    LinkRecord {
        id: LinkId::parse(id).unwrap(),
        products: ProductSet::parse_list(products).unwrap(),
        cadence: None,
        source: crate::store::LinkSource::Config,
        state: LinkState::Active,
        reason: None,
        removed: false,
        created_at: now,
        updated_at: now,
        backoff_until: None,
        failures: 0,
        change_seq: 0,
        tags: Vec::new(),
        last_activity_at: None,
        schedules: Vec::new(),
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
