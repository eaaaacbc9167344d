//! The SQL both backends share. linkfresh only uses the subset SQLite and
//! PostgreSQL agree on (`$N` parameters, `ON CONFLICT`, `RETURNING`,
//! `TRUE`/`FALSE`, `CASE`), so the [`Store`](super::Store) implementation is
//! written once, as a macro expanded in each backend module with that
//! backend's concrete sqlx types. A macro rather than generics because sqlx's
//! generic bounds (per column type, per executor) would drown the logic.
//!
//! Optional fields of a patch are applied with `CASE WHEN $flag THEN $value
//! ELSE column END`, so patches share a few prepared statements: one per
//! table and choice of whether the indexed columns are assigned at all (see
//! `link_assignments`).

use std::sync::LazyLock;

/// Links per page when reading the whole table (bounded memory, no long cursor).
pub(crate) const PAGE: i64 = 10_000;
/// Links written per transaction by `sync_config`.
pub(crate) const SYNC_TX_LINKS: usize = 20_000;
/// Rows per multi-row INSERT (7 parameters each: well under both backends' limits).
pub(crate) const LINK_ROWS: usize = 500;
/// Links changed by one sync past which the backend refreshes its planner
/// statistics (`after_bulk_write`).
pub(crate) const BULK_CHANGE: usize = 10_000;
/// Rows per multi-row due-time update (3 parameters each).
pub(crate) const DUE_ROWS: usize = 1_000;
/// Ids per `IN (...)` list.
pub(crate) const ID_ROWS: usize = 500;
/// Rows per multi-row statement of the batched intent and outcome paths
/// (at most 16 parameters each: 3,200 per statement, under both backends' limits).
pub(crate) const BATCH_ROWS: usize = 200;

/// Batched `record_outcomes`: one statement per table for a run of outcomes
/// of distinct links, instead of 2 + 2 per product statements per outcome.
/// On SQLite every statement is a round trip to sqlx's connection thread, so
/// this is what lets durability keep up with thousands of POSTs a second.
/// Same effect as [`patch_link`] / [`patch_schedule`] row by row.
pub(crate) const BULK_FINISH_HEAD: &str = "UPDATE attempts SET outcome = v.column2, \
    status = v.column3, detail = v.column4, finished_at = v.column5 FROM (VALUES ";
pub(crate) const BULK_FINISH_ROW: &str = "(?, ?, ?, ?, ?, ?)";
pub(crate) const BULK_FINISH_TAIL: &str = ") AS v WHERE attempts.id = v.column1 AND attempts.link_id = v.column6 \
     RETURNING attempts.id, attempts.replica";

/// Batched lease release of finished claimed attempts: only where the
/// attempt's replica still holds the lease (as `outcome_one`). The head, with
/// its `intent_seq` stamp, is backend SQL and built in the macro.
pub(crate) const BULK_RELEASE_ROW: &str = "(?, ?)";
pub(crate) const BULK_RELEASE_TAIL: &str =
    ") AS v WHERE links.id = v.column1 AND links.lease_owner = v.column2";

/// Batched lease taking of accepted claims (see `claims_bulk`); the head is
/// built in the macro like the release's.
pub(crate) const BULK_LEASE_ROW: &str = "(?, ?, ?)";
pub(crate) const BULK_LEASE_TAIL: &str = ") AS v WHERE links.id = v.column1";

/// The bulk link patch of outcomes (see [`link_assignments`]).
pub(crate) fn bulk_patch_link_head(state: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|state, _| {
            let set = link_assignments(Values("links"), state, false, 9);
            format!("UPDATE links SET {set} FROM (VALUES ")
        })
    });
    &TEXTS[variant(state, false)]
}
pub(crate) const BULK_PATCH_LINK_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const BULK_PATCH_LINK_TAIL: &str =
    ") AS v WHERE links.id = v.column1 RETURNING links.id";

pub(crate) const BULK_ENSURE_SCHEDULE_HEAD: &str =
    "INSERT INTO schedules (link_id, product) VALUES ";
pub(crate) const BULK_ENSURE_SCHEDULE_TAIL: &str = " ON CONFLICT (link_id, product) DO NOTHING";

/// The bulk schedule patch (see [`schedule_assignments`]).
pub(crate) fn bulk_patch_schedule_head(requested: bool, due: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|requested, due| {
            let set = schedule_assignments(Values("schedules"), requested, due);
            format!("UPDATE schedules SET {set} FROM (VALUES ")
        })
    });
    &TEXTS[variant(requested, due)]
}
pub(crate) const BULK_PATCH_SCHEDULE_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const BULK_PATCH_SCHEDULE_TAIL: &str =
    ") AS v WHERE schedules.link_id = v.column1 AND schedules.product = v.column2";

const LINK_AND_SCHEDULE_COLUMNS: &str = "l.id, l.products, l.cadence, l.source, l.state, \
     l.reason, l.removed, l.created_at, l.updated_at, l.backoff_until, l.failures, l.change_seq, \
     s.product, s.last_requested_at, s.server_refreshed_at, s.server_attempted_at, \
     s.next_due_at, s.failures, s.backoff_until, s.parked_reason, s.refresh_requested";

pub(crate) fn select_one() -> String {
    format!(
        "SELECT {LINK_AND_SCHEDULE_COLUMNS} FROM links l \
         LEFT JOIN schedules s ON s.link_id = l.id WHERE l.id = $1"
    )
}

/// Links stamped by claims or released leases after `$1` (see `claims_since`).
pub(crate) fn select_claimed() -> String {
    format!(
        "SELECT {LINK_AND_SCHEDULE_COLUMNS} FROM links l \
         LEFT JOIN schedules s ON s.link_id = l.id WHERE l.intent_seq > $1 AND l.removed = FALSE \
         ORDER BY l.id"
    )
}

pub(crate) fn select_changed() -> String {
    format!(
        "SELECT {LINK_AND_SCHEDULE_COLUMNS} FROM links l \
         LEFT JOIN schedules s ON s.link_id = l.id WHERE l.change_seq > $1 ORDER BY l.id"
    )
}

/// Upsert of a link row. A link that comes back or changes is un-removed and,
/// if MoneyKit had parked it, un-parked: the configuration changed (DESIGN).
/// `change_seq` 0 keeps the stored value (config sync does not notify).
pub(crate) const UPSERT_LINK_HEAD: &str = "INSERT INTO links \
    (id, products, cadence, source, state, removed, created_at, updated_at, failures, change_seq) VALUES ";
pub(crate) const UPSERT_LINK_ROW: &str = "(?, ?, ?, ?, 'active', FALSE, ?, ?, 0, ?)";
pub(crate) const UPSERT_LINK_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET \
    products = excluded.products, cadence = excluded.cadence, source = excluded.source, \
    removed = FALSE, updated_at = excluded.updated_at, \
    change_seq = CASE WHEN excluded.change_seq > 0 THEN excluded.change_seq ELSE links.change_seq END, \
    state = CASE WHEN links.state IN ('not_found', 'deleted', 'needs_user_action') \
        THEN 'active' ELSE links.state END, \
    reason = CASE WHEN links.state IN ('not_found', 'deleted', 'needs_user_action') \
        THEN NULL ELSE links.reason END";

/// One schedule row (link, product) of a multi-row statement.
pub(crate) const UPSERT_SCHEDULE_ROW: &str = "(?, ?)";
/// How a sync upserts schedule rows for a link's products: existing rows
/// keep their times and only lose a 403 park (their link's configuration
/// changed).
pub(crate) const UPSERT_SCHEDULE_TAIL: &str =
    " ON CONFLICT (link_id, product) DO UPDATE SET parked_reason = NULL";

/// One link's patch (see [`link_assignments`]).
pub(crate) fn patch_link(state: bool, change_seq: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|state, change_seq| {
            let set = link_assignments(Params, state, change_seq, 11);
            format!("UPDATE links SET {set} WHERE id = $1")
        })
    });
    &TEXTS[variant(state, change_seq)]
}

/// The four texts of a statement that assigns two optional columns, built
/// once: the patches run on the daemon's write path.
fn variants(build: impl Fn(bool, bool) -> String) -> [String; 4] {
    std::array::from_fn(|i| build(i & 2 != 0, i & 1 != 0))
}

/// Where [`variants`] keeps the text for `(a, b)`.
fn variant(a: bool, b: bool) -> usize {
    usize::from(a) * 2 + usize::from(b)
}

/// Where a patch statement reads value `n` of a patch: the numbered
/// parameter `$n` of a one-row statement, or column `n` of the `VALUES`
/// list `v` of a bulk one (whose target table then qualifies the old value).
#[derive(Clone, Copy)]
enum PatchSource {
    Params,
    Values(&'static str),
}
use PatchSource::{Params, Values};

impl PatchSource {
    fn value(self, n: u8) -> String {
        match self {
            Params => format!("${n}"),
            Values(_) => format!("v.column{n}"),
        }
    }

    fn old(self, column: &str) -> String {
        match self {
            Params => column.to_owned(),
            Values(table) => format!("{table}.{column}"),
        }
    }

    /// `column` takes value `value` where flag `flag` is true.
    fn set_if(self, column: &str, flag: u8, value: u8) -> String {
        format!(
            "{column} = CASE WHEN {} THEN {} ELSE {} END",
            self.value(flag),
            self.value(value),
            self.old(column)
        )
    }

    /// `column` takes value `value` only if that is later (max-merge).
    fn set_later(self, column: &str, value: u8) -> String {
        let (v, old) = (self.value(value), self.old(column));
        format!(
            "{column} = CASE WHEN {v} IS NOT NULL AND ({old} IS NULL OR {old} < {v}) THEN {v} ELSE {old} END"
        )
    }
}

/// The `SET` list of a link patch: values 2-4 state and reason, 5-6 backoff,
/// 7-8 failures, 9-10 change sequence (flag, value), `updated_at` the
/// given value. `state`/`change_seq`: whether any row sets them. Assigning
/// an indexed column costs its index updates even when the value stays
/// (measured: 12x the time of an UPDATE of a table with five indexes), and
/// both are indexed while nearly no patch changes them, so they are
/// assigned only when some row does.
fn link_assignments(src: PatchSource, state: bool, change_seq: bool, updated_at: u8) -> String {
    let mut set = Vec::new();
    if state {
        set.push(src.set_if("state", 2, 3));
        set.push(src.set_if("reason", 2, 4));
    }
    set.push(src.set_if("backoff_until", 5, 6));
    set.push(src.set_if("failures", 7, 8));
    if change_seq {
        set.push(src.set_if("change_seq", 9, 10));
    }
    set.push(format!("updated_at = {}", src.value(updated_at)));
    set.join(", ")
}

/// The `SET` list of a product patch, values 3-16 as
/// `bind_product_patch` binds them. Server times are
/// max-merged: a late or replayed webhook never moves them back. The two
/// indexed times are assigned only when some row sets them (`requested`,
/// `due`; see [`link_assignments`]).
fn schedule_assignments(src: PatchSource, requested: bool, due: bool) -> String {
    let mut set = Vec::new();
    if requested {
        set.push(src.set_if("last_requested_at", 3, 4));
    }
    set.push(src.set_later("server_refreshed_at", 5));
    set.push(src.set_later("server_attempted_at", 6));
    if due {
        set.push(src.set_if("next_due_at", 7, 8));
    }
    set.push(src.set_if("failures", 9, 10));
    set.push(src.set_if("backoff_until", 11, 12));
    set.push(src.set_if("parked_reason", 13, 14));
    set.push(src.set_if("refresh_requested", 15, 16));
    set.join(", ")
}

/// Due times for many products in one statement (`UPDATE ... FROM VALUES`,
/// which both backends accept; VALUES columns are `column1..3` in both).
pub(crate) const SET_DUE_HEAD: &str = "UPDATE schedules SET next_due_at = v.column3 FROM (VALUES ";
pub(crate) const SET_DUE_ROW: &str = "(?, ?, ?)";
pub(crate) const SET_DUE_TAIL: &str =
    ") AS v WHERE schedules.link_id = v.column1 AND schedules.product = v.column2";

/// A removed link is no longer scheduled: its due times are cleared, or the
/// fleet page would count them as due now forever (see `due_histogram`).
pub(crate) const CLEAR_DUE_HEAD: &str =
    "UPDATE schedules SET next_due_at = NULL WHERE next_due_at IS NOT NULL AND link_id IN (";

pub(crate) const ENSURE_SCHEDULE: &str = "INSERT INTO schedules (link_id, product) VALUES ($1, $2) \
    ON CONFLICT (link_id, product) DO NOTHING";

/// Server times are max-merged: a late or replayed webhook never moves them back.
/// One product's patch (see [`schedule_assignments`]).
pub(crate) fn patch_schedule(requested: bool, due: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|requested, due| {
            let set = schedule_assignments(Params, requested, due);
            format!("UPDATE schedules SET {set} WHERE link_id = $1 AND product = $2")
        })
    });
    &TEXTS[variant(requested, due)]
}

/// Expired idempotency keys deleted per `remember_delivery`: bounded work per
/// delivery, still far more than deliveries arrive, so the table stays small.
pub(crate) const PRUNE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE idempotency_key IN \
    (SELECT idempotency_key FROM webhook_deliveries WHERE expires_at <= $1 LIMIT 100)";

/// Inserts a key; an expired entry for the same key counts as absent (a row is
/// written either way, so `rows_affected() == 1` means "first time").
pub(crate) const REMEMBER_DELIVERY: &str = "INSERT INTO webhook_deliveries \
    (idempotency_key, expires_at) VALUES ($1, $2) ON CONFLICT (idempotency_key) \
    DO UPDATE SET expires_at = excluded.expires_at WHERE webhook_deliveries.expires_at <= $3";

/// Expands the shared [`Store`](crate::store::Store) implementation for one
/// backend: `$store` is the backend struct (with `pool`, `writer` and `location`
/// fields), `$db` its sqlx database, `$begin` the statement that opens a
/// write transaction (SQLite takes the write lock up front with
/// `BEGIN IMMEDIATE` so concurrent writers wait on `busy_timeout` instead of
/// failing when a read turns into a write), `$numbered` whether multi-row
/// statements number their parameters (see [`multi_row`](super::records::multi_row);
/// SQLite keeps anonymous `?`s, which bind in O(1)), `$bulk` whether intents
/// and outcomes use the batched multi-row statements (see [`BULK_FINISH_HEAD`]),
/// `$json_page` the backend's query for one page of links as a JSON document
/// (see [`parse_page`](super::records::parse_page)): `$1` the last id of the
/// previous page, `$2` the page size; it returns the document and the page's
/// last id. `$lock` is appended to the claim's reads of the link and its
/// schedule rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite's
/// `BEGIN IMMEDIATE` already excludes other writers), `$next_seq` the SQL
/// expression of the next `links.intent_seq`, and `$overlap` how far below
/// its high-water mark `claims_since` re-reads (stamps that may commit out of
/// order). The backend module also provides `lock_sync`, which serializes
/// `sync_config` across processes where that matters.
macro_rules! impl_sql_store {
    (
        $store:ident,
        $db:ty,
        begin = $begin:literal,
        numbered = $numbered:literal,
        bulk = $bulk:literal,
        json_page = $json_page:expr,
        lock = $lock:literal,
        next_seq = $next_seq:literal,
        overlap = $overlap:literal
    ) => {
        mod shared_impl {
            use std::collections::{HashMap, HashSet};

            use async_trait::async_trait;
            use sqlx::{AssertSqlSafe, Row};

            use super::$store;
            use $crate::domain::{LinkId, Product, ProductSet};
            use $crate::store::records::{
                self, bits, ceil_ms, decode_prev, encode_prev, finish, from_bits, ms, multi_row,
                opt_ms, opt_time, time, Existing, RawLink, RawSchedule,
            };
            use $crate::store::sql::{self, *};
            use $crate::store::{
                AttemptId, AttemptRecord, Claim, DueUpdate, Intent, LinkPatch, LinkRecord,
                LinkSpec, Outcome, OwnPatch, Store, StoreError, SyncReport, Timestamp,
            };

            /// Multi-row statement text in this backend's cheapest parameter style.
            fn rows(head: &str, row: &str, n: usize, tail: &str) -> String {
                multi_row(head, row, n, tail, $numbered)
            }

            type Db = $db;

            /// Binds a product patch's 14 columns in the order of
            /// `patch_schedule` and `BULK_PATCH_SCHEDULE_ROW` (after the
            /// link and product): a `has_x` flag before each settable value.
            fn bind_product_patch<'q>(
                q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
                p: &'q $crate::store::ProductPatch,
            ) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
                q.bind(p.last_requested_at.is_some())
                    .bind(opt_ms(p.last_requested_at.flatten()))
                    .bind(opt_ms(p.server_refreshed_at))
                    .bind(opt_ms(p.server_attempted_at))
                    .bind(p.next_due_at.is_some())
                    .bind(opt_ms(p.next_due_at.flatten()))
                    .bind(p.failures.is_some())
                    .bind(p.failures.map(|f| f.min(i32::MAX as u32) as i32))
                    .bind(p.backoff_until.is_some())
                    .bind(opt_ms(p.backoff_until.flatten()))
                    .bind(p.parked_reason.is_some())
                    .bind(p.parked_reason.clone().flatten())
                    .bind(p.refresh_requested.is_some())
                    .bind(p.refresh_requested.unwrap_or(false))
            }
            type Conn = <Db as sqlx::Database>::Connection;
            type DbRow = <Db as sqlx::Database>::Row;

            /// Rows of `{head} IN (ids){tail}`, queried `ID_ROWS` ids at a time.
            async fn select_in(conn: &mut Conn, head: &str, tail: &str, ids: &[&str]) -> Result<Vec<DbRow>, StoreError> {
                let mut out = Vec::new();
                for chunk in ids.chunks(ID_ROWS) {
                    let text = rows(&format!("{head} IN ("), "?", chunk.len(), &format!("){tail}"));
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(&mut *conn).await?);
                }
                Ok(out)
            }

            fn raw_link(row: &DbRow) -> Result<RawLink, sqlx::Error> {
                Ok(RawLink {
                    id: row.try_get(0)?,
                    products: row.try_get(1)?,
                    cadence: row.try_get(2)?,
                    source: row.try_get(3)?,
                    state: row.try_get(4)?,
                    reason: row.try_get(5)?,
                    removed: row.try_get(6)?,
                    created_at: row.try_get(7)?,
                    updated_at: row.try_get(8)?,
                    backoff_until: row.try_get(9)?,
                    failures: row.try_get(10)?,
                    change_seq: row.try_get(11)?,
                })
            }

            fn raw_schedule(row: &DbRow, product: String) -> Result<RawSchedule, sqlx::Error> {
                Ok(RawSchedule {
                    product,
                    last_requested_at: row.try_get(13)?,
                    server_refreshed_at: row.try_get(14)?,
                    server_attempted_at: row.try_get(15)?,
                    next_due_at: row.try_get(16)?,
                    failures: row.try_get(17)?,
                    backoff_until: row.try_get(18)?,
                    parked_reason: row.try_get(19)?,
                    refresh_requested: row.try_get(20)?,
                })
            }

            /// Folds joined link/schedule rows (ordered or grouped by link id)
            /// into records; returns the last link id seen.
            fn group(rows: &[DbRow], out: &mut Vec<LinkRecord>) -> Result<Option<String>, StoreError> {
                let mut current: Option<LinkRecord> = None;
                let mut last = None;
                for row in rows {
                    let id: &str = row.try_get(0)?;
                    if current.as_ref().map(|c| c.id.as_str()) != Some(id) {
                        if let Some(done) = current.take() {
                            out.push(finish(done));
                        }
                        current = Some(raw_link(row)?.into_record()?);
                        last = Some(id.to_owned());
                    }
                    let product: Option<String> = row.try_get(12)?;
                    if let (Some(product), Some(link)) = (product, current.as_mut()) {
                        link.schedules.push(raw_schedule(row, product)?.into_record()?);
                    }
                }
                if let Some(done) = current {
                    out.push(finish(done));
                }
                Ok(last)
            }

            async fn bump(conn: &mut Conn) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar(
                    "UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                )
                .fetch_one(conn)
                .await?)
            }

            /// The guard of a claimed intent (see "Several replicas" in the
            /// store docs): locks the link and its schedule rows without
            /// waiting, checks the lease and the known times, and takes the
            /// lease. False (nothing written) when the claim is refused.
            async fn claim(conn: &mut Conn, intent: &Intent, claim: &Claim) -> Result<bool, StoreError> {
                let lease = sqlx::query(concat!(
                    "SELECT lease_owner, lease_until FROM links WHERE id = $1 AND removed = FALSE",
                    $lock
                ))
                .bind(intent.link.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                let Some(lease) = lease else {
                    // Unknown, removed, or being written by another transaction.
                    return Ok(false);
                };
                let owner: Option<String> = lease.try_get(0)?;
                let until: Option<i64> = lease.try_get(1)?;
                if let (Some(owner), Some(until)) = (owner, until) {
                    if owner != claim.owner && until > ms(intent.at) {
                        return Ok(false);
                    }
                }
                let rows = sqlx::query(concat!(
                    "SELECT product, last_requested_at FROM schedules WHERE link_id = $1",
                    $lock
                ))
                .bind(intent.link.as_str())
                .fetch_all(&mut *conn)
                .await?;
                for product in intent.products.iter() {
                    // A row missing here is being written elsewhere (schedule
                    // rows exist for every product of a stored link): refuse.
                    let Some(row) = rows.iter().find(|r| {
                        r.try_get::<&str, _>(0).is_ok_and(|p| p == product.as_str())
                    }) else {
                        return Ok(false);
                    };
                    let stored: Option<i64> = row.try_get(1)?;
                    let known = claim
                        .known
                        .iter()
                        .find(|(p, _)| *p == product)
                        .and_then(|(_, at)| *at)
                        .map(ceil_ms);
                    match (stored, known) {
                        (None, _) => {}
                        (Some(stored), Some(known)) if stored <= known => {}
                        _ => return Ok(false),
                    }
                }
                sqlx::query(concat!(
                    "UPDATE links SET lease_owner = $2, lease_until = $3, intent_seq = ",
                    $next_seq,
                    " WHERE id = $1"
                ))
                .bind(intent.link.as_str())
                .bind(claim.owner.as_str())
                .bind(ms(claim.lease_until))
                .execute(&mut *conn)
                .await?;
                Ok(true)
            }

            /// Link rows and their schedule rows; the bulk form is the
            /// backend's own (`write_links` in its module).
            async fn upsert_links(
                conn: &mut Conn,
                specs: &[&LinkSpec],
                now: Timestamp,
                change_seq: i64,
            ) -> Result<(), StoreError> {
                super::write_links(conn, specs, now, change_seq).await
            }

            /// Applies a patch; false (and nothing written) if the link is unknown.
            async fn patch(
                conn: &mut Conn,
                link: &LinkId,
                patch: &LinkPatch,
                now: Timestamp,
                change_seq: Option<i64>,
            ) -> Result<bool, StoreError> {
                let (state, reason) = match &patch.state {
                    Some((s, r)) => (Some(s.as_str()), r.as_deref()),
                    None => (None, None),
                };
                let text = patch_link(patch.state.is_some(), change_seq.is_some());
                let found = sqlx::query(AssertSqlSafe(text))
                    .bind(link.as_str())
                    .bind(patch.state.is_some())
                    .bind(state)
                    .bind(reason)
                    .bind(patch.backoff_until.is_some())
                    .bind(opt_ms(patch.backoff_until.flatten()))
                    .bind(patch.failures.is_some())
                    .bind(patch.failures.map(|f| f.min(i32::MAX as u32) as i32))
                    .bind(change_seq.is_some())
                    .bind(change_seq)
                    .bind(ms(now))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    > 0;
                if !found {
                    return Ok(false);
                }
                for (product, p) in &patch.products {
                    sqlx::query(ENSURE_SCHEDULE)
                        .bind(link.as_str())
                        .bind(product.as_str())
                        .execute(&mut *conn)
                        .await?;
                    let text = patch_schedule(p.last_requested_at.is_some(), p.next_due_at.is_some());
                    let q = sqlx::query(AssertSqlSafe(text))
                        .bind(link.as_str())
                        .bind(product.as_str());
                    bind_product_patch(q, p)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(true)
            }

            /// Whether `items` name each link at most once.
            fn distinct<'a>(mut ids: impl Iterator<Item = &'a str>) -> bool {
                let mut seen = HashSet::new();
                ids.all(|id| seen.insert(id))
            }

            /// The claims of a batch of intents of distinct links, checked
            /// together: the same guard as [`claim`] for each (the link and
            /// schedule rows locked without waiting, the lease, the known
            /// times; then the lease taken and `intent_seq` stamped), in three
            /// statements per chunk instead of three per intent. Whether each
            /// intent may be written; one without a claim always may.
            async fn claims_bulk(conn: &mut Conn, intents: &[Intent]) -> Result<Vec<bool>, StoreError> {
                let mut ok: Vec<bool> = intents.iter().map(|i| i.claim.is_none()).collect();
                let claimed: Vec<(usize, &Intent, &Claim)> = intents
                    .iter()
                    .enumerate()
                    .filter_map(|(n, i)| i.claim.as_ref().map(|c| (n, i, c)))
                    .collect();
                if claimed.is_empty() {
                    return Ok(ok);
                }
                // Leases: a link not returned is unknown, removed, or being
                // written by another transaction.
                let mut leases: HashMap<String, (Option<String>, Option<i64>)> = HashMap::new();
                let ids: Vec<&str> = claimed.iter().map(|(_, i, _)| i.link.as_str()).collect();
                let head = "SELECT id, lease_owner, lease_until FROM links WHERE removed = FALSE AND id";
                for row in &select_in(conn, head, $lock, &ids).await? {
                    leases.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
                }
                let free: Vec<(usize, &Intent, &Claim)> = claimed
                    .into_iter()
                    .filter(|(_, i, c)| match leases.get(i.link.as_str()) {
                        None => false,
                        Some((Some(owner), Some(until))) => *owner == c.owner || *until <= ms(i.at),
                        Some(_) => true,
                    })
                    .collect();
                // Known times: each product's stored time must be NULL or at
                // most what the replica believed; a missing row is being
                // written elsewhere.
                let mut stored: HashMap<(String, String), Option<i64>> = HashMap::new();
                let ids: Vec<&str> = free.iter().map(|(_, i, _)| i.link.as_str()).collect();
                let head = "SELECT link_id, product, last_requested_at FROM schedules WHERE link_id";
                for row in &select_in(conn, head, $lock, &ids).await? {
                    stored.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
                }
                let accepted: Vec<(usize, &Intent, &Claim)> = free
                    .into_iter()
                    .filter(|(_, i, c)| {
                        i.products.iter().all(|product| {
                            let key = (i.link.as_str().to_owned(), product.as_str().to_owned());
                            let Some(at) = stored.get(&key) else {
                                return false;
                            };
                            let known = c
                                .known
                                .iter()
                                .find(|(p, _)| *p == product)
                                .and_then(|(_, at)| *at)
                                .map(ceil_ms);
                            match (*at, known) {
                                (None, _) => true,
                                (Some(stored), Some(known)) => stored <= known,
                                (Some(_), None) => false,
                            }
                        })
                    })
                    .collect();
                for chunk in accepted.chunks(BATCH_ROWS) {
                    let text = rows(
                        concat!("UPDATE links SET lease_owner = v.column2, lease_until = v.column3, intent_seq = ", $next_seq, " FROM (VALUES "),
                        BULK_LEASE_ROW,
                        chunk.len(),
                        BULK_LEASE_TAIL,
                    );
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for (_, i, c) in chunk {
                        q = q
                            .bind(i.link.as_str())
                            .bind(c.owner.as_str())
                            .bind(ms(c.lease_until));
                    }
                    q.execute(&mut *conn).await?;
                }
                for (n, _, _) in accepted {
                    ok[n] = true;
                }
                Ok(ok)
            }

            /// `record_intents` in three statements per chunk (read the
            /// previous times, insert the attempts, move the times) instead of
            /// 2 + products per intent. Links must be distinct, and claims
            /// already taken (see [`claims_bulk`]).
            async fn intents_bulk(conn: &mut Conn, intents: &[&Intent]) -> Result<Vec<AttemptId>, StoreError> {
                let mut prev_of: HashMap<&str, Vec<(Product, Option<i64>)>> = intents
                    .iter()
                    .map(|i| (i.link.as_str(), i.products.iter().map(|p| (p, None)).collect()))
                    .collect();
                let ids: Vec<&str> = intents.iter().map(|i| i.link.as_str()).collect();
                let head = "SELECT link_id, product, last_requested_at FROM schedules WHERE link_id";
                for row in &select_in(conn, head, "", &ids).await? {
                    let link: String = row.try_get(0)?;
                    let product: String = row.try_get(1)?;
                    let at: Option<i64> = row.try_get(2)?;
                    if let Some(prev) = prev_of.get_mut(link.as_str()) {
                        if let Some(slot) = prev.iter_mut().find(|(p, _)| p.as_str() == product) {
                            slot.1 = at;
                        }
                    }
                }
                let mut id_of: HashMap<String, i64> = HashMap::with_capacity(intents.len());
                for chunk in intents.chunks(BATCH_ROWS) {
                    let text = rows(
                        "INSERT INTO attempts (link_id, products, intent_at, prev_requested, replica) VALUES ",
                        "(?, ?, ?, ?, ?)",
                        chunk.len(),
                        " RETURNING id, link_id",
                    );
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for i in chunk {
                        q = q
                            .bind(i.link.as_str())
                            .bind(bits(i.products))
                            .bind(ms(i.at))
                            .bind(encode_prev(&prev_of[i.link.as_str()]))
                            .bind(i.claim.as_ref().map(|c| c.owner.as_str()));
                    }
                    for row in &q.fetch_all(&mut *conn).await? {
                        id_of.insert(row.try_get(1)?, row.try_get(0)?);
                    }
                }
                let times: Vec<(&str, &'static str, i64)> = intents
                    .iter()
                    .flat_map(|i| i.products.iter().map(move |p| (i.link.as_str(), p.as_str(), ms(i.at))))
                    .collect();
                for chunk in times.chunks(BATCH_ROWS) {
                    let text = rows(
                        "INSERT INTO schedules (link_id, product, last_requested_at) VALUES ",
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

            /// Whether an outcome can join a batched run: no 429 restore (it
            /// reads the attempt row back) and each product patched once.
            fn bulk_ok(o: &Outcome) -> bool {
                !o.patch.restore_requested
                    && distinct(o.patch.products.iter().map(|(p, _)| p.as_str()))
            }

            /// A run of outcomes of distinct links, one statement per table
            /// and chunk; the same effect as [`outcome_one`] for each in turn.
            async fn outcomes_bulk(conn: &mut Conn, run: &[Outcome]) -> Result<(), StoreError> {
                // Finished attempt ids and the replica that claimed each.
                let mut finished: HashMap<i64, Option<String>> = HashMap::new();
                for chunk in run.chunks(BATCH_ROWS) {
                    let text = rows(BULK_FINISH_HEAD, BULK_FINISH_ROW, chunk.len(), BULK_FINISH_TAIL);
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for o in chunk {
                        q = q
                            .bind(o.attempt)
                            .bind(o.label.as_str())
                            .bind(o.status.map(i32::from))
                            .bind(o.detail.as_deref())
                            .bind(ms(o.at))
                            .bind(o.link.as_str());
                    }
                    for row in &q.fetch_all(&mut *conn).await? {
                        finished.insert(row.try_get::<i64, _>(0)?, row.try_get(1)?);
                    }
                }
                for o in run.iter().filter(|o| !finished.contains_key(&o.attempt)) {
                    tracing::warn!(
                        link = %o.link,
                        attempt = o.attempt,
                        "outcome for an unknown or pruned attempt; applying its patch only"
                    );
                }
                // The link rows next (as every other writer locks them), and
                // only each attempt's replica's lease.
                let releases: Vec<(&str, &str)> = run
                    .iter()
                    .filter_map(|o| match finished.get(&o.attempt) {
                        Some(Some(replica)) => Some((o.link.as_str(), replica.as_str())),
                        _ => None,
                    })
                    .collect();
                for chunk in releases.chunks(BATCH_ROWS) {
                    let text = rows(
                        concat!("UPDATE links SET lease_owner = NULL, lease_until = NULL, intent_seq = ", $next_seq, " FROM (VALUES "),
                        BULK_RELEASE_ROW,
                        chunk.len(),
                        BULK_RELEASE_TAIL,
                    );
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for (link, replica) in chunk {
                        q = q.bind(*link).bind(*replica);
                    }
                    q.execute(&mut *conn).await?;
                }
                let mut found: HashSet<String> = HashSet::new();
                for chunk in run.chunks(BATCH_ROWS) {
                    let state = chunk.iter().any(|o| o.patch.state.is_some());
                    let text = rows(bulk_patch_link_head(state), BULK_PATCH_LINK_ROW, chunk.len(), BULK_PATCH_LINK_TAIL);
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for o in chunk {
                        let p = &o.patch;
                        let (state, reason) = match &p.state {
                            Some((s, r)) => (Some(s.as_str()), r.as_deref()),
                            None => (None, None),
                        };
                        q = q
                            .bind(o.link.as_str())
                            .bind(p.state.is_some())
                            .bind(state)
                            .bind(reason)
                            .bind(p.backoff_until.is_some())
                            .bind(opt_ms(p.backoff_until.flatten()))
                            .bind(p.failures.is_some())
                            .bind(p.failures.map(|f| f.min(i32::MAX as u32) as i32))
                            .bind(ms(o.at));
                    }
                    for row in &q.fetch_all(&mut *conn).await? {
                        found.insert(row.try_get(0)?);
                    }
                }
                let products: Vec<(&str, &$crate::store::ProductPatch, Product)> = run
                    .iter()
                    .filter(|o| found.contains(o.link.as_str()))
                    .flat_map(|o| o.patch.products.iter().map(move |(p, pp)| (o.link.as_str(), pp, *p)))
                    .collect();
                for chunk in products.chunks(BATCH_ROWS) {
                    let text = rows(BULK_ENSURE_SCHEDULE_HEAD, UPSERT_SCHEDULE_ROW, chunk.len(), BULK_ENSURE_SCHEDULE_TAIL);
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for (link, _, product) in chunk {
                        q = q.bind(*link).bind(product.as_str());
                    }
                    q.execute(&mut *conn).await?;
                    let requested = chunk.iter().any(|(_, p, _)| p.last_requested_at.is_some());
                    let due = chunk.iter().any(|(_, p, _)| p.next_due_at.is_some());
                    let text = rows(bulk_patch_schedule_head(requested, due), BULK_PATCH_SCHEDULE_ROW, chunk.len(), BULK_PATCH_SCHEDULE_TAIL);
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for (link, p, product) in chunk {
                        q = bind_product_patch(q.bind(*link).bind(product.as_str()), p);
                    }
                    q.execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// One outcome: its attempt row, a 429's restore, its patch.
            async fn outcome_one(conn: &mut Conn, o: &Outcome) -> Result<(), StoreError> {
                let row = sqlx::query(
                    "UPDATE attempts SET outcome = $2, status = $3, detail = $4, \
                     finished_at = $5 WHERE id = $1 AND link_id = $6 \
                     RETURNING intent_at, prev_requested, replica",
                )
                .bind(o.attempt)
                .bind(o.label.as_str())
                .bind(o.status.map(i32::from))
                .bind(o.detail.as_deref())
                .bind(ms(o.at))
                .bind(o.link.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                // The link row first (as every other writer locks it), and
                // only this attempt's replica's lease.
                let replica: Option<String> = match &row {
                    Some(row) => row.try_get(2)?,
                    None => None,
                };
                if let Some(replica) = replica {
                    sqlx::query(concat!(
                        "UPDATE links SET lease_owner = NULL, lease_until = NULL, \
                         intent_seq = ",
                        $next_seq,
                        " WHERE id = $1 AND lease_owner = $2"
                    ))
                    .bind(o.link.as_str())
                    .bind(replica)
                    .execute(&mut *conn)
                    .await?;
                }
                match (&row, o.patch.restore_requested) {
                    (Some(row), true) => {
                        let intent_at: i64 = row.try_get(0)?;
                        let prev: String = row.try_get(1)?;
                        for (product, at) in decode_prev(&prev)? {
                            // Only where no later intent has moved it since.
                            sqlx::query(
                                "UPDATE schedules SET last_requested_at = $3 \
                                 WHERE link_id = $1 AND product = $2 AND last_requested_at = $4",
                            )
                            .bind(o.link.as_str())
                            .bind(product.as_str())
                            .bind(at)
                            .bind(intent_at)
                            .execute(&mut *conn)
                            .await?;
                        }
                    }
                    (None, _) => tracing::warn!(
                        link = %o.link,
                        attempt = o.attempt,
                        "outcome for an unknown or pruned attempt; applying its patch only"
                    ),
                    (Some(_), false) => {}
                }
                patch(conn, &o.link, &o.patch, o.at, None).await?;
                Ok(())
            }

            /// The intents of `record_batch`: claims checked first, then
            /// the accepted intents written; `None` for a refused claim.
            async fn write_intents(conn: &mut Conn, intents: &[Intent]) -> Result<Vec<Option<AttemptId>>, StoreError> {
                if intents.is_empty() {
                    return Ok(Vec::new());
                }
                if $bulk && intents.len() > 1 && distinct(intents.iter().map(|i| i.link.as_str())) {
                    // Claims first (all links distinct, so checking them
                    // together equals checking each before its write),
                    // then the accepted intents in bulk.
                    let ok = claims_bulk(conn, intents).await?;
                    let accepted: Vec<&Intent> = intents
                        .iter()
                        .zip(&ok)
                        .filter_map(|(i, ok)| ok.then_some(i))
                        .collect();
                    let mut ids = intents_bulk(conn, &accepted).await?.into_iter();
                    return Ok(ok.iter().map(|ok| if *ok { ids.next() } else { None }).collect());
                }
                let mut ids = Vec::with_capacity(intents.len());
                for intent in intents {
                    if let Some(c) = &intent.claim {
                        if !claim(conn, intent, c).await? {
                            ids.push(None);
                            continue;
                        }
                    }
                    let rows = sqlx::query(
                        "SELECT product, last_requested_at FROM schedules WHERE link_id = $1",
                    )
                    .bind(intent.link.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut prev: Vec<(Product, Option<i64>)> =
                        intent.products.iter().map(|p| (p, None)).collect();
                    for row in &rows {
                        let product: String = row.try_get(0)?;
                        let at: Option<i64> = row.try_get(1)?;
                        if let Some(slot) = prev.iter_mut().find(|(p, _)| p.as_str() == product) {
                            slot.1 = at;
                        }
                    }
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO attempts (link_id, products, intent_at, prev_requested, replica) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(intent.link.as_str())
                    .bind(bits(intent.products))
                    .bind(ms(intent.at))
                    .bind(encode_prev(&prev))
                    .bind(intent.claim.as_ref().map(|c| c.owner.as_str()))
                    .fetch_one(&mut *conn)
                    .await?;
                    for product in intent.products.iter() {
                        sqlx::query(
                            "INSERT INTO schedules (link_id, product, last_requested_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (link_id, product) \
                             DO UPDATE SET last_requested_at = excluded.last_requested_at",
                        )
                        .bind(intent.link.as_str())
                        .bind(product.as_str())
                        .bind(ms(intent.at))
                        .execute(&mut *conn)
                        .await?;
                    }
                    ids.push(Some(id));
                }
                Ok(ids)
            }

            /// The outcomes of `record_batch`, in order: runs of outcomes of
            /// distinct links in bulk, a 429 (restore) on its own in its place.
            async fn write_outcomes(conn: &mut Conn, outcomes: &[Outcome]) -> Result<(), StoreError> {
                let mut i = 0;
                while i < outcomes.len() {
                    let start = i;
                    let mut seen = HashSet::new();
                    while $bulk
                        && i < outcomes.len()
                        && bulk_ok(&outcomes[i])
                        && seen.insert(outcomes[i].link.as_str())
                    {
                        i += 1;
                    }
                    if i - start > 1 {
                        outcomes_bulk(conn, &outcomes[start..i]).await?;
                    } else {
                        i = start + 1;
                        outcome_one(conn, &outcomes[start]).await?;
                    }
                }
                Ok(())
            }

            impl $store {
                /// Opens a write transaction on the writer connection.
                ///
                /// When a COMMIT fails with SQLITE_FULL (a full disk) or an
                /// I/O error, SQLite rolls the transaction back by itself;
                /// sqlx's own ROLLBACK then fails and its count of open
                /// transactions stays at one, so every later `BEGIN` was
                /// refused before reaching SQLite ("begin_with at non-zero
                /// transaction depth") and the writer never recovered once
                /// space was back (issue 14). Such a connection is closed
                /// and the transaction begun on a fresh one.
                async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
                    match self.writer.begin_with($begin).await {
                        Err(sqlx::Error::InvalidSavePointStatement) => {
                            tracing::warn!("the store's writer connection was left inside a failed transaction; opening a new one");
                            let mut stuck = self.writer.acquire().await?;
                            stuck.close_on_drop();
                            drop(stuck);
                            Ok(self.writer.begin_with($begin).await?)
                        }
                        begun => Ok(begun?),
                    }
                }

                async fn read_existing(&self) -> Result<HashMap<String, Existing>, StoreError> {
                    let mut existing = HashMap::new();
                    let mut after = String::new();
                    loop {
                        let rows = sqlx::query(
                            "SELECT id, products, cadence, source, removed FROM links \
                             WHERE id > $1 ORDER BY id LIMIT $2",
                        )
                        .bind(&after)
                        .bind(sql::PAGE)
                        .fetch_all(&self.pool)
                        .await?;
                        for row in &rows {
                            existing.insert(
                                row.try_get(0)?,
                                Existing {
                                    products: row.try_get(1)?,
                                    cadence: row.try_get(2)?,
                                    source: row.try_get(3)?,
                                    removed: row.try_get(4)?,
                                },
                            );
                        }
                        match rows.last() {
                            Some(row) if rows.len() as i64 == sql::PAGE => after = row.try_get(0)?,
                            _ => return Ok(existing),
                        }
                    }
                }
            }

            #[async_trait]
            impl Store for $store {
                #[tracing::instrument(skip_all, fields(revision = %revision, links = links.len()))]
                async fn sync_config(
                    &self,
                    revision: &str,
                    links: &[LinkSpec],
                    now: Timestamp,
                ) -> Result<SyncReport, StoreError> {
                    // Replicas starting together all sync the same config: the
                    // first does the work, the others wait for it and then
                    // find the revision synced.
                    let lock = super::lock_sync(&self.pool).await?;
                    let stored: Option<String> =
                        sqlx::query_scalar("SELECT revision FROM config_revision WHERE id = 1")
                            .fetch_optional(&self.pool)
                            .await?;
                    if stored.as_deref() == Some(revision) {
                        return Ok(SyncReport {
                            unchanged: links.len() as u64,
                            skipped_same_revision: true,
                            ..SyncReport::default()
                        });
                    }
                    let existing = self.read_existing().await?;
                    let plan = records::plan_sync(&existing, links);
                    drop(existing);
                    for chunk in plan.upserts.chunks(SYNC_TX_LINKS) {
                        let mut tx = self.begin_write().await?;
                        upsert_links(&mut tx, chunk, now, 0).await?;
                        tx.commit().await?;
                    }
                    for chunk in plan.removed.chunks(SYNC_TX_LINKS) {
                        let mut tx = self.begin_write().await?;
                        for ids in chunk.chunks(ID_ROWS) {
                            let text = multi_row(
                                "UPDATE links SET removed = TRUE, updated_at = ? WHERE id IN (",
                                "?",
                                ids.len(),
                                ")",
                                $numbered,
                            );
                            let mut q = sqlx::query(AssertSqlSafe(text)).bind(ms(now));
                            for id in ids {
                                q = q.bind(id.as_str());
                            }
                            q.execute(&mut *tx).await?;
                            let text = multi_row($crate::store::sql::CLEAR_DUE_HEAD, "?", ids.len(), ")", $numbered);
                            let mut q = sqlx::query(AssertSqlSafe(text));
                            for id in ids {
                                q = q.bind(id.as_str());
                            }
                            q.execute(&mut *tx).await?;
                        }
                        tx.commit().await?;
                    }
                    if plan.upserts.len() + plan.removed.len() >= BULK_CHANGE {
                        super::after_bulk_write(&self.writer).await?;
                    }
                    // Recorded last: a crash part-way leaves the old revision,
                    // so the next start repeats the (idempotent) diff.
                    sqlx::query(
                        "INSERT INTO config_revision (id, revision, synced_at) VALUES (1, $1, $2) \
                         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, \
                         synced_at = excluded.synced_at",
                    )
                    .bind(revision)
                    .bind(ms(now))
                    .execute(&self.writer)
                    .await?;
                    if let Some(lock) = lock {
                        lock.commit().await?;
                    }
                    tracing::info!(report = ?plan.report, "configuration synced");
                    Ok(plan.report)
                }

                #[tracing::instrument(skip_all, fields(link = %spec.id))]
                async fn upsert_link(&self, spec: &LinkSpec, now: Timestamp) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
                    let seq = bump(&mut tx).await?;
                    upsert_links(&mut tx, &[spec], now, seq).await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(link = %id))]
                async fn remove_link(&self, id: &LinkId, now: Timestamp) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let seq = bump(&mut tx).await?;
                    let found = sqlx::query(
                        "UPDATE links SET removed = TRUE, updated_at = $2, change_seq = $3 \
                         WHERE id = $1 AND removed = FALSE",
                    )
                    .bind(id.as_str())
                    .bind(ms(now))
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0;
                    if found {
                        sqlx::query(
                            "UPDATE schedules SET next_due_at = NULL \
                             WHERE link_id = $1 AND next_due_at IS NOT NULL",
                        )
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                    }
                    Ok(found)
                }

                #[tracing::instrument(skip_all)]
                async fn load_links(&self) -> Result<Vec<LinkRecord>, StoreError> {
                    let mut out = Vec::new();
                    let mut after = String::new();
                    while let Some((page, last)) = self.load_links_page(&after).await? {
                        out.extend(page);
                        after = last;
                    }
                    Ok(out)
                }

                async fn load_links_page(
                    &self,
                    after: &str,
                ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError> {
                    let row = sqlx::query($json_page)
                        .bind(after)
                        .bind(sql::PAGE)
                        .fetch_one(&self.pool)
                        .await?;
                    let last: Option<String> = row.try_get(1)?;
                    let Some(last) = last else {
                        return Ok(None);
                    };
                    let doc: String = row.try_get(0)?;
                    Ok(Some((records::parse_page(&doc)?, last)))
                }

                async fn change_mark(&self) -> Result<i64, StoreError> {
                    Ok(sqlx::query_scalar("SELECT seq FROM change_counter WHERE id = 1")
                        .fetch_one(&self.pool)
                        .await?)
                }

                #[tracing::instrument(skip_all, fields(link = %id))]
                async fn load_link(&self, id: &LinkId) -> Result<Option<LinkRecord>, StoreError> {
                    let rows = sqlx::query(AssertSqlSafe(select_one()))
                        .bind(id.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::with_capacity(1);
                    group(&rows, &mut out)?;
                    Ok(out.pop())
                }

                #[tracing::instrument(skip_all, fields(intents = intents.len()))]
                async fn record_intents(
                    &self,
                    intents: &[Intent],
                ) -> Result<Vec<Option<AttemptId>>, StoreError> {
                    self.record_batch(&[], &[], intents).await
                }

                #[tracing::instrument(skip_all, fields(outcomes = outcomes.len()))]
                async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
                    self.record_batch(outcomes, &[], &[]).await.map(|_| ())
                }

                #[tracing::instrument(skip_all, fields(outcomes = outcomes.len(), patches = patches.len(), intents = intents.len()))]
                async fn record_batch(
                    &self,
                    outcomes: &[Outcome],
                    patches: &[OwnPatch],
                    intents: &[Intent],
                ) -> Result<Vec<Option<AttemptId>>, StoreError> {
                    let mut tx = self.begin_write().await?;
                    write_outcomes(&mut tx, outcomes).await?;
                    for p in patches {
                        patch(&mut tx, &p.link, &p.patch, p.at, None).await?;
                    }
                    let ids = write_intents(&mut tx, intents).await?;
                    tx.commit().await?;
                    Ok(ids)
                }

                #[tracing::instrument(skip_all, fields(link = %link))]
                async fn apply_patch(
                    &self,
                    link: &LinkId,
                    p: &LinkPatch,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let seq = bump(&mut tx).await?;
                    let found = patch(&mut tx, link, p, now, Some(seq)).await?;
                    if found {
                        tx.commit().await?;
                    }
                    Ok(found)
                }

                #[tracing::instrument(skip_all, fields(link = %id, paused))]
                async fn set_paused(
                    &self,
                    id: &LinkId,
                    paused: bool,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let seq = bump(&mut tx).await?;
                    let text = if paused {
                        "UPDATE links SET state = 'paused', updated_at = $2, change_seq = $3 WHERE id = $1"
                    } else {
                        "UPDATE links SET state = 'active', reason = NULL, updated_at = $2, \
                         change_seq = $3 WHERE id = $1"
                    };
                    let found = sqlx::query(text)
                        .bind(id.as_str())
                        .bind(ms(now))
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0;
                    if !found {
                        return Ok(false);
                    }
                    if !paused {
                        sqlx::query("UPDATE schedules SET parked_reason = NULL WHERE link_id = $1")
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                #[tracing::instrument(skip_all, fields(link = %id, products = %products))]
                async fn request_refresh(
                    &self,
                    id: &LinkId,
                    products: ProductSet,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let stored: Option<i32> =
                        sqlx::query_scalar("SELECT products FROM links WHERE id = $1")
                            .bind(id.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(stored) = stored.map(from_bits) else {
                        return Ok(false);
                    };
                    let wanted: ProductSet = if products.is_empty() {
                        stored
                    } else {
                        products.iter().filter(|p| stored.contains(*p)).collect()
                    };
                    let seq = bump(&mut tx).await?;
                    sqlx::query("UPDATE links SET change_seq = $2, updated_at = $3 WHERE id = $1")
                        .bind(id.as_str())
                        .bind(seq)
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                    for product in wanted.iter() {
                        sqlx::query(
                            "INSERT INTO schedules (link_id, product, refresh_requested) \
                             VALUES ($1, $2, TRUE) ON CONFLICT (link_id, product) \
                             DO UPDATE SET refresh_requested = TRUE",
                        )
                        .bind(id.as_str())
                        .bind(product.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn changes_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError> {
                    // The counter first: a change committed between the two
                    // reads is returned now *and* next time, never missed.
                    let high: i64 = sqlx::query_scalar("SELECT seq FROM change_counter WHERE id = 1")
                        .fetch_one(&self.pool)
                        .await?;
                    if high <= seq {
                        return Ok((high.max(seq), Vec::new()));
                    }
                    let rows = sqlx::query(AssertSqlSafe(select_changed()))
                        .bind(seq)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::new();
                    group(&rows, &mut out)?;
                    Ok((high, out))
                }

                async fn claims_since(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError> {
                    let high: i64 =
                        sqlx::query_scalar("SELECT COALESCE(MAX(intent_seq), 0) FROM links")
                            .fetch_one(&self.pool)
                            .await?;
                    if high <= seq {
                        return Ok((high, Vec::new()));
                    }
                    let rows = sqlx::query(AssertSqlSafe(select_claimed()))
                        .bind((seq - $overlap).max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::new();
                    group(&rows, &mut out)?;
                    Ok((high, out))
                }

                #[tracing::instrument(skip_all, fields(link = %id))]
                async fn attempts(&self, id: &LinkId, limit: u32) -> Result<Vec<AttemptRecord>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT id, products, intent_at, prev_requested, outcome, status, detail, \
                         finished_at FROM attempts WHERE link_id = $1 \
                         ORDER BY intent_at DESC, id DESC LIMIT $2",
                    )
                    .bind(id.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            let prev: String = row.try_get(3)?;
                            let status: Option<i32> = row.try_get(5)?;
                            Ok(AttemptRecord {
                                id: row.try_get(0)?,
                                link: id.clone(),
                                products: from_bits(row.try_get(1)?),
                                intent_at: time(row.try_get(2)?)?,
                                prev_requested: decode_prev(&prev)?
                                    .into_iter()
                                    .map(|(p, t)| Ok((p, opt_time(t)?)))
                                    .collect::<Result<_, StoreError>>()?,
                                outcome: row.try_get(4)?,
                                status: status.and_then(|s| u16::try_from(s).ok()),
                                detail: row.try_get(6)?,
                                finished_at: opt_time(row.try_get(7)?)?,
                            })
                        })
                        .collect()
                }

                #[tracing::instrument(skip_all)]
                async fn prune_attempts(&self, older_than: Timestamp) -> Result<u64, StoreError> {
                    Ok(sqlx::query("DELETE FROM attempts WHERE intent_at < $1")
                        .bind(ms(older_than))
                        .execute(&self.writer)
                        .await?
                        .rows_affected())
                }

                #[tracing::instrument(skip_all, fields(updates = updates.len()))]
                async fn set_next_due(&self, updates: &[DueUpdate]) -> Result<(), StoreError> {
                    for chunk in updates.chunks(SYNC_TX_LINKS) {
                        let mut tx = self.begin_write().await?;
                        super::write_due(&mut tx, chunk).await?;
                        tx.commit().await?;
                    }
                    Ok(())
                }

                #[tracing::instrument(skip_all)]
                async fn remember_delivery(
                    &self,
                    key: &str,
                    expires_at: Timestamp,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(PRUNE_DELIVERIES)
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                    let first = sqlx::query(REMEMBER_DELIVERY)
                        .bind(key)
                        .bind(ms(expires_at))
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    tx.commit().await?;
                    Ok(first)
                }

                #[tracing::instrument(skip_all)]
                async fn forget_delivery(&self, key: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM webhook_deliveries WHERE idempotency_key = $1")
                        .bind(key)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn verify_readable(&self) -> Result<(), StoreError> {
                    super::verify_readable(&self.pool).await
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                fn describe(&self) -> String {
                    self.location.clone()
                }
            }
        }
    };
}

pub(crate) use impl_sql_store;
