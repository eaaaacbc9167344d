//! Demand from the owning app and what selects a link's profile: the last
//! activity call and MoneyKit's `link_tags`.

use chrono::TimeDelta;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Type};

use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::LinkId;
use crate::store::records::{decode_tags, encode_tags, ms};
use crate::store::{Activity, StoreError, Timestamp};

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
    /// [`Store::record_activity`](crate::store::Store::record_activity): a
    /// read first, so that a call within `coarse` of the stored time costs
    /// one read, no write, and does not wake the daemon; then one guarded
    /// `UPDATE` (two racing calls write once).
    pub(crate) async fn activity(
        &self,
        id: &LinkId,
        now: Timestamp,
        coarse: TimeDelta,
    ) -> Result<Activity, StoreError> {
        let since = ms(now).saturating_sub(coarse.num_milliseconds().max(0));
        let stored: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT last_activity_at FROM links WHERE id = $1 AND removed = FALSE",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match stored {
            None => return Ok(Activity::UnknownLink),
            Some(Some(at)) if at > since => return Ok(Activity::Recent),
            Some(_) => {}
        }
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
        let written = sqlx::query(
            "UPDATE links SET last_activity_at = $2, change_seq = $3 \
             WHERE id = $1 AND (last_activity_at IS NULL OR last_activity_at <= $4)",
        )
        .bind(id.as_str())
        .bind(ms(now))
        .bind(seq)
        .bind(since)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !written {
            return Ok(Activity::Recent);
        }
        tx.commit().await?;
        Ok(Activity::Recorded)
    }

    /// [`Store::set_tags`](crate::store::Store::set_tags): a read first,
    /// so the same tags again (every webhook carries them) write nothing.
    pub(crate) async fn tags(&self, id: &LinkId, tags: &[String]) -> Result<bool, StoreError> {
        let encoded = encode_tags(tags);
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT tags FROM links WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        match stored {
            None => return Ok(false),
            Some(t) if decode_tags(t.as_deref()) == tags => return Ok(true),
            Some(_) => {}
        }
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
        let found = sqlx::query("UPDATE links SET tags = $2, change_seq = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(encoded.as_deref())
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if found {
            tx.commit().await?;
        }
        Ok(found)
    }
}
