//! At start: the sessions the index says were running (the server was
//! killed, crashed, or lost power) and those a shutdown paused are resumed
//! from the log — the log was opened with the runtime's recovery, so any
//! action left without a result is closed as interrupted and is never
//! re-run; the conversation is rebuilt from the log. A session that cannot
//! be resumed is marked paused with the reason (or ended, when the log says
//! it ended). Sessions paused for another reason (a provider outage, a
//! stop) stay paused: `POST /api/v1/sessions/{id}/resume` continues them.
//! Questions asked before the restart are withdrawn from the queue (no
//! process waits for them); a resumed session asks again.

use stele_audit::Effect;
use stele_protocol::{ApprovalState, SessionState};

use super::launch::launch;
use super::worker::Work;
use crate::error::ServerError;
use crate::record::ServerDecision;
use crate::shutdown::SHUTDOWN_PAUSE;
use crate::state::Shared;
use crate::store::SessionRecord;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Why `s` is resumed at start, if it is.
fn resumes(s: &SessionRecord) -> Option<&'static str> {
    match s.state {
        SessionState::Starting | SessionState::Running | SessionState::WaitingApproval => {
            Some("the server stopped while the session ran (killed, crashed, or lost power)")
        }
        SessionState::Paused
            if s.detail
                .as_deref()
                .is_some_and(|d| d.starts_with(SHUTDOWN_PAUSE)) =>
        {
            Some("the server's shutdown paused the session")
        }
        SessionState::Paused | SessionState::Ended | SessionState::Failed => None,
    }
}

/// Resume what should be resumed; how many were.
pub async fn resume_at_start(state: &Shared) -> Result<usize, ServerError> {
    // The questions of this server's own sessions, which its stop left
    // unanswered. On a store several servers share, a remote worker's
    // session asks through whichever server it calls: its question stays.
    let mut withdrawn = Vec::new();
    for a in state.store.pending_approvals().await? {
        if recorded_here(state, &a.session).await {
            state
                .store
                .settle_approval(&a.id, ApprovalState::Expired, None)
                .await?;
            withdrawn.push(a);
        }
    }
    let mut resumed = 0;
    for s in state.store.sessions().await? {
        let Some(why) = resumes(&s) else { continue };
        let asks: Vec<&str> = withdrawn
            .iter()
            .filter(|a| a.session == s.id)
            .map(|a| a.id.as_str())
            .collect();
        // Not in this server's log: another server's session on a shared
        // store (a local session's row is written only once its start is
        // in its server's log), or one queued for or run by a worker.
        // Never this server's to resume.
        if !recorded_here(state, &s.id).await {
            continue;
        }
        let recorded = stele_runtime::session_resume::recorded(&state.log, &s.id);
        if recorded.is_err() && state.config.workers.run == crate::config::RunWhere::Remote {
            // Not in this server's log: queued for, or run by, a worker. The
            // job queue owns it: a claim that ran out is claimed again (or the
            // session marked interrupted after an effect), never resumed here.
            continue;
        }
        let ended = recorded.map(|r| r.ended).unwrap_or(false);
        if ended {
            state
                .store
                .set_session_state(
                    &s.id,
                    SessionState::Ended,
                    Some("ended (as the log records)".into()),
                    now(),
                )
                .await?;
            continue;
        }
        // Recorded before it is done.
        let data = serde_json::json!({
            "session": s.id,
            "trigger": "restart",
            "why": why,
            "withdrawn_approvals": asks,
        });
        state
            .record(system_entry(
                Effect::Allow,
                format!("session {} resumes at start: {why}", s.id),
                data.clone(),
            ))
            .await?;
        match launch(state, Work::Resume(s.id.clone())).await {
            Ok(_) => resumed += 1,
            Err(e) => {
                let detail = format!(
                    "could not be resumed at start ({e}); resume it with POST \
                     /api/v1/sessions/{}/resume",
                    s.id
                );
                state
                    .store
                    .set_session_state(&s.id, SessionState::Paused, Some(detail), now())
                    .await?;
                state
                    .record(system_entry(
                        Effect::Deny,
                        format!("session {} could not be resumed at start: {e}", s.id),
                        data,
                    ))
                    .await?;
            }
        }
    }
    Ok(resumed)
}

/// A `session.resume` entry by the server itself.
fn system_entry(effect: Effect, reason: String, data: serde_json::Value) -> ServerDecision {
    ServerDecision {
        principal: "system".into(),
        teams: Vec::new(),
        action: "session.resume",
        effect,
        reason,
        data,
    }
}

/// Whether this server's log records session `id`. A log that cannot be
/// read counts as recording it (what the start did before it asked).
async fn recorded_here(state: &Shared, id: &str) -> bool {
    let log = state.log.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        log.store()
            .and_then(|s| s.session_row(&id))
            .map_or(true, |row| row.is_some())
    })
    .await
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: SessionState, detail: Option<&str>) -> SessionRecord {
        SessionRecord {
            id: "s-1".into(),
            owner: "alice".into(),
            workspace: "books".into(),
            state,
            detail: detail.map(str::to_string),
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn running_and_shutdown_paused_sessions_resume_others_stay() {
        for st in [
            SessionState::Starting,
            SessionState::Running,
            SessionState::WaitingApproval,
        ] {
            assert!(resumes(&row(st, None)).is_some(), "{st:?}");
        }
        let by_shutdown = format!("{SHUTDOWN_PAUSE} (it resumes when the server starts)");
        assert!(resumes(&row(SessionState::Paused, Some(&by_shutdown))).is_some());
        for detail in [
            None,
            Some("the model provider is unavailable"),
            Some("stopped by alice (resumable)"),
            // Only a detail that begins with the marker counts.
            Some("stopped by alice: paused by the server's shutdown"),
        ] {
            assert!(
                resumes(&row(SessionState::Paused, detail)).is_none(),
                "{detail:?}"
            );
        }
        for st in [SessionState::Ended, SessionState::Failed] {
            assert!(resumes(&row(st, Some(&by_shutdown))).is_none(), "{st:?}");
        }
    }
}
