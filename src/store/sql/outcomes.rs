//! Outcomes and patches: MoneyKit's answers, each with the state change it
//! causes, and the daemon's own patches. Runs of outcomes of distinct links
//! are written with one statement per table and chunk; a 429 (which puts
//! the previous request times back from its attempt row) on its own, in
//! its place.

use std::collections::{HashMap, HashSet};

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::claims::leases_to_release;
use super::rows::{distinct, rows};
use super::statements::{
    BATCH_ROWS, BULK_ENSURE_SCHEDULE_HEAD, BULK_ENSURE_SCHEDULE_TAIL, BULK_FINISH_HEAD,
    BULK_FINISH_ROW, BULK_FINISH_TAIL, BULK_PATCH_LINK_ROW, BULK_PATCH_LINK_TAIL,
    BULK_PATCH_SCHEDULE_ROW, BULK_PATCH_SCHEDULE_TAIL, BULK_RELEASE_ROW, BULK_RELEASE_TAIL,
    ENSURE_SCHEDULE, RELEASE_HEAD, UPSERT_SCHEDULE_ROW, VALUES_OPEN, bulk_patch_link_head,
    bulk_patch_schedule_head, patch_link, patch_schedule,
};
use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::{LinkId, Product};
use crate::store::records::{decode_prev, ms, opt_ms};
use crate::store::{LinkPatch, Outcome, ProductPatch, StoreError, Timestamp};

/// Whether an outcome can join a batched run: no 429 restore (it reads the
/// attempt row back) and each product patched once.
fn bulk_ok(o: &Outcome) -> bool {
    !o.patch.restore_requested && distinct(o.patch.products.iter().map(|(p, _)| p.as_str()))
}

/// A failure count as stored (`INTEGER`).
fn stored_count(n: Option<u32>) -> Option<i32> {
    n.map(|f| f.min(i32::MAX as u32) as i32)
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
    /// The outcomes of `record_batch`, in order: runs of outcomes of
    /// distinct links in bulk, a 429 (restore) on its own in its place.
    pub(crate) async fn write_outcomes(
        conn: &mut DB::Connection,
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let mut i = 0;
        while i < outcomes.len() {
            let start = i;
            let mut seen = HashSet::new();
            while i < outcomes.len()
                && bulk_ok(&outcomes[i])
                && seen.insert(outcomes[i].link.as_str())
            {
                i += 1;
            }
            if i - start > 1 {
                Self::outcomes_bulk(conn, &outcomes[start..i]).await?;
            } else {
                i = start + 1;
                Self::outcome_one(conn, &outcomes[start]).await?;
            }
        }
        Ok(())
    }

    /// Applies a patch; false (and nothing written) if the link is unknown.
    /// `change_seq` is stamped when operators or webhooks change a link, so
    /// the daemon notices; its own patches leave it alone.
    pub(crate) async fn patch(
        conn: &mut DB::Connection,
        link: &LinkId,
        patch: &LinkPatch,
        now: Timestamp,
        change_seq: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (state, reason) = match &patch.state {
            Some((s, r)) => (Some(s.as_str()), r.as_deref()),
            None => (None, None),
        };
        // The events this change causes, read against the state before it.
        Self::record_events(conn, link, patch, now).await?;
        let text = patch_link(patch.state.is_some(), change_seq.is_some());
        let found = sqlx::query(AssertSqlSafe(text))
            .bind(link.as_str())
            .bind(patch.state.is_some())
            .bind(state)
            .bind(reason)
            .bind(patch.backoff_until.is_some())
            .bind(opt_ms(patch.backoff_until.flatten()))
            .bind(patch.failures.is_some())
            .bind(stored_count(patch.failures))
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
            Self::bind_product_patch(q, p).execute(&mut *conn).await?;
        }
        Ok(true)
    }

    /// Binds a product patch's 14 columns in the order of `patch_schedule`
    /// and `BULK_PATCH_SCHEDULE_ROW` (after the link and product): a
    /// `has_x` flag before each settable value.
    fn bind_product_patch<'q>(
        q: Query<'q, DB, DB::Arguments>,
        p: &ProductPatch,
    ) -> Query<'q, DB, DB::Arguments> {
        q.bind(p.last_requested_at.is_some())
            .bind(opt_ms(p.last_requested_at.flatten()))
            .bind(opt_ms(p.server_refreshed_at))
            .bind(opt_ms(p.server_attempted_at))
            .bind(p.next_due_at.is_some())
            .bind(opt_ms(p.next_due_at.flatten()))
            .bind(p.failures.is_some())
            .bind(stored_count(p.failures))
            .bind(p.backoff_until.is_some())
            .bind(opt_ms(p.backoff_until.flatten()))
            .bind(p.parked_reason.is_some())
            .bind(p.parked_reason.clone().flatten())
            .bind(p.refresh_requested.is_some())
            .bind(p.refresh_requested.unwrap_or(false))
    }

    /// Gives back the leases of finished claimed attempts, `(link, replica)`
    /// (see [`leases_to_release`]); stamps `intent_seq` so other replicas
    /// poll the change.
    async fn release_leases(
        conn: &mut DB::Connection,
        releases: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        if releases.is_empty() || DB::release_leases(conn, releases).await?.is_some() {
            return Ok(());
        }
        for chunk in releases.chunks(BATCH_ROWS) {
            let head = [RELEASE_HEAD, DB::NEXT_SEQ, VALUES_OPEN];
            let text = rows::<DB>(&head, BULK_RELEASE_ROW, chunk.len(), BULK_RELEASE_TAIL);
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, replica) in chunk {
                q = q.bind(*link).bind(*replica);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// A run of outcomes of distinct links, one statement per table and
    /// chunk; the same effect as [`outcome_one`](Self::outcome_one) for each
    /// in turn.
    async fn outcomes_bulk(conn: &mut DB::Connection, run: &[Outcome]) -> Result<(), StoreError> {
        // Finished attempt ids and the replica that claimed each.
        let mut finished: HashMap<i64, Option<String>> = HashMap::new();
        let bulk = DB::finish_attempts(conn, run).await?;
        let shared = if bulk.is_none() { run } else { &[][..] };
        finished.extend(bulk.into_iter().flatten());
        for chunk in shared.chunks(BATCH_ROWS) {
            let text = rows::<DB>(
                &[BULK_FINISH_HEAD],
                BULK_FINISH_ROW,
                chunk.len(),
                BULK_FINISH_TAIL,
            );
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
        // The link rows next (as every other writer locks them), and only
        // each attempt's replica's lease.
        Self::release_leases(conn, &leases_to_release(run, &finished)).await?;
        for o in run {
            Self::record_events(conn, &o.link, &o.patch, o.at).await?;
        }
        let mut found: HashSet<String> = HashSet::new();
        let bulk = DB::patch_links(conn, run).await?;
        let shared = if bulk.is_none() { run } else { &[][..] };
        found.extend(bulk.into_iter().flatten());
        for chunk in shared.chunks(BATCH_ROWS) {
            let state = chunk.iter().any(|o| o.patch.state.is_some());
            let text = rows::<DB>(
                &[bulk_patch_link_head(state)],
                BULK_PATCH_LINK_ROW,
                chunk.len(),
                BULK_PATCH_LINK_TAIL,
            );
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
                    .bind(stored_count(p.failures))
                    .bind(ms(o.at));
            }
            for row in &q.fetch_all(&mut *conn).await? {
                found.insert(row.try_get(0)?);
            }
        }
        let products: Vec<(&str, &ProductPatch, Product)> = run
            .iter()
            .filter(|o| found.contains(o.link.as_str()))
            .flat_map(|o| {
                o.patch
                    .products
                    .iter()
                    .map(move |(p, pp)| (o.link.as_str(), pp, *p))
            })
            .collect();
        let shared = match DB::patch_schedules(conn, &products).await? {
            Some(()) => &[][..],
            None => &products[..],
        };
        for chunk in shared.chunks(BATCH_ROWS) {
            let text = rows::<DB>(
                &[BULK_ENSURE_SCHEDULE_HEAD],
                UPSERT_SCHEDULE_ROW,
                chunk.len(),
                BULK_ENSURE_SCHEDULE_TAIL,
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, _, product) in chunk {
                q = q.bind(*link).bind(product.as_str());
            }
            q.execute(&mut *conn).await?;
            let requested = chunk.iter().any(|(_, p, _)| p.last_requested_at.is_some());
            let due = chunk.iter().any(|(_, p, _)| p.next_due_at.is_some());
            let text = rows::<DB>(
                &[bulk_patch_schedule_head(requested, due)],
                BULK_PATCH_SCHEDULE_ROW,
                chunk.len(),
                BULK_PATCH_SCHEDULE_TAIL,
            );
            let mut q = sqlx::query(AssertSqlSafe(text));
            for (link, p, product) in chunk {
                q = Self::bind_product_patch(q.bind(*link).bind(product.as_str()), p);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// One outcome: its attempt row, its lease, a 429's restore, its patch.
    async fn outcome_one(conn: &mut DB::Connection, o: &Outcome) -> Result<(), StoreError> {
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
        // The link row first (as every other writer locks it), and only this
        // attempt's replica's lease.
        let finished: HashMap<i64, Option<String>> = match &row {
            Some(row) => HashMap::from([(o.attempt, row.try_get(2)?)]),
            None => HashMap::new(),
        };
        let one = std::slice::from_ref(o);
        Self::release_leases(conn, &leases_to_release(one, &finished)).await?;
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
        Self::patch(conn, &o.link, &o.patch, o.at, None).await?;
        Ok(())
    }
}
