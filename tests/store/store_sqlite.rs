//! The store conformance suite on SQLite, plus what only a file can show.

use crate::conformance_tests;
use crate::store_common;
use crate::store_common::{TestDb, id, spec, t};

conformance_tests!(TestDb::sqlite;
    syncing_the_same_revision_twice_is_skipped_and_changes_no_rows,
    links_dropped_from_config_keep_their_history_and_come_back,
    changing_a_links_products_keeps_the_stored_times,
    an_intent_counts_as_sent_even_if_the_process_dies_before_the_outcome,
    a_429_outcome_puts_back_the_previous_request_times,
    server_times_are_max_merged_and_never_move_backwards,
    outcomes_park_links_and_products_and_resume_unparks_them,
    the_daemons_own_patches_share_a_round_and_do_not_signal_a_change,
    operator_controls_bump_the_change_sequence_for_the_daemon,
    pruning_removes_only_attempts_older_than_the_cutoff,
    due_times_and_removal_by_api_are_stored,
    batches_of_intents_and_outcomes_match_one_by_one,
    a_batch_of_claims_decides_each_as_one_by_one,
    a_claim_on_a_stale_view_is_refused_and_writes_nothing,
    a_lease_holds_off_other_replicas_until_released_or_expired,
    two_replicas_claiming_the_same_links_at_once_never_both_win,
    a_run_of_outcomes_sets_every_field_as_one_by_one,
    an_intent_for_an_unknown_link_fails_and_writes_nothing,
    the_budget_counts_posts_per_bucket_and_can_leave_out_one_replica,
    a_capped_batch_never_commits_past_the_cap_even_when_replicas_race,
    a_budget_exhaustion_episode_writes_one_event_and_none_without_events,
    activity_and_tags_are_stored_and_a_repeated_activity_writes_nothing,
);

#[tokio::test]
async fn a_file_backed_store_keeps_its_data_across_reconnects_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-is-not-needed.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        let store = linkfresh::store::sqlite::SqliteStore::connect(&url)
            .await
            .unwrap();
        use linkfresh::store::Store;
        store
            .sync_config("r1", &[spec("mk_a", "accounts")], t(0))
            .await
            .unwrap();
        assert!(store.describe().contains("nested-is-not-needed.db"));
        store.close().await;
    }
    assert!(path.exists(), "the file is created when missing");
    assert!(
        dir.path().join("nested-is-not-needed.db-wal").exists()
            || std::fs::read(&path).unwrap()[18] == 2,
        "the database is in WAL mode"
    );
    let store = linkfresh::store::connect(&url).await.unwrap();
    let a = store.load_link(&id("mk_a")).await.unwrap().unwrap();
    assert_eq!(a.created_at, t(0));
    let again = store
        .sync_config("r1", &[spec("mk_a", "accounts")], t(5))
        .await
        .unwrap();
    assert!(
        again.skipped_same_revision,
        "the synced revision is remembered too"
    );
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_by_name() {
    let err = match linkfresh::store::connect("mysql://u:secret@h/db").await {
        Ok(_) => panic!("mysql is not a backend"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("\"mysql\"") && !err.contains("secret"),
        "{err}"
    );
}
