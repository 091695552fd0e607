//! `POST /api/v1/sessions/{id}/resume` continues a paused session from the
//! log (a provider outage, a stop, a failed resumption at restart);
//! `POST /api/v1/sessions/{id}/stop` pauses a running one at its next safe
//! point. Both act on someone's session, so both need the bundle's word:
//! resuming is starting work in the session's workspace (`session.start` on
//! the workspace) on a session the caller may steer (`session.approve` on the
//! session: its owner, or an approver or admin of its teams); stopping needs
//! `session.approve`. Every decision is recorded; a refusal is a 403.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stele_policy::ServerResource;
use stele_protocol::{SessionState, SessionSummary, StartedSession};

use super::authorize;
use super::sessions::{launch_problem, permitted, summary, workspace_teams};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::sessions::launch::launch;
use crate::sessions::worker::Work;
use crate::state::Shared;

/// Resume a paused session.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/resume", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The paused session continues from the log (nothing re-run)", body = StartedSession)))]
pub async fn resume(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<StartedSession>, ApiError> {
    let Some(s) = state.store.session(&id).await? else {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    };
    let teams = workspace_teams(&state, &s.workspace);
    authorize(
        &state,
        &who,
        ServerAction::SessionStart,
        ServerResource::Workspace {
            name: s.workspace.clone(),
            teams,
        },
        serde_json::json!({"workspace": s.workspace, "resume": id}),
    )
    .await?;
    permitted(
        &state,
        &who,
        &id,
        ServerAction::SessionApprove,
        serde_json::json!({"resume": id}),
    )
    .await?;
    let _one_at_a_time = state.sessions.resuming.lock().await;
    // Read again under the lock: another resumption may have just run.
    let s = state.store.session(&id).await?.unwrap_or(s);
    let running = state.sessions.is_live(&id) || state.sessions.control_of(&id).is_some();
    match s.state {
        SessionState::Paused if !running => {}
        SessionState::Paused
        | SessionState::Starting
        | SessionState::Running
        | SessionState::WaitingApproval => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("session {id} is running; only a paused session is resumed"),
            ))
        }
        SessionState::Ended | SessionState::Failed => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("session {id} has ended; start a new one"),
            ))
        }
    }
    let id = launch(&state, Work::Resume(id))
        .await
        .map_err(|e| launch_problem(&state, &e, "resume"))?;
    Ok(Json(StartedSession {
        events: format!("/api/v1/sessions/{id}/events"),
        id,
    }))
}

/// Ask a running session to pause at its next safe point (a session parked
/// on an approval pauses once the question is answered or expires).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/stop", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 202, description = "The session pauses at its next safe point, resumable", body = SessionSummary)))]
pub async fn stop(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SessionSummary>), ApiError> {
    let s = permitted(
        &state,
        &who,
        &id,
        ServerAction::SessionApprove,
        serde_json::json!({"stop": id}),
    )
    .await?;
    let Some(control) = state.sessions.control_of(&id) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("session {id} is not running"),
        ));
    };
    control
        .pause
        .request(&format!("stopped by {} (resumable)", who.user.name));
    Ok((StatusCode::ACCEPTED, Json(summary(s))))
}
