//! Backend-neutral pieces of the store: how domain values are encoded in
//! columns, how raw rows become records, and the diff that `sync_config`
//! writes. Keeping them here means both backends encode exactly alike.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};

use super::{LinkRecord, LinkSpec, ProductRecord, StoreError, SyncReport, Timestamp};
use crate::domain::{LinkId, LinkState, Product, ProductSet};

/// Who manages a link; config sync only ever removes links it manages itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkSource {
    /// Listed in the configuration (or its links file).
    Config,
    /// Added through the admin API.
    Api,
    /// Found by discovery (`GET /links`).
    Discovery,
}

impl LinkSource {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkSource::Config => "config",
            LinkSource::Api => "api",
            LinkSource::Discovery => "discovery",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [LinkSource::Config, LinkSource::Api, LinkSource::Discovery]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for LinkSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bitmask stored in `links.products` and `attempts.products`.
pub(crate) fn bits(set: ProductSet) -> i32 {
    set.iter().fold(0, |acc, p| acc | (1 << p.index()))
}

pub(crate) fn from_bits(bits: i32) -> ProductSet {
    Product::ALL
        .into_iter()
        .filter(|p| bits & (1 << p.index()) != 0)
        .collect()
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(ms)
}

/// A time rounded *up* to the stored millisecond: a claim's known time
/// compared with the stored (truncated) one must not look older than it is.
pub(crate) fn ceil_ms(t: Timestamp) -> i64 {
    ms(t) + i64::from(!t.timestamp_subsec_nanos().is_multiple_of(1_000_000))
}

pub(crate) fn time(ms: i64) -> Result<Timestamp, StoreError> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(time).transpose()
}

pub(crate) fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

pub(crate) fn product(raw: &str) -> Result<Product, StoreError> {
    Product::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `attempts.prev_requested`: each product's `last_requested_at` (ms or null)
/// before the intent, as a JSON object keyed by wire name.
pub(crate) fn encode_prev(prev: &[(Product, Option<i64>)]) -> String {
    let map: BTreeMap<&str, Option<i64>> = prev.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    serde_json::to_string(&map).expect("a map of strings to integers always serializes")
}

pub(crate) fn decode_prev(raw: &str) -> Result<Vec<(Product, Option<i64>)>, StoreError> {
    let map: BTreeMap<String, Option<i64>> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("attempts.prev_requested: {e}")))?;
    let mut out = map
        .into_iter()
        .map(|(p, t)| Ok((product(&p)?, t)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by_key(|(p, _)| p.index());
    Ok(out)
}

/// `links.tags`: MoneyKit's `link_tags` as a JSON array; `None` for none.
pub(crate) fn encode_tags(tags: &[String]) -> Option<String> {
    (!tags.is_empty())
        .then(|| serde_json::to_string(tags).expect("a list of strings always serializes"))
}

/// Reads `links.tags` back; a value that is not a list of strings reads as
/// no tags (tags only select a profile: the default is the safe reading).
pub(crate) fn decode_tags(raw: Option<&str>) -> Vec<String> {
    raw.and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default()
}

/// A `links` row as read, before validation.
pub(crate) struct RawLink {
    pub id: String,
    pub products: i32,
    pub cadence: Option<String>,
    pub source: String,
    pub state: String,
    pub reason: Option<String>,
    pub removed: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub backoff_until: Option<i64>,
    pub failures: i32,
    pub change_seq: i64,
    /// MoneyKit `link_tags` as a JSON array of strings.
    pub tags: Option<String>,
    pub last_activity_at: Option<i64>,
}

/// A `schedules` row as read, before validation.
pub(crate) struct RawSchedule {
    pub product: String,
    pub last_requested_at: Option<i64>,
    pub server_refreshed_at: Option<i64>,
    pub server_attempted_at: Option<i64>,
    pub next_due_at: Option<i64>,
    pub failures: i32,
    pub backoff_until: Option<i64>,
    pub parked_reason: Option<String>,
    pub refresh_requested: bool,
}

impl RawLink {
    pub(crate) fn into_record(self) -> Result<LinkRecord, StoreError> {
        Ok(LinkRecord {
            id: LinkId::parse(&self.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            products: from_bits(self.products),
            cadence: self.cadence,
            source: LinkSource::parse(&self.source).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown link source {:?}", self.source))
            })?,
            state: LinkState::parse(&self.state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            reason: self.reason,
            removed: self.removed,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            backoff_until: opt_time(self.backoff_until)?,
            failures: count(self.failures),
            change_seq: self.change_seq,
            tags: decode_tags(self.tags.as_deref()),
            last_activity_at: opt_time(self.last_activity_at)?,
            schedules: Vec::new(),
        })
    }
}

impl RawSchedule {
    pub(crate) fn into_record(self) -> Result<ProductRecord, StoreError> {
        Ok(ProductRecord {
            product: product(&self.product)?,
            last_requested_at: opt_time(self.last_requested_at)?,
            server_refreshed_at: opt_time(self.server_refreshed_at)?,
            server_attempted_at: opt_time(self.server_attempted_at)?,
            next_due_at: opt_time(self.next_due_at)?,
            failures: count(self.failures),
            backoff_until: opt_time(self.backoff_until)?,
            parked_reason: self.parked_reason,
            refresh_requested: self.refresh_requested,
        })
    }
}

/// A page of links as one JSON document (`[[id, products, ..., [[product,
/// ...], ...]], ...]`), built by the database: one row per page instead of one
/// per schedule, because handing rows one by one from the driver cost ten
/// times more than SQLite took to produce them.
#[derive(serde::Deserialize)]
pub(crate) struct JsonLink(
    String,
    i32,
    Option<String>,
    String,
    String,
    Option<String>,
    JsonBool,
    i64,
    i64,
    Option<i64>,
    i32,
    i64,
    Vec<JsonSchedule>,
    Option<String>,
    Option<i64>,
);

#[derive(serde::Deserialize)]
struct JsonSchedule(
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i32,
    Option<i64>,
    Option<String>,
    JsonBool,
);

/// SQLite's JSON has no booleans (0/1); PostgreSQL's has.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonBool {
    Bool(bool),
    Int(i64),
}

impl JsonBool {
    fn get(self) -> bool {
        match self {
            JsonBool::Bool(b) => b,
            JsonBool::Int(i) => i != 0,
        }
    }
}

/// Parses one page document into records, in id order.
pub(crate) fn parse_page(doc: &str) -> Result<Vec<LinkRecord>, StoreError> {
    let links: Vec<JsonLink> =
        serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("links page: {e}")))?;
    let mut out = links
        .into_iter()
        .map(|l| {
            let mut link = RawLink {
                id: l.0,
                products: l.1,
                cadence: l.2,
                source: l.3,
                state: l.4,
                reason: l.5,
                removed: l.6.get(),
                created_at: l.7,
                updated_at: l.8,
                backoff_until: l.9,
                failures: l.10,
                change_seq: l.11,
                tags: l.13,
                last_activity_at: l.14,
            }
            .into_record()?;
            for s in l.12 {
                let raw = RawSchedule {
                    product: s.0,
                    last_requested_at: s.1,
                    server_refreshed_at: s.2,
                    server_attempted_at: s.3,
                    next_due_at: s.4,
                    failures: s.5,
                    backoff_until: s.6,
                    parked_reason: s.7,
                    refresh_requested: s.8.get(),
                };
                link.schedules.push(raw.into_record()?);
            }
            Ok(finish(link))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Keeps only the schedules of products the link still wants (rows of dropped
/// products stay in the table, with their times, in case they come back) and
/// orders them in wire order.
pub(crate) fn finish(mut link: LinkRecord) -> LinkRecord {
    let wanted = link.products;
    link.schedules.retain(|s| wanted.contains(s.product));
    link.schedules.sort_by_key(|s| s.product.index());
    link
}

/// What `sync_config` knows of a stored link, to decide whether it changed.
pub(crate) struct Existing {
    pub products: i32,
    pub cadence: Option<String>,
    pub source: String,
    pub removed: bool,
}

/// The writes `sync_config` must do, computed in memory so that an unchanged
/// link costs a hash lookup and no write.
pub(crate) struct SyncPlan<'a> {
    /// New, returning or changed links: upserted with their schedule rows.
    pub upserts: Vec<&'a LinkSpec>,
    /// Config-managed links no longer configured.
    pub removed: Vec<String>,
    pub report: SyncReport,
}

/// Diffs the wanted links against the stored ones. A repeated id in `links`
/// counts once (the first wins); the config layer rejects duplicates anyway.
pub(crate) fn plan_sync<'a>(
    existing: &HashMap<String, Existing>,
    links: &'a [LinkSpec],
) -> SyncPlan<'a> {
    let mut report = SyncReport::default();
    // The wanted ids sorted (indices, 4 bytes a link), not hashed: with a
    // million links a set of them was 36 MB more at the syncing replica's
    // start-up peak (issue 16), beside the links themselves.
    let n = u32::try_from(links.len()).expect("fewer than 2^32 links");
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| {
        links[a as usize]
            .id
            .cmp(&links[b as usize].id)
            .then(a.cmp(&b))
    });
    let mut repeat = vec![false; links.len()];
    for w in order.windows(2) {
        if links[w[0] as usize].id == links[w[1] as usize].id {
            repeat[w[1] as usize] = true;
        }
    }
    let wanted = |id: &str| {
        order
            .binary_search_by(|&i| links[i as usize].id.as_str().cmp(id))
            .is_ok()
    };
    let mut upserts = Vec::with_capacity(if existing.is_empty() { links.len() } else { 0 });
    for (spec, _) in links.iter().zip(&repeat).filter(|(_, r)| !**r) {
        match existing.get(spec.id.as_str()) {
            None => {
                report.added += 1;
                upserts.push(spec);
            }
            Some(old) if old.removed => {
                report.added += 1;
                upserts.push(spec);
            }
            Some(old)
                if old.products != bits(spec.products)
                    || old.cadence != spec.cadence
                    || old.source != spec.source.as_str() =>
            {
                report.changed += 1;
                upserts.push(spec);
            }
            Some(_) => report.unchanged += 1,
        }
    }
    drop(repeat);
    let removed: Vec<String> = existing
        .iter()
        .filter(|(id, old)| {
            !old.removed && old.source == LinkSource::Config.as_str() && !wanted(id.as_str())
        })
        .map(|(id, _)| id.clone())
        .collect();
    report.removed = removed.len() as u64;
    SyncPlan {
        upserts,
        removed,
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_bits_round_trip() {
        let set = ProductSet::parse_list("accounts,identity,enrichment").unwrap();
        assert_eq!(from_bits(bits(set)), set);
        assert_eq!(bits(ProductSet::EMPTY), 0);
    }

    #[test]
    fn known_times_round_up_to_the_stored_millisecond() {
        let t = DateTime::<Utc>::from_timestamp(1_750_000_000, 1_500_000).unwrap();
        assert_eq!(ms(t), 1_750_000_000_001);
        assert_eq!(ceil_ms(t), 1_750_000_000_002);
        let whole = DateTime::<Utc>::from_timestamp(1_750_000_000, 2_000_000).unwrap();
        assert_eq!(ceil_ms(whole), ms(whole));
    }

    #[test]
    fn previous_times_round_trip_including_nulls() {
        let prev = vec![(Product::Accounts, Some(5)), (Product::Identity, None)];
        assert_eq!(decode_prev(&encode_prev(&prev)).unwrap(), prev);
    }
}
