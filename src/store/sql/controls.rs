//! Operator controls, webhooks' bookkeeping and history: changes that come
//! from outside the daemon (each bumps the change sequence the daemon
//! polls), a link's attempts, retention, and idempotency keys.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::statements::{PRUNE_DELIVERIES, REMEMBER_DELIVERY};
use super::{Column, Dialect, RowsAffected, SqlStore};
use crate::domain::{LinkId, ProductSet};
use crate::store::records::{decode_prev, from_bits, ms, opt_time, time};
use crate::store::{AttemptRecord, LinkPatch, StoreError, Timestamp};

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
    /// [`Store::apply_patch`](crate::store::Store::apply_patch).
    pub(crate) async fn patch_and_notify(
        &self,
        link: &LinkId,
        patch: &LinkPatch,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
        let found = Self::patch(&mut tx, link, patch, now, Some(seq)).await?;
        if found {
            tx.commit().await?;
        }
        Ok(found)
    }

    /// [`Store::set_paused`](crate::store::Store::set_paused).
    pub(crate) async fn pause(
        &self,
        id: &LinkId,
        paused: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let seq = Self::bump(&mut tx).await?;
        if !paused {
            // An operator's resume of a parked link is a `link.resumed`.
            let resume = LinkPatch {
                state: Some((crate::domain::LinkState::Active, None)),
                ..LinkPatch::default()
            };
            Self::record_events(&mut tx, id, &resume, now).await?;
        }
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

    /// [`Store::request_refresh`](crate::store::Store::request_refresh).
    pub(crate) async fn ask_refresh(
        &self,
        id: &LinkId,
        products: ProductSet,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored: Option<i32> = sqlx::query_scalar("SELECT products FROM links WHERE id = $1")
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
        let seq = Self::bump(&mut tx).await?;
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

    /// [`Store::attempts`](crate::store::Store::attempts).
    pub(crate) async fn read_attempts(
        &self,
        id: &LinkId,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
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

    /// [`Store::prune_attempts`](crate::store::Store::prune_attempts).
    pub(crate) async fn prune(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM attempts WHERE intent_at < $1")
            .bind(ms(older_than))
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    /// [`Store::posts_since`](crate::store::Store::posts_since): an index
    /// range scan of `attempts_by_time_outcome` (or, leaving out one
    /// replica's, of `attempts_by_time_replica`), one row per bucket.
    pub(crate) async fn read_posts_since(
        &self,
        since: Timestamp,
        bucket: chrono::TimeDelta,
        except_replica: Option<&str>,
    ) -> Result<Vec<(Timestamp, u32)>, StoreError> {
        let width = bucket.num_milliseconds().max(1);
        let rows = match except_replica {
            None => {
                sqlx::query(
                    "SELECT intent_at / $2 AS b, COUNT(*), MAX(intent_at) FROM attempts \
                     WHERE intent_at > $1 GROUP BY b ORDER BY b",
                )
                .bind(ms(since))
                .bind(width)
                .fetch_all(&self.pool)
                .await?
            }
            Some(replica) => {
                sqlx::query(
                    "SELECT intent_at / $2 AS b, COUNT(*), MAX(intent_at) FROM attempts \
                     WHERE intent_at > $1 AND COALESCE(replica, '') <> $3 GROUP BY b ORDER BY b",
                )
                .bind(ms(since))
                .bind(width)
                .bind(replica)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get(1)?;
                let last: i64 = row.try_get(2)?;
                Ok((time(last)?, u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    /// [`Store::remember_delivery`](crate::store::Store::remember_delivery).
    pub(crate) async fn remember(
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

    /// [`Store::forget_delivery`](crate::store::Store::forget_delivery).
    pub(crate) async fn forget(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE idempotency_key = $1")
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
