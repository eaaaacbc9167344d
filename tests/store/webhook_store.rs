//! `remember_delivery` / `forget_delivery` on both backends (PostgreSQL is
//! skipped, loudly, unless `LINKFRESH_TEST_PG_URL` or `DATABASE_URL` is set).

use crate::store_common::{TestDb, t};

async fn an_idempotency_key_is_new_once_until_it_expires(db: &TestDb) {
    let store = linkfresh::store::connect(&db.url).await.unwrap();
    assert!(store.remember_delivery("k1", t(100), t(0)).await.unwrap());
    assert!(!store.remember_delivery("k1", t(100), t(50)).await.unwrap());
    assert!(store.remember_delivery("k2", t(100), t(50)).await.unwrap());
    // Expired: the key counts as new again, with the new expiry.
    assert!(store.remember_delivery("k1", t(300), t(100)).await.unwrap());
    assert!(!store.remember_delivery("k1", t(300), t(200)).await.unwrap());
}

async fn a_forgotten_key_is_new_again(db: &TestDb) {
    let store = linkfresh::store::connect(&db.url).await.unwrap();
    assert!(store.remember_delivery("k", t(100), t(0)).await.unwrap());
    store.forget_delivery("k").await.unwrap();
    assert!(store.remember_delivery("k", t(100), t(1)).await.unwrap());
    store.forget_delivery("never-seen").await.unwrap();
}

async fn expired_keys_are_pruned_as_new_ones_arrive(db: &TestDb) {
    let store = linkfresh::store::connect(&db.url).await.unwrap();
    for n in 0..150 {
        assert!(
            store
                .remember_delivery(&format!("old{n}"), t(10), t(0))
                .await
                .unwrap()
        );
    }
    // Each call prunes a bounded batch of expired keys; two calls clear 150.
    assert!(
        store
            .remember_delivery("new1", t(1000), t(20))
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_delivery("new2", t(1000), t(20))
            .await
            .unwrap()
    );
    assert_eq!(
        count_keys(&db.url).await,
        2,
        "only the unexpired keys remain"
    );
    assert!(
        store
            .remember_delivery("old0", t(1000), t(21))
            .await
            .unwrap()
    );
}

async fn count_keys(url: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM webhook_deliveries";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                if let Some(db) = super::TestDb::sqlite().await {
                    super::$name(&db).await;
                }
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                if let Some(db) = super::TestDb::postgres().await {
                    super::$name(&db).await;
                }
            })*
        }
    };
}

both_backends!(
    an_idempotency_key_is_new_once_until_it_expires,
    a_forgotten_key_is_new_again,
    expired_keys_are_pruned_as_new_ones_arrive
);
