//! PostgreSQL's forms of the write path's bulk statements: every column
//! bound as one array (`UNNEST`), so a batch of intents or outcomes is one
//! statement per table with a fixed text, prepared once per connection.
//! The shared multi-row `VALUES` form (`store/sql/`) sent one statement per
//! 200 rows, each length a new text to parse and plan, and numbered up to
//! 3,200 parameters; on a server reached over TLS every one is a round trip.
//! The `SET` lists are the shared ones (`statements`), so both backends
//! apply a patch identically.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::StoreError;
use super::records::{ms, opt_ms};
use super::sql::dialect::{AttemptRow, ScheduleRow};
use super::sql::statements::{unnest_patch_link, unnest_patch_schedule};
use crate::store::Outcome;

/// A failure count as stored (`INTEGER`).
fn stored_count(n: Option<u32>) -> Option<i32> {
    n.map(|f| f.min(i32::MAX as u32) as i32)
}

/// `SELECT ... WHERE {head} = ANY($1) {tail}`: one statement for any number of ids.
pub(crate) async fn select_any(
    conn: &mut PgConnection,
    head: &str,
    tail: &str,
    ids: &[&str],
) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
    Ok(
        sqlx::query(AssertSqlSafe(format!("{head} = ANY($1::text[]){tail}")))
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?,
    )
}

pub(crate) async fn finish_attempts(
    conn: &mut PgConnection,
    run: &[Outcome],
) -> Result<Vec<(i64, Option<String>)>, StoreError> {
    let ids: Vec<i64> = run.iter().map(|o| o.attempt).collect();
    let labels: Vec<&str> = run.iter().map(|o| o.label.as_str()).collect();
    let statuses: Vec<Option<i32>> = run.iter().map(|o| o.status.map(i32::from)).collect();
    let details: Vec<Option<&str>> = run.iter().map(|o| o.detail.as_deref()).collect();
    let at: Vec<i64> = run.iter().map(|o| ms(o.at)).collect();
    let links: Vec<&str> = run.iter().map(|o| o.link.as_str()).collect();
    let rows = sqlx::query(
        "UPDATE attempts SET outcome = u.outcome, status = u.status, detail = u.detail, \
         finished_at = u.finished_at \
         FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::text[], $5::int8[], $6::text[]) \
         AS u(id, outcome, status, detail, finished_at, link_id) \
         WHERE attempts.id = u.id AND attempts.link_id = u.link_id \
         RETURNING attempts.id, attempts.replica",
    )
    .bind(ids)
    .bind(labels)
    .bind(statuses)
    .bind(details)
    .bind(at)
    .bind(links)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub(crate) async fn patch_links(
    conn: &mut PgConnection,
    run: &[Outcome],
) -> Result<Vec<String>, StoreError> {
    let state = run.iter().any(|o| o.patch.state.is_some());
    let links: Vec<&str> = run.iter().map(|o| o.link.as_str()).collect();
    let has_state: Vec<bool> = run.iter().map(|o| o.patch.state.is_some()).collect();
    let states: Vec<Option<&str>> = run
        .iter()
        .map(|o| o.patch.state.as_ref().map(|(s, _)| s.as_str()))
        .collect();
    let reasons: Vec<Option<&str>> = run
        .iter()
        .map(|o| o.patch.state.as_ref().and_then(|(_, r)| r.as_deref()))
        .collect();
    let has_backoff: Vec<bool> = run
        .iter()
        .map(|o| o.patch.backoff_until.is_some())
        .collect();
    let backoff: Vec<Option<i64>> = run
        .iter()
        .map(|o| opt_ms(o.patch.backoff_until.flatten()))
        .collect();
    let has_failures: Vec<bool> = run.iter().map(|o| o.patch.failures.is_some()).collect();
    let failures: Vec<Option<i32>> = run.iter().map(|o| stored_count(o.patch.failures)).collect();
    let at: Vec<i64> = run.iter().map(|o| ms(o.at)).collect();
    let rows = sqlx::query(AssertSqlSafe(unnest_patch_link(state)))
        .bind(links)
        .bind(has_state)
        .bind(states)
        .bind(reasons)
        .bind(has_backoff)
        .bind(backoff)
        .bind(has_failures)
        .bind(failures)
        .bind(at)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Patches schedule rows. Every product of a stored link has its row, so
/// the update alone finds them all but for a product a patch adds (rare):
/// only then are the missing rows inserted and patched. An `INSERT ... ON
/// CONFLICT DO NOTHING` of every row first, as before, cost a statement
/// (and an index probe per row) in every round, for no row inserted
/// (issue 16: 5 % of the store's statement time at full throughput).
pub(crate) async fn patch_schedules(
    conn: &mut PgConnection,
    rows: &[ScheduleRow<'_>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let found = update_schedules(conn, rows).await?;
    let missing: Vec<ScheduleRow<'_>> = rows
        .iter()
        .filter(|r| !found.contains(&(r.0.to_owned(), r.2.as_str().to_owned())))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let links: Vec<&str> = missing.iter().map(|r| r.0).collect();
    let products: Vec<&str> = missing.iter().map(|r| r.2.as_str()).collect();
    sqlx::query(
        "INSERT INTO schedules (link_id, product) SELECT * FROM UNNEST($1::text[], $2::text[]) \
         ON CONFLICT (link_id, product) DO NOTHING",
    )
    .bind(&links)
    .bind(&products)
    .execute(&mut *conn)
    .await?;
    update_schedules(conn, &missing).await?;
    Ok(())
}

/// One `UPDATE ... FROM UNNEST` of `rows`; the `(link, product)` of each
/// row it found.
async fn update_schedules(
    conn: &mut PgConnection,
    rows: &[ScheduleRow<'_>],
) -> Result<HashSet<(String, String)>, StoreError> {
    let links: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let products: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let requested = rows.iter().any(|r| r.1.last_requested_at.is_some());
    let due = rows.iter().any(|r| r.1.next_due_at.is_some());
    let col = |f: &dyn Fn(&ScheduleRow) -> bool| rows.iter().map(f).collect::<Vec<bool>>();
    let time = |f: &dyn Fn(&ScheduleRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let found = sqlx::query(AssertSqlSafe(unnest_patch_schedule(requested, due)))
        .bind(&links)
        .bind(&products)
        .bind(col(&|r| r.1.last_requested_at.is_some()))
        .bind(time(&|r| opt_ms(r.1.last_requested_at.flatten())))
        .bind(time(&|r| opt_ms(r.1.server_refreshed_at)))
        .bind(time(&|r| opt_ms(r.1.server_attempted_at)))
        .bind(col(&|r| r.1.next_due_at.is_some()))
        .bind(time(&|r| opt_ms(r.1.next_due_at.flatten())))
        .bind(col(&|r| r.1.failures.is_some()))
        .bind(
            rows.iter()
                .map(|r| stored_count(r.1.failures))
                .collect::<Vec<_>>(),
        )
        .bind(col(&|r| r.1.backoff_until.is_some()))
        .bind(time(&|r| opt_ms(r.1.backoff_until.flatten())))
        .bind(col(&|r| r.1.parked_reason.is_some()))
        .bind(
            rows.iter()
                .map(|r| r.1.parked_reason.clone().flatten())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(col(&|r| r.1.refresh_requested.is_some()))
        .bind(col(&|r| r.1.refresh_requested.unwrap_or(false)))
        .fetch_all(&mut *conn)
        .await?;
    found
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub(crate) async fn insert_attempts(
    conn: &mut PgConnection,
    rows: &[AttemptRow<'_>],
) -> Result<Vec<(i64, String)>, StoreError> {
    let out = sqlx::query(
        "INSERT INTO attempts (link_id, products, intent_at, prev_requested, replica) \
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::text[], $5::text[]) \
         RETURNING id, link_id",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    out.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub(crate) async fn move_times(
    conn: &mut PgConnection,
    rows: &[(&str, &str, i64)],
) -> Result<(), StoreError> {
    execute_triples(
        conn,
        "INSERT INTO schedules (link_id, product, last_requested_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[]) \
         ON CONFLICT (link_id, product) DO UPDATE SET last_requested_at = excluded.last_requested_at",
        rows,
    )
    .await
}

/// Takes the leases of accepted claims, `(link, owner, until)`, stamping
/// `intent_seq` from the sequence.
pub(crate) async fn take_leases(
    conn: &mut PgConnection,
    rows: &[(&str, &str, i64)],
) -> Result<(), StoreError> {
    execute_triples(
        conn,
        "UPDATE links SET lease_owner = u.owner, lease_until = u.until, \
         intent_seq = nextval('link_intent_seq') \
         FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(id, owner, until) \
         WHERE links.id = u.id",
        rows,
    )
    .await
}

/// Runs `sql` with the three columns of `rows` bound as arrays `$1..$3`.
async fn execute_triples(
    conn: &mut PgConnection,
    sql: &'static str,
    rows: &[(&str, &str, i64)],
) -> Result<(), StoreError> {
    sqlx::query(sql)
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives back leases, `(link, replica)`: only where that replica still
/// holds the link's lease.
pub(crate) async fn release_leases(
    conn: &mut PgConnection,
    rows: &[(&str, &str)],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE links SET lease_owner = NULL, lease_until = NULL, \
         intent_seq = nextval('link_intent_seq') \
         FROM UNNEST($1::text[], $2::text[]) AS u(id, owner) \
         WHERE links.id = u.id AND links.lease_owner = u.owner",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
