#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The store's contract: every case runs on SQLite and on PostgreSQL (a
//! temporary cluster the test starts; where PostgreSQL is not installed
//! the PostgreSQL half prints a SKIPPED line naming scripts/setup-postgres).
//! Same calls, same answers: an account or token works only once its admin
//! change is recorded, an approval settles once, events keep their numbers,
//! a paused schedule cannot be moved on, a job is never held by two workers,
//! a worker's name stays its account's, a claim's progress moves once,
//! a shipped batch is stored once and never under a revoked key, a bundle
//! handed out to continue a session is kept once under its digest.

mod accounts;
mod engines;
mod jobs;
mod kept_bundles;
mod remote;
mod schedules;
mod sessions;
mod shipped_reads;
mod shipping;

/// For each case, a test on each engine (`CASE::sqlite`, `CASE::postgres`).
macro_rules! contract {
    ($($module:ident :: $case:ident),* $(,)?) => {$(
        mod $case {
            use super::engines::{run, Engine};

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run(Engine::Sqlite, super::$module::$case).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run(Engine::Postgres, super::$module::$case).await;
            }
        }
    )*};
}

contract!(
    accounts::an_account_works_only_once_its_change_is_recorded,
    accounts::a_token_works_only_once_recorded_and_until_expired_or_revoked,
    accounts::revoking_by_id_needs_one_live_token_and_queues_the_change,
    accounts::a_setup_secret_works_once_and_not_after_expiry,
    accounts::browser_sessions_live_expire_and_end_at_logout,
    sessions::the_sessions_index_is_newest_first_and_keeps_details,
    sessions::events_keep_their_numbers_and_replay_in_order,
    sessions::an_answer_counts_once_even_when_answers_race,
    schedules::a_paused_schedule_has_no_next_run_and_cannot_be_moved_on,
    schedules::runs_are_kept_in_order_with_their_outcomes,
    schedules::webhook_deliveries_wait_until_done,
    jobs::concurrent_claimers_never_hold_one_job_twice,
    jobs::an_expired_lease_is_claimed_again_and_fences_the_old_worker,
    jobs::heartbeats_keep_a_lease_and_failures_are_kept,
    remote::a_worker_name_stays_with_the_account_that_registered_it,
    remote::a_claims_progress_moves_once_from_where_it_stands,
    remote::the_reaper_finds_expired_and_left_over_claims_in_one_list,
    shipping::a_shipped_batch_is_stored_once_from_where_the_origin_stands,
    shipping::a_revoked_key_takes_no_more_batches,
    shipping::a_search_finds_a_sessions_timeline_and_a_teams_denials,
    shipped_reads::a_shipped_sessions_entries_bodies_and_nodes_read_back,
    kept_bundles::a_bundle_is_kept_once_under_its_digest,
);
