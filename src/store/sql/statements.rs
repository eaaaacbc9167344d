//! The statement texts the two backends share. linkfresh only uses the
//! subset SQLite and PostgreSQL agree on (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`, `TRUE`/`FALSE`, `CASE`, `UPDATE ... FROM (VALUES ...)`);
//! what differs lives in [`Dialect`](super::Dialect).
//!
//! Optional fields of a patch are applied with `CASE WHEN $flag THEN $value
//! ELSE column END`, so patches share a few prepared statements: one per
//! table and choice of whether the indexed columns are assigned at all (see
//! `link_assignments`). Texts that vary are built once (`LazyLock`): the
//! patches run on the daemon's write path.

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
/// attempt's replica still holds the lease. The head is
/// `[RELEASE_HEAD, Dialect::NEXT_SEQ, VALUES_OPEN]` (the `intent_seq` stamp
/// is backend SQL).
pub(crate) const RELEASE_HEAD: &str =
    "UPDATE links SET lease_owner = NULL, lease_until = NULL, intent_seq = ";
pub(crate) const BULK_RELEASE_ROW: &str = "(?, ?)";
pub(crate) const BULK_RELEASE_TAIL: &str =
    ") AS v WHERE links.id = v.column1 AND links.lease_owner = v.column2";

/// Batched lease taking of accepted claims; the head is
/// `[LEASE_HEAD, Dialect::NEXT_SEQ, VALUES_OPEN]` like the release's.
pub(crate) const LEASE_HEAD: &str =
    "UPDATE links SET lease_owner = v.column2, lease_until = v.column3, intent_seq = ";
/// What follows the `intent_seq` stamp in the lease statements.
pub(crate) const VALUES_OPEN: &str = " FROM (VALUES ";
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
/// PostgreSQL's bulk link patch: the `SET` list of [`bulk_patch_link_head`]
/// over column arrays (`UNNEST`) named as the `VALUES` columns it reads.
pub(crate) fn unnest_patch_link(state: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|state, _| {
            let set = link_assignments(Values("links"), state, false, 9);
            format!(
                "UPDATE links SET {set} FROM UNNEST($1::text[], $2::bool[], $3::text[], \
                 $4::text[], $5::bool[], $6::int8[], $7::bool[], $8::int4[], $9::int8[]) \
                 AS v({}) WHERE links.id = v.column1 RETURNING links.id",
                value_columns(9)
            )
        })
    });
    &TEXTS[variant(state, false)]
}

/// PostgreSQL's bulk schedule patch (see [`unnest_patch_link`]), returning the
/// `(link, product)` of each row it found.
pub(crate) fn unnest_patch_schedule(requested: bool, due: bool) -> &'static str {
    static TEXTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        variants(|requested, due| {
            let set = schedule_assignments(Values("schedules"), requested, due);
            format!(
                "UPDATE schedules SET {set} FROM UNNEST($1::text[], $2::text[], $3::bool[], \
                 $4::int8[], $5::int8[], $6::int8[], $7::bool[], $8::int8[], $9::bool[], \
                 $10::int4[], $11::bool[], $12::int8[], $13::bool[], $14::text[], $15::bool[], \
                 $16::bool[]) AS v({}) \
                 WHERE schedules.link_id = v.column1 AND schedules.product = v.column2 \
                 RETURNING schedules.link_id, schedules.product",
                value_columns(16)
            )
        })
    });
    &TEXTS[variant(requested, due)]
}

/// `column1, ..., columnN`: the names `VALUES` gives its columns.
fn value_columns(n: u8) -> String {
    (1..=n)
        .map(|i| format!("column{i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
     s.next_due_at, s.failures, s.backoff_until, s.parked_reason, s.refresh_requested, \
     l.tags, l.last_activity_at";

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
