//! `POST /api/v1/schedules` (create), `GET /api/v1/schedules` (those the
//! caller may view), `GET`/`DELETE /api/v1/schedules/{id}`, `GET
//! /api/v1/schedules/{id}/runs`. Creating and removing are `schedule.manage`
//! decisions on the schedule's workspace whose entries carry the whole
//! spec; seeing a schedule or its runs is `schedule.view` (the templates
//! give it to members, approvers and reviewers of the workspace's teams),
//! recorded too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stele_audit::Effect;
use stele_policy::ServerResource;
use stele_protocol::{
    NewSchedule, Schedule, ScheduleList, SchedulePaused, ScheduleRun, ScheduleRunList,
};

use super::sessions::{workspace_teams, MAX_TASK_BYTES};
use super::{authorize, may, rfc3339, Body};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::scheduler::When;
use crate::state::Shared;
use crate::store::schedules::ScheduleRecord;

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn view(s: ScheduleRecord) -> Schedule {
    Schedule {
        id: s.id,
        owner: s.owner,
        spec: s.spec,
        created: rfc3339(s.created),
        next_run: s.next_run.map(rfc3339),
        paused: s.paused.map(|p| SchedulePaused {
            by: p.by,
            at: rfc3339(p.at),
        }),
    }
}

fn workspace_of(state: &Shared, s: &ScheduleRecord) -> ServerResource {
    ServerResource::Workspace {
        name: s.spec.workspace.clone(),
        teams: workspace_teams(state, &s.spec.workspace),
    }
}

/// Check a new schedule; the spec as kept (time zone filled in) and when it is first due.
fn check(state: &Shared, mut spec: NewSchedule) -> Result<(NewSchedule, i64), ApiError> {
    if !state.config.workspace.contains_key(&spec.workspace) {
        let known: Vec<&String> = state.config.workspace.keys().collect();
        return Err(ApiError::bad_request(format!(
            "workspace: no workspace {:?} on this server (it has {known:?})",
            spec.workspace
        )));
    }
    if spec.task.trim().is_empty() || spec.task.len() > MAX_TASK_BYTES {
        return Err(ApiError::bad_request(format!(
            "task: give a task of 1 to {MAX_TASK_BYTES} bytes"
        )));
    }
    if spec.model.is_none() && state.config.server.model.is_none() {
        return Err(ApiError::bad_request(
            "model: give a model (the server has no default `model`)",
        ));
    }
    let when = When::parse(&spec.cron, spec.timezone.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    spec.timezone = Some(when.zone().to_string());
    let first = when
        .next_after(now())
        .ok_or_else(|| ApiError::bad_request("cron: it never fires again"))?;
    Ok((spec, first))
}

/// Create a schedule owned by the caller.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", request_body = NewSchedule,
    security(("token" = []), ("cookie" = [])),
    responses((status = 201, description = "The schedule, owned by the caller", body = Schedule)))]
pub async fn create(
    State(state): State<Shared>,
    who: Principal,
    Body(spec): Body<NewSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let (spec, first) = check(&state, spec)?;
    let rec = ScheduleRecord {
        id: format!("sch-{}", uuid::Uuid::new_v4().simple()),
        owner: who.user.name.clone(),
        spec,
        created: now(),
        next_run: Some(first),
        paused: None,
    };
    // Recorded with the whole spec before it exists.
    authorize(
        &state,
        &who,
        ServerAction::ScheduleManage,
        workspace_of(&state, &rec),
        serde_json::json!({"change": "create", "schedule": rec.id, "spec": rec.spec}),
    )
    .await?;
    state.store.add_schedule(rec.clone()).await?;
    Ok((StatusCode::CREATED, Json(view(rec))))
}

/// The schedules whose workspace the caller may view; one entry names them.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The schedules of the workspaces the caller may view (`schedule.view`)", body = ScheduleList)))]
pub async fn list(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<ScheduleList>, ApiError> {
    let all = state.store.schedules().await?;
    let (shown, hidden): (Vec<ScheduleRecord>, Vec<ScheduleRecord>) =
        all.into_iter().partition(|s| {
            may(
                &state,
                &who,
                ServerAction::ScheduleView,
                workspace_of(&state, s),
            )
        });
    state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "schedule.list",
            effect: Effect::Allow,
            reason: format!(
                "{} listed the schedules of the workspaces they may view",
                who.user.name
            ),
            data: serde_json::json!({
                "method": who.method,
                "schedules": shown.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                "hidden": hidden.len(),
            }),
        })
        .await?;
    Ok(Json(ScheduleList {
        schedules: shown.into_iter().map(view).collect(),
    }))
}

/// Load schedule `id` and check that `who` may do `action` on it
/// (`schedule.view` to inspect, `schedule.manage` to change; recorded with `data`).
pub(super) async fn permitted(
    state: &Shared,
    who: &Principal,
    action: ServerAction,
    id: &str,
    data: serde_json::Value,
) -> Result<ScheduleRecord, ApiError> {
    let Some(s) = state.store.schedule(id).await? else {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    };
    let mut data = data;
    data["schedule"] = serde_json::json!(id);
    authorize(state, who, action, workspace_of(state, &s), data).await?;
    Ok(s)
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The schedule", body = Schedule)))]
pub async fn get_one(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let s = permitted(
        &state,
        &who,
        ServerAction::ScheduleView,
        &id,
        serde_json::json!({"change": "none"}),
    )
    .await?;
    Ok(Json(view(s)))
}

/// Remove a schedule (its runs stay, as history); the entry carries its spec.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 204, description = "Removed (its runs stay on record)")))]
pub async fn delete(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(s) = state.store.schedule(&id).await? else {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    };
    authorize(
        &state,
        &who,
        ServerAction::ScheduleManage,
        workspace_of(&state, &s),
        serde_json::json!({
            "change": "delete", "schedule": id, "owner": s.owner, "spec": s.spec,
        }),
    )
    .await?;
    if !state.store.delete_schedule(&id).await? {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A schedule's runs, oldest first.
#[utoipa::path(get, path = "/api/v1/schedules/{id}/runs", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Its runs, oldest first", body = ScheduleRunList)))]
pub async fn runs(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRunList>, ApiError> {
    permitted(
        &state,
        &who,
        ServerAction::ScheduleView,
        &id,
        serde_json::json!({"change": "none", "runs": true}),
    )
    .await?;
    let runs = state.store.runs(&id).await?;
    Ok(Json(ScheduleRunList {
        runs: runs
            .into_iter()
            .map(|r| ScheduleRun {
                due: rfc3339(r.due),
                at: rfc3339(r.at),
                outcome: r.outcome,
                session: r.session,
                detail: r.detail,
                audit_entry: r.audit_entry,
            })
            .collect(),
    }))
}
