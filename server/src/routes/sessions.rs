//! `POST /api/v1/sessions` (start), `GET /api/v1/sessions` (those the
//! caller may see), `GET /api/v1/sessions/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stele_policy::ServerResource;
use stele_protocol::{SessionList, SessionSummary, StartSession, StartedSession};

use super::{authorize, may, rfc3339, Body};
use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::ApiError;
use crate::sessions::launch::{launch, LaunchError};
use crate::sessions::worker::{Job, Work};
use crate::state::Shared;
use crate::store::SessionRecord;

/// Longest task accepted, in bytes.
pub const MAX_TASK_BYTES: usize = 64 * 1024;

pub(super) fn summary(s: SessionRecord) -> SessionSummary {
    SessionSummary {
        id: s.id,
        owner: s.owner,
        workspace: s.workspace,
        state: s.state,
        detail: s.detail,
        created: rfc3339(s.created),
        updated: rfc3339(s.updated),
    }
}

/// The teams of workspace `name` (none: it is not configured any more).
pub fn workspace_teams(state: &Shared, name: &str) -> Vec<String> {
    state
        .config
        .workspace
        .get(name)
        .map(|w| w.teams.clone())
        .unwrap_or_default()
}

/// Start a session; answers once it is in the log (or why it could not start).
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = StartSession,
    security(("token" = []), ("cookie" = [])),
    responses((status = 201, description = "The session started (it is in the log)", body = StartedSession)))]
pub async fn start(
    State(state): State<Shared>,
    who: Principal,
    Body(req): Body<StartSession>,
) -> Result<(StatusCode, Json<StartedSession>), ApiError> {
    let Some(ws) = state.config.workspace.get(&req.workspace).cloned() else {
        let known: Vec<&String> = state.config.workspace.keys().collect();
        return Err(ApiError::bad_request(format!(
            "workspace: no workspace {:?} on this server (it has {known:?})",
            req.workspace
        )));
    };
    if req.task.trim().is_empty() || req.task.len() > MAX_TASK_BYTES {
        return Err(ApiError::bad_request(format!(
            "task: give a task of 1 to {MAX_TASK_BYTES} bytes"
        )));
    }
    let model = req
        .model
        .clone()
        .or_else(|| state.config.server.model.clone())
        .ok_or_else(|| {
            ApiError::bad_request("model: give a model (the server has no default `model`)")
        })?;
    authorize(
        &state,
        &who,
        ServerAction::SessionStart,
        ServerResource::Workspace {
            name: req.workspace.clone(),
            teams: ws.teams.clone(),
        },
        serde_json::json!({"workspace": req.workspace}),
    )
    .await?;
    let job = Job {
        principal: who.user.name.clone(),
        workspace: req.workspace.clone(),
        path: ws.path.clone(),
        task: req.task,
        model,
        max_steps: req.max_steps,
        scheduled: None,
    };
    let id = launch(&state, Work::New(job))
        .await
        .map_err(|e| launch_problem(&state, &e, "start"))?;
    Ok((
        StatusCode::CREATED,
        Json(StartedSession {
            events: format!("/api/v1/sessions/{id}/events"),
            id,
        }),
    ))
}

/// The problem for a session that did not start or resume (`what`).
pub fn launch_problem(state: &Shared, e: &LaunchError, what: &str) -> ApiError {
    match e {
        LaunchError::NoSlot if state.sessions.stopping() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server is shutting down; {what} the session once it is back"),
        ),
        LaunchError::NoSlot => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the server runs its most sessions at once ({}); try again when one ends",
                state.config.server.max_sessions
            ),
        ),
        LaunchError::Refused(why) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the session did not {what}: {why}"),
        ),
        LaunchError::Thread(_) | LaunchError::Vanished => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The sessions the caller may see, newest first: a `session.list`
/// decision, then a `session.view` decision for each session (a forbid on
/// viewing hides it); one entry names what was shown.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The sessions the caller may see, newest first", body = SessionList)))]
pub async fn list(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<SessionList>, ApiError> {
    let all = state.store.sessions().await?;
    let (visible, hidden): (Vec<SessionRecord>, Vec<SessionRecord>) =
        all.into_iter().partition(|s| {
            let teams = workspace_teams(&state, &s.workspace);
            may(
                &state,
                &who,
                ServerAction::SessionView,
                authz::session(&s.id, &s.owner, &s.workspace, &teams),
            )
        });
    let visible: Vec<SessionSummary> = visible.into_iter().map(summary).collect();
    authorize(
        &state,
        &who,
        ServerAction::SessionList,
        ServerResource::Server,
        serde_json::json!({
            "sessions": visible.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            "hidden": hidden.len(),
        }),
    )
    .await?;
    Ok(Json(SessionList { sessions: visible }))
}

/// Load session `id` and check that `who` may `action` it (recorded).
pub async fn permitted(
    state: &Shared,
    who: &Principal,
    id: &str,
    action: ServerAction,
    data: serde_json::Value,
) -> Result<SessionRecord, ApiError> {
    let Some(s) = state.store.session(id).await? else {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    };
    let teams = workspace_teams(state, &s.workspace);
    let mut data = data;
    data["session"] = serde_json::json!(id);
    authorize(
        state,
        who,
        action,
        authz::session(&s.id, &s.owner, &s.workspace, &teams),
        data,
    )
    .await?;
    Ok(s)
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The session", body = SessionSummary)))]
pub async fn get_one(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<SessionSummary>, ApiError> {
    let s = permitted(
        &state,
        &who,
        &id,
        ServerAction::SessionView,
        serde_json::json!({}),
    )
    .await?;
    Ok(Json(summary(s)))
}
