//! Whose claim a worker's call is about. Every call on a job (events,
//! heartbeat, finish) is checked against the claim the store holds: it
//! must come from the account whose worker token claimed it (403
//! otherwise, recorded in the server's log like every refusal), and quote
//! the current attempt (409 otherwise: the worker must stop). The claim's
//! channels on this server are set up on its first call here, whichever
//! server took the claim.

use std::sync::Arc;

use axum::http::StatusCode;
use stele_audit::Effect;

use super::runs::Local;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::sessions::manager::{Control, WATCH_BUFFER};
use crate::state::AppState;
use crate::store::remote::RemoteRun;

/// The answer to a call on a claim that is no longer the caller's.
pub fn lost(job: i64, attempt: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "job {job}: claim {attempt} is no longer this worker's (its lease ran out, or it \
             finished); stop working on it"
        ),
    )
}

/// Record that `who` was refused `what` (a worker call) and answer 403.
pub async fn refuse(state: &AppState, who: &Principal, what: &str, reason: String) -> ApiError {
    let recorded = state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "worker",
            effect: Effect::Deny,
            reason: reason.clone(),
            data: serde_json::json!({"method": who.method, "call": what, "status": 403}),
        })
        .await;
    match recorded {
        Ok(seq) => ApiError::new(StatusCode::FORBIDDEN, reason).logged(seq),
        Err(e) => e.into(),
    }
}

/// The open claim of job `job`, checked to be `who`'s and at `attempt`.
pub async fn own(
    state: &Arc<AppState>,
    who: &Principal,
    job: i64,
    attempt: i64,
    what: &str,
) -> Result<RemoteRun, ApiError> {
    let Some(run) = state.store.remote_run(job).await? else {
        return Err(lost(job, attempt));
    };
    if run.account != who.user.name {
        let reason = format!(
            "job {job} was claimed by worker {} of account {}; account {} may not act on it",
            run.lease.worker, run.account, who.user.name
        );
        tracing::warn!("worker call refused: {reason}");
        return Err(refuse(state, who, what, reason).await);
    }
    if run.lease.attempt != attempt {
        return Err(lost(job, attempt));
    }
    local(state, &run);
    Ok(run)
}

/// Make sure this server has channels for `run` (its first call here, or
/// the first since a restart): its live watchers start from here.
pub fn local(state: &Arc<AppState>, run: &RemoteRun) {
    super::enqueue::start_reaper(state);
    if state.sessions.remote.has(&run.lease) {
        return;
    }
    let (live, _) = tokio::sync::broadcast::channel(WATCH_BUFFER);
    state.sessions.go_live(&run.session, live.clone());
    let control = Arc::new(Control::default());
    let _ = control.id.set(run.session.clone());
    state.sessions.remote.insert(Local {
        lease: run.lease.clone(),
        session: run.session.clone(),
        live,
        control,
        asks: Default::default(),
        replies: Default::default(),
    });
}
