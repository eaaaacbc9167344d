//! Reading rows back: joined link/schedule rows into records, `IN (...)`
//! lists in chunks, and multi-row statement texts in the backend's
//! parameter style.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::statements::ID_ROWS;
use super::texts::cached_multi_row;
use super::{Column, Dialect, SqlStore};
use crate::store::records::{RawLink, RawSchedule, finish};
use crate::store::{LinkRecord, StoreError};

/// Expands a row template such as `(?, ?, 'x')` `rows` times between `head`
/// (given in pieces, so that a head with a backend's expression in it needs
/// no text of its own) and `tail` (which may hold `?`s too). PostgreSQL needs the `?`s numbered
/// `$1, $2, ...`; SQLite keeps plain `?`, because it looks numbered
/// parameters up by a linear scan, which made a 3,500-parameter statement cost
/// more to bind than to run. The text only depends on `rows`, so full chunks
/// reuse one prepared statement.
pub(crate) fn multi_row(
    head: &[&str],
    row: &str,
    rows: usize,
    tail: &str,
    numbered: bool,
) -> String {
    let head_len: usize = head.iter().map(|h| h.len()).sum();
    let mut sql = String::with_capacity(head_len + tail.len() + rows * (row.len() + 2));
    for piece in head {
        sql.push_str(piece);
    }
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    if numbered { number_params(&sql) } else { sql }
}

/// Rewrites every `?` as `$1, $2, ...` in order (no templates quote a `?`).
fn number_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-row statement text in `DB`'s cheapest parameter style, built once
/// per template and row count (see [`cached_multi_row`]).
pub(crate) fn rows<DB: Dialect>(head: &[&str], row: &str, n: usize, tail: &str) -> Arc<str> {
    cached_multi_row(head, row, n, tail, DB::NUMBERED)
}

/// Whether `ids` name each link (or product) at most once.
pub(crate) fn distinct<'a>(mut ids: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = HashSet::new();
    ids.all(|id| seen.insert(id))
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
    /// Rows of `{head} IN (ids){tail}`, queried `ID_ROWS` ids at a time.
    pub(crate) async fn select_in(
        conn: &mut DB::Connection,
        head: &str,
        tail: &str,
        ids: &[&str],
    ) -> Result<Vec<DB::Row>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(rows) = DB::select_any(conn, head, tail, ids).await? {
            return Ok(rows);
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(ID_ROWS) {
            let text = rows::<DB>(&[head, " IN ("], "?", chunk.len(), &format!("){tail}"));
            let mut q = sqlx::query(AssertSqlSafe(text));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }

    /// Folds joined link/schedule rows (ordered by link id, columns as
    /// [`LINK_AND_SCHEDULE_COLUMNS`](super::statements)) into records.
    pub(crate) fn group(rows: &[DB::Row], out: &mut Vec<LinkRecord>) -> Result<(), StoreError> {
        let mut current: Option<LinkRecord> = None;
        for row in rows {
            let id: String = row.try_get(0)?;
            if current.as_ref().map(|c| c.id.as_str()) != Some(id.as_str()) {
                if let Some(done) = current.take() {
                    out.push(finish(done));
                }
                current = Some(Self::raw_link(row)?.into_record()?);
            }
            let product: Option<String> = row.try_get(12)?;
            if let (Some(product), Some(link)) = (product, current.as_mut()) {
                link.schedules
                    .push(Self::raw_schedule(row, product)?.into_record()?);
            }
        }
        if let Some(done) = current {
            out.push(finish(done));
        }
        Ok(())
    }

    fn raw_link(row: &DB::Row) -> Result<RawLink, sqlx::Error> {
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
            tags: row.try_get(21)?,
            last_activity_at: row.try_get(22)?,
        })
    }

    fn raw_schedule(row: &DB::Row, product: String) -> Result<RawSchedule, sqlx::Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_numbers_parameters_across_head_and_rows_only_when_asked() {
        let head = "UPDATE t SET at = ? WHERE id IN (";
        assert_eq!(
            multi_row(&[head], "?", 2, ")", true),
            "UPDATE t SET at = $1 WHERE id IN ($2, $3)"
        );
        assert_eq!(
            multi_row(&[head], "?", 2, ")", false),
            "UPDATE t SET at = ? WHERE id IN (?, ?)"
        );
    }

    #[test]
    fn a_head_given_in_pieces_is_joined_before_the_rows() {
        let head = ["UPDATE t SET seq = ", "nextval('s')", " FROM (VALUES "];
        assert_eq!(
            multi_row(&head, "(?, ?)", 2, ") AS v", true),
            "UPDATE t SET seq = nextval('s') FROM (VALUES ($1, $2), ($3, $4)) AS v"
        );
    }
}
