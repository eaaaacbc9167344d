//! Demand from the owning app (issue 17): activity and tags.

use super::*;

/// Activity and tags (issue 17): stored durably, read back by every load
/// (paged, single, change poll), and cheap when repeated: an activity
/// within the coarse interval writes nothing and does not signal a change.
pub async fn activity_and_tags_are_stored_and_a_repeated_activity_writes_nothing(db: &TestDb) {
    use chrono::TimeDelta;
    use linkfresh::store::Activity;
    let store = db.open().await;
    store
        .sync_config(
            "r1",
            &[spec("mk_a", "accounts"), spec("mk_b", "accounts")],
            t(0),
        )
        .await
        .unwrap();
    let (start, _) = store.changes_since(0).await.unwrap();
    let coarse = TimeDelta::seconds(60);
    assert_eq!(
        store
            .record_activity(&id("mk_a"), t(10), coarse)
            .await
            .unwrap(),
        Activity::Recorded
    );
    let (after, changed) = store.changes_since(start).await.unwrap();
    assert_eq!(changed.len(), 1, "an activity wakes the daemon");
    assert_eq!(changed[0].last_activity_at, Some(t(10)));
    // Within a minute of the stored one: nothing written, no change signalled.
    assert_eq!(
        store
            .record_activity(&id("mk_a"), t(40), coarse)
            .await
            .unwrap(),
        Activity::Recent
    );
    assert_eq!(store.changes_since(after).await.unwrap(), (after, vec![]));
    assert_eq!(
        store
            .record_activity(&id("mk_a"), t(71), coarse)
            .await
            .unwrap(),
        Activity::Recorded
    );
    assert_eq!(
        store
            .record_activity(&id("mk_nope"), t(72), coarse)
            .await
            .unwrap(),
        Activity::UnknownLink
    );
    let tags = vec!["plan:premium".to_owned(), "user_type:admin".to_owned()];
    let (before_tags, _) = store.changes_since(0).await.unwrap();
    assert!(store.set_tags(&id("mk_b"), &tags).await.unwrap());
    let (after_tags, changed) = store.changes_since(before_tags).await.unwrap();
    assert_eq!(changed.len(), 1, "new tags wake the daemon");
    // The same tags again (every webhook carries them) write nothing.
    assert!(store.set_tags(&id("mk_b"), &tags).await.unwrap());
    assert_eq!(
        store.changes_since(after_tags).await.unwrap(),
        (after_tags, vec![])
    );
    assert!(!store.set_tags(&id("mk_nope"), &tags).await.unwrap());
    let loaded = store.load_links().await.unwrap();
    assert_eq!(loaded[0].last_activity_at, Some(t(71)));
    assert_eq!(loaded[0].tags, Vec::<String>::new());
    assert_eq!(loaded[1].tags, tags);
    assert_eq!(loaded[1].last_activity_at, None);
    let one = store.load_link(&id("mk_b")).await.unwrap().unwrap();
    assert_eq!(one.tags, tags);
    assert_bulk_load_matches_single_loads(&store).await;
}
