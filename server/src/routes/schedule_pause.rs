//! `POST /api/v1/schedules/{id}/pause` and `…/unpause`: a person stops a
//! schedule from running for a while, and lets it run again. Both are
//! `schedule.manage` decisions on the schedule's workspace, recorded (with
//! the change) before the store changes. A paused schedule has no next run,
//! and runs due while it was paused are not "missed": nobody wanted them.
//! Unpausing computes the next run from now.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stele_protocol::Schedule;

use super::schedules::{now, permitted, view};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::scheduler::When;
use crate::state::Shared;
use crate::store::schedules::Paused;

/// Pause a schedule (a paused one answers 409).
#[utoipa::path(post, path = "/api/v1/schedules/{id}/pause", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Paused: no run starts until it is unpaused (a `schedule.manage` entry, change `pause`)", body = Schedule)))]
pub async fn pause(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let s = permitted(
        &state,
        &who,
        ServerAction::ScheduleManage,
        &id,
        serde_json::json!({"change": "pause"}),
    )
    .await?;
    if let Some(p) = &s.paused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("schedule {id} is paused already (by {})", p.by),
        ));
    }
    let paused = Paused {
        by: who.user.name.clone(),
        at: now(),
    };
    if !state
        .store
        .set_paused(&id, Some(paused.clone()), None)
        .await?
    {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    }
    let mut s = s;
    s.paused = Some(paused);
    s.next_run = None;
    Ok(Json(view(s)))
}

/// Let a paused schedule run again, from its next due time after now.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/unpause", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Running again from its next due time (a `schedule.manage` entry, change `unpause`)", body = Schedule)))]
pub async fn unpause(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, ApiError> {
    let s = permitted(
        &state,
        &who,
        ServerAction::ScheduleManage,
        &id,
        serde_json::json!({"change": "unpause"}),
    )
    .await?;
    if s.paused.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("schedule {id} is not paused"),
        ));
    }
    let next = When::parse(&s.spec.cron, s.spec.timezone.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .next_after(now());
    if !state.store.set_paused(&id, None, next).await? {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    }
    let mut s = s;
    s.paused = None;
    s.next_run = next;
    Ok(Json(view(s)))
}
