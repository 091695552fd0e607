//! Legal holds over the API (docs/retention.md): `POST
//! /api/v1/audit/holds` places one, `POST /api/v1/audit/holds/{id}/release`
//! approves its release. Both are the Cedar action `audit.hold` on the log;
//! the principal is the token's account, never a body field. Release keeps
//! the log's dual control: the first approval is recorded, a second by a
//! different principal releases the hold, the same principal twice is
//! refused (409).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use stele_audit::holds::HoldScope;
use stele_audit::{Actor, AuditError};
use stele_policy::ServerResource;

use super::{authorize, Body};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::{ApiError, ServerError};
use crate::state::Shared;

/// `POST /api/v1/audit/holds`: exactly one of `session` or `principal`.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceHold {
    /// Hold one session's entries.
    pub session: Option<String>,
    /// Hold every entry of one principal.
    pub principal: Option<String>,
    /// Why (a matter, a case number).
    pub reason: String,
}

/// `POST /api/v1/audit/holds/{id}/release`.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseHold {
    /// Why.
    pub reason: String,
}

fn actor(who: &Principal) -> Actor {
    let mut a = Actor::system();
    a.principal = who.user.name.clone();
    a.teams = who.user.teams.clone();
    a
}

fn reason_ok(r: &str) -> Result<String, ApiError> {
    let r = r.trim();
    if r.is_empty() || r.len() > 1024 {
        return Err(ApiError::bad_request(
            "reason: give a reason of 1 to 1024 bytes",
        ));
    }
    Ok(r.to_string())
}

fn refused(e: AuditError) -> ApiError {
    match e {
        AuditError::Denied(why) | AuditError::Refused(why) => {
            ApiError::new(StatusCode::CONFLICT, why)
        }
        other => ServerError::from(other).into(),
    }
}

/// Place a legal hold; its id is its entry's index.
#[utoipa::path(post, path = "/api/v1/audit/holds", tag = "audit", request_body = PlaceHold,
    security(("token" = []), ("cookie" = [])),
    responses((status = 201, description = "The hold is placed", body = serde_json::Value)))]
pub async fn place(
    State(state): State<Shared>,
    who: Principal,
    Body(b): Body<PlaceHold>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let reason = reason_ok(&b.reason)?;
    let scope = match (b.session, b.principal) {
        (Some(s), None) if !s.is_empty() => HoldScope::Session(s),
        (None, Some(p)) if !p.is_empty() => HoldScope::Principal(p),
        _ => {
            return Err(ApiError::bad_request(
                "session, principal: give exactly one of them",
            ))
        }
    };
    authorize(
        &state,
        &who,
        ServerAction::AuditHold,
        ServerResource::AuditLog,
        serde_json::json!({"hold": "place", "scope": scope.to_string()}),
    )
    .await?;
    let (log, digest, by) = (
        state.log.clone(),
        state.bundle.digest().to_string(),
        actor(&who),
    );
    let r = tokio::task::spawn_blocking(move || {
        log.place_hold_blocking(scope, reason, Some(digest), by)
    })
    .await
    .map_err(|e| ApiError::from(ServerError::Task(e.to_string())))?
    .map_err(refused)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"hold": r.seq})),
    ))
}

/// Approve the release of hold `id`.
#[utoipa::path(post, path = "/api/v1/audit/holds/{id}/release", tag = "audit",
    params(("id" = u64, Path, description = "The hold's id")),
    request_body = ReleaseHold,
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The hold is released", body = serde_json::Value)))]
pub async fn release(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<u64>,
    Body(b): Body<ReleaseHold>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = reason_ok(&b.reason)?;
    authorize(
        &state,
        &who,
        ServerAction::AuditHold,
        ServerResource::AuditLog,
        serde_json::json!({"hold": "release", "id": id}),
    )
    .await?;
    let (log, digest, by) = (
        state.log.clone(),
        state.bundle.digest().to_string(),
        actor(&who),
    );
    let r = tokio::task::spawn_blocking(move || {
        log.release_hold_blocking(id, reason, Some(digest), by)
    })
    .await
    .map_err(|e| ApiError::from(ServerError::Task(e.to_string())))?
    .map_err(refused)?;
    let store = state.log.store().map_err(ServerError::from)?;
    let book = stele_audit::retention_plan::holds_of(&store).map_err(ServerError::from)?;
    let released = book.holds.get(&id).is_some_and(|h| h.released.is_some());
    Ok(Json(serde_json::json!({
        "hold": id,
        "entry": r.seq,
        "released": released,
    })))
}
