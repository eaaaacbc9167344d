//! [`Ownership`] on PostgreSQL: the `replicas` and `partitions` tables (see
//! "Several replicas" in the [ownership docs](super::ownership)). Every time here is the
//! database's clock, in unix milliseconds; no replica's clock is trusted
//! with a lease.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Postgres, Row};

use super::ownership::{Assign, FleetView, Ownership, ReplicaView, Tick};
use super::postgres::{JSON_PAGE, PgStore};
use super::records::parse_page;
use super::{LinkRecord, StoreError};

/// The database's clock, unix milliseconds.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM now()) * 1000)::bigint";

/// Key of the advisory lock that serializes heartbeats ("lffleet"): every
/// replica computes the target from the same facts, one at a time.
const FLEET_LOCK: i64 = 0x6c_6666_6c65_6574;

/// Registers a replica or renews its row: `$1` id, `$2` now, `$3` lease end.
const RENEW_REPLICA: &str = "INSERT INTO replicas (id, started_at, heartbeat_at, lease_until) \
     VALUES ($1, $2, $2, $3) ON CONFLICT (id) DO UPDATE \
     SET heartbeat_at = excluded.heartbeat_at, lease_until = excluded.lease_until";

/// Dead replicas' rows stay this long past their lease, for `status`.
const KEEP_DEAD_MS: i64 = 60_000;

/// Links per page of a gained partition's load: a quarter of the start-up
/// page. Each page is alive three times over while a replica loads (the
/// JSON text, its parse, the records; one page read ahead and one being
/// merged): with 10,000 links a page that was ~30 MB above the replica's
/// steady state, the peak of each of three replicas at 1,000,000 links
/// (issue 16). More round trips, each cheap: the load takes as long.
const PARTITION_PAGE: i64 = 2_500;

/// Where `JSON_PAGE` picks its page of links, and the same for some
/// partitions only (`$3` the partition count, `$4` the partitions).
const PAGE_FILTER: (&str, &str) = (
    "id > $1 ORDER BY id LIMIT $2",
    "id > $1 AND (part_hash % $3)::int4 = ANY($4) ORDER BY id LIMIT $2",
);

/// One page of the links of some partitions: the start-up page
/// (`postgres::JSON_PAGE`, so both decode alike as its columns change)
/// with the partitions' filter.
fn parts_page() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| JSON_PAGE.replacen(PAGE_FILTER.0, PAGE_FILTER.1, 1))
}

/// Takes the heartbeats' lock for the transaction, then renews `replica`'s
/// row for `lease_ms` from the database's now, which it returns: the start
/// of every heartbeat and announcement.
async fn lock_and_renew(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    replica: &str,
    lease_ms: i64,
) -> Result<i64, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FLEET_LOCK)
        .execute(&mut **tx)
        .await?;
    let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {NOW_MS}")))
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(RENEW_REPLICA)
        .bind(replica)
        .bind(now)
        .bind(now + lease_ms)
        .execute(&mut **tx)
        .await?;
    Ok(now)
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl PgStore {
    /// The stored partition count, if any replica joined.
    async fn stored_partitions(&self) -> Result<Option<u32>, StoreError> {
        let n: Option<i32> =
            sqlx::query_scalar("SELECT partitions FROM fleet_settings WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(0)))
    }
}

#[async_trait]
impl Ownership for PgStore {
    async fn join(&self, partitions: u32) -> Result<(), StoreError> {
        let wanted = i32::try_from(partitions).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FLEET_LOCK)
            .execute(&mut *tx)
            .await?;
        let stored: Option<i32> =
            sqlx::query_scalar("SELECT partitions FROM fleet_settings WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        match stored {
            Some(stored) if stored != wanted => {
                return Err(StoreError::PartitionsMismatch {
                    configured: partitions,
                    stored: u32::try_from(stored).unwrap_or(0),
                });
            }
            Some(_) => {}
            None => {
                sqlx::query("INSERT INTO fleet_settings (id, partitions) VALUES (1, $1)")
                    .bind(wanted)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO partitions (part) SELECT generate_series(0, $1 - 1) \
                     ON CONFLICT (part) DO NOTHING",
                )
                .bind(wanted)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(replica = %replica))]
    async fn tick(
        &self,
        replica: &str,
        lease: Duration,
        settle: Duration,
        ready: &[u32],
        assign: Assign,
    ) -> Result<Tick, StoreError> {
        let lease = ms_of(lease);
        let settle = ms_of(settle);
        let mut tx = self.pool.begin().await?;
        // A heartbeat that cannot get its locks within a third of a lease
        // fails and is retried, rather than waiting while its lease runs out.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = {}",
            (lease / 3).max(100)
        )))
        .execute(&mut *tx)
        .await?;
        let now = lock_and_renew(&mut tx, replica, lease).await?;
        sqlx::query("DELETE FROM replicas WHERE lease_until < $1")
            .bind(now - KEEP_DEAD_MS)
            .execute(&mut *tx)
            .await?;
        let replicas: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, lease_until FROM replicas WHERE lease_until > $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let live: Vec<String> = replicas.iter().map(|r| r.0.clone()).collect();
        // The earliest end of another replica's lease, row or partition.
        let mut next_lapse = replicas
            .iter()
            .filter(|r| r.0 != replica)
            .map(|r| r.1)
            .min();
        let rows =
            sqlx::query("SELECT part, holder, epoch, lease_until FROM partitions ORDER BY part")
                .fetch_all(&mut *tx)
                .await?;
        let mut current: Vec<Option<String>> = Vec::with_capacity(rows.len());
        let mut expired: Vec<bool> = Vec::with_capacity(rows.len());
        for row in &rows {
            let holder: Option<String> = row.try_get(1)?;
            let until: Option<i64> = row.try_get(3)?;
            let lapsed = until.is_none_or(|u| u <= now);
            expired.push(lapsed);
            if let (Some(u), false) = (until, lapsed || holder.as_deref() == Some(replica)) {
                next_lapse = Some(next_lapse.map_or(u, |n| n.min(u)));
            }
            // A holder counts while its partition lease runs: a replica
            // whose row lapsed keeps nothing, one that just joined has none.
            current.push(holder.filter(|h| !lapsed && live.contains(h)));
        }
        let total = rows.len();
        let target = assign(&live, &current);
        let (mut keep, mut release, mut acquire) = (Vec::new(), Vec::new(), Vec::new());
        let mut leaving = Vec::new();
        for (part, (row, want)) in rows.iter().zip(&target).enumerate() {
            let part = i32::try_from(part).unwrap_or(i32::MAX);
            let holder: Option<String> = row.try_get(1)?;
            let mine = holder.as_deref() == Some(replica);
            let wanted = want.as_deref() == Some(replica);
            match (mine, wanted) {
                (true, true) if !expired[part as usize] => keep.push(part),
                // Given back only once this replica no longer counts it
                // toward its limits (see `daemon::share`); kept till then.
                (true, false) if ready.contains(&(part as u32)) => release.push(part),
                (true, false) if !expired[part as usize] => {
                    keep.push(part);
                    leaving.push(part as u32);
                }
                (_, true) if holder.is_none() || expired[part as usize] => acquire.push(part),
                _ => {}
            }
        }
        let mut own: Vec<i32> = keep.iter().chain(&release).copied().collect();
        own.sort_unstable();
        // Its own partitions in ascending order, as intents take theirs
        // (see `sql::intents`): two transactions locking partitions never
        // wait on each other in a cycle. Only this replica's intents lock
        // them, briefly.
        sqlx::query("SELECT part FROM partitions WHERE part = ANY($1) ORDER BY part FOR UPDATE")
            .bind(&own)
            .execute(&mut *tx)
            .await?;
        // Others' without waiting: one still locked by an intent transaction
        // of a paused replica (until the server ends that session, see
        // `postgres::IDLE_IN_TRANSACTION`) is taken at a later tick.
        let acquire: Vec<i32> = sqlx::query_scalar(
            "SELECT part FROM partitions WHERE part = ANY($1) ORDER BY part FOR UPDATE SKIP LOCKED",
        )
        .bind(&acquire)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE partitions SET lease_until = $2 WHERE part = ANY($1) AND holder = $3")
            .bind(&keep)
            .bind(now + lease)
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE partitions SET holder = NULL, lease_until = NULL, freed_at = NULL \
             WHERE part = ANY($1) AND holder = $2",
        )
        .bind(&release)
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE partitions SET holder = $2, epoch = epoch + 1, lease_until = $3, \
             acquired_at = $4, \
             freed_at = CASE WHEN holder IS NULL THEN freed_at ELSE lease_until END \
             WHERE part = ANY($1)",
        )
        .bind(&acquire)
        .bind(replica)
        .bind(now + lease)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rebalanced = !release.is_empty() || !acquire.is_empty();
        if rebalanced {
            sqlx::query("UPDATE replicas SET rebalances = rebalances + 1 WHERE id = $1")
                .bind(replica)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT part, epoch, COALESCE(freed_at, 0) + $3 <= $2 FROM partitions \
             WHERE holder = $1 AND lease_until > $2 ORDER BY part",
        )
        .bind(replica)
        .bind(now)
        .bind(settle)
        .fetch_all(&mut *tx)
        .await?;
        let mut held = Vec::with_capacity(rows.len());
        let mut leaving_held = Vec::with_capacity(leaving.len());
        let mut settled = 0;
        for r in &rows {
            let part = u32::try_from(r.try_get::<i32, _>(0)?).unwrap_or(0);
            if leaving.contains(&part) {
                leaving_held.push((part, r.try_get(1)?));
                continue;
            }
            held.push((part, r.try_get(1)?));
            settled += u32::from(r.try_get::<bool, _>(2)?);
        }
        tx.commit().await?;
        Ok(Tick {
            partitions: u32::try_from(total).unwrap_or(0),
            held,
            leaving: leaving_held,
            settled,
            live: u32::try_from(live.len()).unwrap_or(u32::MAX),
            rebalanced,
            next_lapse: next_lapse
                .and_then(|u| u64::try_from(u - now).ok())
                .map(Duration::from_millis),
        })
    }

    #[tracing::instrument(skip_all, fields(replica = %replica))]
    async fn announce(&self, replica: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Under the heartbeats' lock: a tick running now either counts this
        // replica or has committed the partitions it took, seen below.
        let now = lock_and_renew(&mut tx, replica, ms_of(lease)).await?;
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM partitions \
             WHERE holder IS NOT NULL AND lease_until > $1)",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!held)
    }

    async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FLEET_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT part FROM partitions WHERE holder = $1 ORDER BY part FOR UPDATE")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE partitions SET holder = NULL, lease_until = NULL, freed_at = NULL \
             WHERE holder = $1",
        )
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_partitions_page(
        &self,
        parts: &[u32],
        after: &str,
    ) -> Result<Option<(Vec<LinkRecord>, String)>, StoreError> {
        let Some(count) = self.stored_partitions().await? else {
            return Ok(None);
        };
        let parts: Vec<i32> = parts
            .iter()
            .filter_map(|p| i32::try_from(*p).ok())
            .collect();
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(parts_page()))
            .bind(after)
            .bind(PARTITION_PAGE)
            .bind(i64::from(count))
            .bind(parts)
            .fetch_one(&self.pool)
            .await?;
        let last: Option<String> = row.try_get(1)?;
        let Some(last) = last else {
            return Ok(None);
        };
        let doc: String = row.try_get(0)?;
        Ok(Some((parse_page(&doc)?, last)))
    }

    async fn view(&self) -> Result<FleetView, StoreError> {
        let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {NOW_MS}")))
            .fetch_one(&self.pool)
            .await?;
        let partitions = self.stored_partitions().await?.unwrap_or(0);
        let mut held: HashMap<String, Vec<u32>> = HashMap::new();
        let mut unheld = Vec::new();
        let rows = sqlx::query("SELECT part, holder, lease_until FROM partitions ORDER BY part")
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let part = u32::try_from(row.try_get::<i32, _>(0)?).unwrap_or(0);
            let holder: Option<String> = row.try_get(1)?;
            let until: Option<i64> = row.try_get(2)?;
            match holder {
                Some(h) if until.is_some_and(|u| u > now) => held.entry(h).or_default().push(part),
                _ => unheld.push(part),
            }
        }
        let replicas = sqlx::query(
            "SELECT id, started_at, heartbeat_at, lease_until, rebalances FROM replicas ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(ReplicaView {
                partitions: held.remove(&id).unwrap_or_default(),
                age_ms: now - r.try_get::<i64, _>(1)?,
                heartbeat_age_ms: now - r.try_get::<i64, _>(2)?,
                lease_left_ms: r.try_get::<i64, _>(3)? - now,
                rebalances: r.try_get(4)?,
                id,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(FleetView {
            partitions,
            replicas,
            unheld,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partitions_page_is_the_start_up_page_with_a_filter() {
        assert!(
            JSON_PAGE.contains(PAGE_FILTER.0),
            "JSON_PAGE changed its filter"
        );
        assert_eq!(parts_page().matches("part_hash % $3").count(), 1);
    }
}
