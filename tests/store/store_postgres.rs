//! The store conformance suite on PostgreSQL (skipped, loudly, unless
//! `LINKFRESH_TEST_PG_URL` or `DATABASE_URL` names a server).

use crate::conformance_tests;
use crate::store_common;
use crate::store_common::TestDb;

conformance_tests!(TestDb::postgres;
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
async fn the_description_names_the_server_but_never_the_password() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let with_password = db.url.replacen("://", "://postgres:hunter2@", 1);
    let with_password = if db.url.contains('@') {
        db.url.clone()
    } else {
        with_password
    };
    let store = linkfresh::store::connect(&with_password).await.unwrap();
    let described = store.describe();
    assert!(described.starts_with("postgres://"), "{described}");
    assert!(!described.contains("hunter2"), "{described}");
}
