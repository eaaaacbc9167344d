//! Intents and their claims: the write-ahead half of every POST (see the
//! [store docs](crate::store)). One path for one intent or many: intents
//! are written in runs of distinct links, each run's claims checked
//! together before its intents are written, three statements per chunk.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::claims::{Holding, Lease, fence_allows, known_times_allow, lease_allows};
use super::dialect::AttemptRow;
use super::rows::rows;
use super::statements::{BATCH_ROWS, BULK_LEASE_ROW, BULK_LEASE_TAIL, LEASE_HEAD, VALUES_OPEN};
use super::{Column, Dialect, SqlStore};
use crate::domain::Product;
use crate::store::records::{bits, encode_prev, ms};
use crate::store::{AttemptId, Claim, Intent, PostCap, StoreError};

/// `last_requested_at` by `(link, product)`, as a batch's claims read it.
type StoredTimes = HashMap<(String, String), Option<i64>>;

/// Splits intents, in order, into the longest runs that name each link at
/// most once: within a run, claims checked together decide as one by one
/// would, since no intent of the run touches another's link.
fn runs_of_distinct_links(intents: &[Intent]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < intents.len() {
        let mut seen = HashSet::new();
        let mut end = start;
        while end < intents.len() && seen.insert(intents[end].link.as_str()) {
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    bool: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i32>: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
{
    /// The intents of `record_batch`; `None` for a refused claim. A link
    /// named twice starts a new run, whose claims then see the first
    /// intent's write, exactly as if each were written on its own.
    ///
    /// Under a `cap`, only the room left under it is claimed, in order;
    /// the rest is refused unclaimed.
    pub(crate) async fn write_intents(
        conn: &mut DB::Connection,
        intents: &[Intent],
        cap: Option<PostCap>,
    ) -> Result<Vec<Option<AttemptId>>, StoreError> {
        let mut room = match cap {
            Some(cap) if !intents.is_empty() => Self::room_under(conn, cap).await?,
            _ => usize::MAX,
        };
        let mut ids = Vec::with_capacity(intents.len());
        for run in runs_of_distinct_links(intents) {
            let run = &intents[run];
            let (within, over) = run.split_at(run.len().min(room));
            let (ok, read) = Self::take_claims(conn, within).await?;
            let accepted: Vec<&Intent> = within
                .iter()
                .zip(&ok)
                .filter_map(|(i, ok)| ok.then_some(i))
                .collect();
            room = room.saturating_sub(accepted.len());
            let mut written = Self::insert_intents(conn, &accepted, &read)
                .await?
                .into_iter();
            ids.extend(ok.iter().map(|ok| if *ok { written.next() } else { None }));
            ids.extend(over.iter().map(|_| None));
        }
        Ok(ids)
    }

    /// How many intents the cap still admits, holding the cap's lock (where
    /// the backend needs one) until the transaction ends.
    async fn room_under(conn: &mut DB::Connection, cap: PostCap) -> Result<usize, StoreError> {
        if let Some(lock) = DB::CAP_LOCK {
            sqlx::query(lock).execute(&mut *conn).await?;
        }
        let row = sqlx::query("SELECT COUNT(*) FROM attempts WHERE intent_at > $1")
            .bind(ms(cap.since))
            .fetch_one(&mut *conn)
            .await?;
        let spent: i64 = row.try_get(0)?;
        let spent = usize::try_from(spent).unwrap_or(usize::MAX);
        Ok(usize::try_from(cap.limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(spent))
    }

    /// The claims of intents of distinct links, checked together: each
    /// link's row and schedule rows read (and on PostgreSQL locked without
    /// waiting), the lease and the known times checked (see
    /// [`claims`](super::claims)), then the lease taken and `intent_seq`
    /// stamped. Whether each intent may be written; one without a claim
    /// always may.
    ///
    /// Also returns the request times read for the claims' check, which
    /// [`insert_intents`](Self::insert_intents) needs again (one statement
    /// less per batch on the hot path of a replica).
    async fn take_claims(
        conn: &mut DB::Connection,
        intents: &[Intent],
    ) -> Result<(Vec<bool>, StoredTimes), StoreError> {
        let mut ok: Vec<bool> = intents.iter().map(|i| i.claim.is_none()).collect();
        let claimed: Vec<(usize, &Intent, &Claim)> = intents
            .iter()
            .enumerate()
            .filter_map(|(n, i)| i.claim.as_ref().map(|c| (n, i, c)))
            .collect();
        if claimed.is_empty() {
            return Ok((ok, StoredTimes::new()));
        }
        let mut leases: HashMap<String, Lease> = HashMap::new();
        let ids: Vec<&str> = claimed.iter().map(|(_, i, _)| i.link.as_str()).collect();
        let head = "SELECT id, lease_owner, lease_until FROM links WHERE removed = FALSE AND id";
        for row in &Self::select_in(conn, head, DB::LOCK, &ids).await? {
            leases.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
        let holdings = Self::read_fences(conn, &claimed).await?;
        let free: Vec<(usize, &Intent, &Claim)> = claimed
            .into_iter()
            .filter(|(_, _, c)| fence_allows(c, &holdings))
            .filter(|(_, i, c)| lease_allows(i, c, leases.get(i.link.as_str())))
            .collect();
        let mut stored = StoredTimes::new();
        let ids: Vec<&str> = free.iter().map(|(_, i, _)| i.link.as_str()).collect();
        let head = "SELECT link_id, product, last_requested_at FROM schedules WHERE link_id";
        for row in &Self::select_in(conn, head, DB::LOCK, &ids).await? {
            stored.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
        let accepted: Vec<(usize, &Intent, &Claim)> = free
            .into_iter()
            .filter(|(_, i, c)| known_times_allow(i, c, &stored))
            .collect();
        let taken: Vec<(&str, &str, i64)> = accepted
            .iter()
            .map(|(_, i, c)| (i.link.as_str(), c.owner.as_str(), ms(c.lease_until)))
            .collect();
        if !taken.is_empty() && DB::take_leases(conn, &taken).await?.is_none() {
            for chunk in taken.chunks(BATCH_ROWS) {
                let head = [LEASE_HEAD, DB::NEXT_SEQ, VALUES_OPEN];
                let text = rows::<DB>(&head, BULK_LEASE_ROW, chunk.len(), BULK_LEASE_TAIL);
                let mut q = sqlx::query(AssertSqlSafe(text));
                for (link, owner, until) in chunk {
                    q = q.bind(*link).bind(*owner).bind(*until);
                }
                q.execute(&mut *conn).await?;
            }
        }
        for (n, _, _) in accepted {
            ok[n] = true;
        }
        Ok((ok, stored))
    }

    /// The partitions that fence `claimed` (see
    /// [`fence_allows`](super::claims::fence_allows)), read in ascending
    /// order and share-locked on PostgreSQL: a heartbeat acquiring one of
    /// them (which locks them in the same order) waits for this commit, so
    /// the new holder's load sees these intents.
    async fn read_fences(
        conn: &mut DB::Connection,
        claimed: &[(usize, &Intent, &Claim)],
    ) -> Result<HashMap<i32, Holding>, StoreError> {
        let mut parts: Vec<i32> = claimed
            .iter()
            .filter_map(|(_, _, c)| c.fence.and_then(|f| i32::try_from(f.part).ok()))
            .collect();
        parts.sort_unstable();
        parts.dedup();
        let mut out = HashMap::with_capacity(parts.len());
        if parts.is_empty() {
            return Ok(out);
        }
        let head = format!(
            "SELECT part, holder, epoch, CASE WHEN lease_until > {} THEN 1 ELSE 0 END \
             FROM partitions WHERE part IN (",
            DB::CLOCK_MS
        );
        let tail = format!(") ORDER BY part{}", DB::SHARE);
        let text = rows::<DB>(&[head.as_str()], "?", parts.len(), &tail);
        let mut q = sqlx::query(AssertSqlSafe(text));
        for part in &parts {
            q = q.bind(*part);
        }
        for row in &q.fetch_all(&mut *conn).await? {
            let live: i32 = row.try_get(3)?;
            out.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, live == 1),
            );
        }
        Ok(out)
    }

    /// Writes intents of distinct links whose claims were taken, in three
    /// statements per chunk: read the previous times, insert the attempts
    /// (with those times, for a 429's restore), move the times. The read is
    /// skipped when the claims already read every intent's link (`read`,
    /// locked in this transaction): all intents claimed.
    async fn insert_intents(
        conn: &mut DB::Connection,
        intents: &[&Intent],
        read: &StoredTimes,
    ) -> Result<Vec<AttemptId>, StoreError> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let mut prev_of: HashMap<&str, Vec<(Product, Option<i64>)>> = intents
            .iter()
            .map(|i| {
                let prev = i.products.iter().map(|p| (p, None)).collect();
                (i.link.as_str(), prev)
            })
            .collect();
        let mut fill = |link: &str, product: &str, at: Option<i64>| {
            if let Some(prev) = prev_of.get_mut(link)
                && let Some(slot) = prev.iter_mut().find(|(p, _)| p.as_str() == product)
            {
                slot.1 = at;
            }
        };
        if intents.iter().all(|i| i.claim.is_some()) {
            for ((link, product), at) in read {
                fill(link, product, *at);
            }
        } else {
            let ids: Vec<&str> = intents.iter().map(|i| i.link.as_str()).collect();
            let head = "SELECT link_id, product, last_requested_at FROM schedules WHERE link_id";
            for row in &Self::select_in(conn, head, "", &ids).await? {
                let link: String = row.try_get(0)?;
                let product: String = row.try_get(1)?;
                fill(&link, &product, row.try_get(2)?);
            }
        }
        let mut id_of: HashMap<String, i64> = HashMap::with_capacity(intents.len());
        let attempts: Vec<AttemptRow> = intents
            .iter()
            .map(|i| {
                (
                    i.link.as_str(),
                    bits(i.products),
                    ms(i.at),
                    encode_prev(&prev_of[i.link.as_str()]),
                    i.claim.as_ref().map(|c| c.owner.as_str()),
                )
            })
            .collect();
        let bulk = DB::insert_attempts(conn, &attempts).await?;
        let shared = if bulk.is_none() {
            &attempts[..]
        } else {
            &[][..]
        };
        id_of.extend(bulk.into_iter().flatten().map(|(id, link)| (link, id)));
        for chunk in shared.chunks(BATCH_ROWS) {
            let text = rows::<DB>(
                &[
                    "INSERT INTO attempts (link_id, products, intent_at, prev_requested, replica) VALUES ",
                ],
                "(?, ?, ?, ?, ?)",
                chunk.len(),
                " RETURNING id, link_id",
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, products, at, prev, replica) in chunk {
                q = q
                    .bind(*link)
                    .bind(*products)
                    .bind(*at)
                    .bind(prev.as_str())
                    .bind(*replica);
            }
            for row in &q.fetch_all(&mut *conn).await? {
                id_of.insert(row.try_get(1)?, row.try_get(0)?);
            }
        }
        let times: Vec<(&str, &'static str, i64)> = intents
            .iter()
            .flat_map(|i| {
                i.products
                    .iter()
                    .map(move |p| (i.link.as_str(), p.as_str(), ms(i.at)))
            })
            .collect();
        let shared = match DB::move_times(conn, &times).await? {
            Some(()) => &[][..],
            None => &times[..],
        };
        for chunk in shared.chunks(BATCH_ROWS) {
            let text = rows::<DB>(
                &["INSERT INTO schedules (link_id, product, last_requested_at) VALUES "],
                "(?, ?, ?)",
                chunk.len(),
                " ON CONFLICT (link_id, product) DO UPDATE SET last_requested_at = excluded.last_requested_at",
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, product, at) in chunk {
                q = q.bind(*link).bind(*product).bind(*at);
            }
            q.execute(&mut *conn).await?;
        }
        intents
            .iter()
            .map(|i| {
                id_of.get(i.link.as_str()).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!("no attempt id returned for link {}", i.link))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkId, ProductSet};

    fn intent(link: &str) -> Intent {
        Intent {
            link: LinkId::parse(link).unwrap(),
            products: ProductSet::parse_list("accounts").unwrap(),
            at: chrono::DateTime::from_timestamp(1, 0).unwrap(),
            claim: None,
        }
    }

    #[test]
    fn a_link_named_again_starts_a_new_run_and_distinct_links_share_one() {
        let intents: Vec<Intent> = ["mk_a", "mk_b", "mk_a", "mk_c", "mk_c"]
            .into_iter()
            .map(intent)
            .collect();
        assert_eq!(runs_of_distinct_links(&intents), vec![0..2, 2..4, 4..5]);
        assert_eq!(runs_of_distinct_links(&intents[..2]), vec![0..2]);
        assert!(runs_of_distinct_links(&[]).is_empty());
    }
}
