//! Links and their schedules: the configuration sync, the admin API's
//! upserts and removals, the daemon's loads and polls, and due times.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::rows::rows;
use super::statements::{
    BULK_CHANGE, CLEAR_DUE_HEAD, ID_ROWS, PAGE, SYNC_TX_LINKS, select_changed, select_claimed,
    select_one,
};
use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::LinkId;
use crate::store::records::{self, Existing, ms};
use crate::store::{DueUpdate, LinkRecord, LinkSpec, StoreError, SyncReport, Timestamp};

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
    /// [`Store::sync_config`](crate::store::Store::sync_config): the diff
    /// is computed in memory, then written in transactions of
    /// `SYNC_TX_LINKS` links.
    pub(crate) async fn sync(
        &self,
        number: i64,
        revision: &str,
        links: &[LinkSpec],
        now: Timestamp,
    ) -> Result<SyncReport, StoreError> {
        // Replicas starting together all sync the same config: the first
        // does the work, the others wait for it and then find the revision
        // synced.
        let lock = DB::lock_sync(&self.pool).await?;
        let stored = sqlx::query("SELECT revision, number FROM config_revision WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let stored: Option<(String, i64)> = match stored {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        };
        if let Some((_, newer)) = stored.as_ref().filter(|(_, n)| *n > number) {
            // A rolling update: a newer config's replica synced already.
            return Ok(SyncReport {
                unchanged: links.len() as u64,
                skipped_same_revision: true,
                behind: Some(*newer),
                ..SyncReport::default()
            });
        }
        if let Some((_, older)) = stored.as_ref().filter(|(r, _)| r == revision) {
            if *older < number {
                sqlx::query("UPDATE config_revision SET number = $1 WHERE id = 1")
                    .bind(number)
                    .execute(&self.writer)
                    .await?;
            }
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
            DB::write_links(&mut tx, chunk, now, 0).await?;
            tx.commit().await?;
        }
        for chunk in plan.removed.chunks(SYNC_TX_LINKS) {
            let mut tx = self.begin_write().await?;
            for ids in chunk.chunks(ID_ROWS) {
                let head = ["UPDATE links SET removed = TRUE, updated_at = ? WHERE id IN ("];
                let text = rows::<DB>(&head, "?", ids.len(), ")");
                let mut q = sqlx::query(AssertSqlSafe(text)).bind(ms(now));
                for id in ids {
                    q = q.bind(id.as_str());
                }
                q.execute(&mut *tx).await?;
                let text = rows::<DB>(&[CLEAR_DUE_HEAD], "?", ids.len(), ")");
                let mut q = sqlx::query(AssertSqlSafe(text));
                for id in ids {
                    q = q.bind(id.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        if plan.upserts.len() + plan.removed.len() >= BULK_CHANGE {
            DB::after_bulk_write(&self.writer).await?;
        }
        // Recorded last: a crash part-way leaves the old revision, so the
        // next start repeats the (idempotent) diff.
        sqlx::query(
            "INSERT INTO config_revision (id, revision, synced_at, number) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, \
             synced_at = excluded.synced_at, number = excluded.number",
        )
        .bind(revision)
        .bind(ms(now))
        .bind(number)
        .execute(&self.writer)
        .await?;
        if let Some(lock) = lock {
            lock.commit().await?;
        }
        tracing::info!(report = ?plan.report, "configuration synced");
        Ok(plan.report)
    }

    /// What the sync diff needs of every stored link, read in pages.
    async fn read_existing(&self) -> Result<HashMap<String, Existing>, StoreError> {
        let mut existing = HashMap::new();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, products, cadence, source, removed FROM links \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.as_str())
            .bind(PAGE)
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
                Some(row) if rows.len() as i64 == PAGE => after = row.try_get(0)?,
                _ => return Ok(existing),
            }
        }
    }

    /// [`Store::upsert_link`](crate::store::Store::upsert_link).
    pub(crate) async fn upsert_one(
        &self,
        spec: &LinkSpec,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
        DB::write_links(&mut tx, &[spec], now, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::remove_link`](crate::store::Store::remove_link).
    pub(crate) async fn remove_one(&self, id: &LinkId, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
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

    /// [`Store::load_links_page`](crate::store::Store::load_links_page).
    pub(crate) async fn read_page(
        &self,
        after: &str,
    ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError> {
        let row = sqlx::query(DB::JSON_PAGE)
            .bind(after)
            .bind(PAGE)
            .fetch_one(&self.pool)
            .await?;
        let last: Option<String> = row.try_get(1)?;
        let Some(last) = last else {
            return Ok(None);
        };
        let doc: String = row.try_get(0)?;
        Ok(Some((records::parse_page(&doc)?, last)))
    }

    /// [`Store::change_mark`](crate::store::Store::change_mark).
    pub(crate) async fn read_change_mark(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM change_counter WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// [`Store::load_link`](crate::store::Store::load_link).
    pub(crate) async fn read_link(&self, id: &LinkId) -> Result<Option<LinkRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(select_one()))
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(1);
        Self::group(&rows, &mut out)?;
        Ok(out.pop())
    }

    /// [`Store::changes_since`](crate::store::Store::changes_since).
    pub(crate) async fn read_changes(
        &self,
        seq: i64,
    ) -> Result<(i64, Vec<LinkRecord>), StoreError> {
        // The counter first: a change committed between the two reads is
        // returned now *and* next time, never missed.
        let high = self.read_change_mark().await?;
        if high <= seq {
            return Ok((high.max(seq), Vec::new()));
        }
        let rows = sqlx::query(AssertSqlSafe(select_changed()))
            .bind(seq)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        Self::group(&rows, &mut out)?;
        Ok((high, out))
    }

    /// [`Store::claims_since`](crate::store::Store::claims_since).
    pub(crate) async fn read_claims(&self, seq: i64) -> Result<(i64, Vec<LinkRecord>), StoreError> {
        let high: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(intent_seq), 0) FROM links")
            .fetch_one(&self.pool)
            .await?;
        if high <= seq {
            return Ok((high, Vec::new()));
        }
        let rows = sqlx::query(AssertSqlSafe(select_claimed()))
            .bind((seq - DB::OVERLAP).max(0))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        Self::group(&rows, &mut out)?;
        Ok((high, out))
    }

    /// [`Store::set_next_due`](crate::store::Store::set_next_due).
    pub(crate) async fn write_due_times(&self, updates: &[DueUpdate]) -> Result<(), StoreError> {
        for chunk in updates.chunks(SYNC_TX_LINKS) {
            let mut tx = self.begin_write().await?;
            DB::write_due(&mut tx, chunk).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}
