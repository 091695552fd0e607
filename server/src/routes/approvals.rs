//! `GET /api/v1/approvals` (pending approvals the caller may answer) and
//! `POST /api/v1/approvals/{id}` (an answer). The answer must echo the
//! SHA-256 of the text shown; the approver is the authenticated principal
//! and the method how they authenticated; an approval is answered once.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stele_audit::Effect;
use stele_protocol::{
    ApprovalAnswer, ApprovalList, ApprovalOutcome, ApprovalRequest, ApprovalState,
};

use super::sessions::{permitted, workspace_teams};
use super::{may, rfc3339, Body};
use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::sessions::approvals::{Candidate, Verdict};
use crate::state::Shared;
use crate::store::ApprovalRecord;

fn request(a: ApprovalRecord) -> ApprovalRequest {
    ApprovalRequest {
        approval_id: a.id,
        session: a.session,
        shown: a.shown,
        shown_sha256: a.shown_sha256,
        requester: a.requester,
        deadline: rfc3339(a.deadline),
        state: a.state,
        approver: a.approver,
    }
}

/// The approvals waiting that the caller may answer.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The pending approvals the caller may answer", body = ApprovalList)))]
pub async fn list(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<ApprovalList>, ApiError> {
    let mut mine = Vec::new();
    for a in state.store.pending_approvals().await? {
        let Some(s) = state.store.session(&a.session).await? else {
            continue;
        };
        let teams = workspace_teams(&state, &s.workspace);
        let on = authz::session(&s.id, &s.owner, &s.workspace, &teams);
        if may(&state, &who, ServerAction::SessionApprove, on) {
            mine.push(request(a));
        }
    }
    state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "approval.list",
            effect: Effect::Allow,
            reason: "the approvals the caller may answer".into(),
            data: serde_json::json!({
                "method": who.method,
                "status": 200,
                "approvals": mine.iter().map(|a| a.approval_id.as_str()).collect::<Vec<_>>(),
            }),
        })
        .await?;
    Ok(Json(ApprovalList { approvals: mine }))
}

/// A refused answer, recorded.
async fn refuse(
    state: &Shared,
    who: &Principal,
    id: &str,
    status: StatusCode,
    why: String,
) -> ApiError {
    let seq = state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "session.approve",
            effect: Effect::Deny,
            reason: why.clone(),
            data: serde_json::json!({"method": who.method, "status": status.as_u16(), "approval": id}),
        })
        .await;
    match seq {
        Ok(seq) => ApiError::new(status, why).logged(seq),
        Err(e) => e.into(),
    }
}

/// A ticket as the terminal prompt accepts it (printable, trimmed, at most 128 characters).
fn ticket_ok(t: &str) -> bool {
    let (outcome, parsed) = stele_runtime::gate::approval::parse_answer(&format!("y {t}"));
    outcome == stele_policy::ApprovalOutcome::Granted && parsed.as_deref() == Some(t)
}

/// Answer an approval.
#[utoipa::path(post, path = "/api/v1/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "The approval's id")),
    request_body = ApprovalAnswer,
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The answer was taken", body = ApprovalRequest)))]
pub async fn answer(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
    Body(ans): Body<ApprovalAnswer>,
) -> Result<Json<ApprovalRequest>, ApiError> {
    let Some(a) = state.store.approval(&id).await? else {
        return Err(ApiError::not_found(format!("no approval {id:?}")));
    };
    permitted(
        &state,
        &who,
        &a.session,
        ServerAction::SessionApprove,
        serde_json::json!({"approval": id}),
    )
    .await?;
    if a.state != ApprovalState::Pending {
        return Err(refuse(
            &state,
            &who,
            &id,
            StatusCode::CONFLICT,
            format!(
                "approval {id} is no longer pending ({:?}): an approval is answered once",
                a.state
            ),
        )
        .await);
    }
    if ans.shown_sha256 != a.shown_sha256 {
        return Err(refuse(
            &state,
            &who,
            &id,
            StatusCode::CONFLICT,
            "shown_sha256: not the SHA-256 of the text this approval shows; fetch it again \
             (GET /api/v1/approvals) and answer what you read"
                .into(),
        )
        .await);
    }
    if let Some(t) = &ans.ticket {
        if !ticket_ok(t) {
            return Err(ApiError::bad_request(
                "ticket: printable text without spaces at either end, at most 128 characters",
            ));
        }
    }
    let (reply, verdict) = tokio::sync::oneshot::channel();
    let offered = state.pending.offer(
        &id,
        Candidate {
            approver: who.user.name.clone(),
            method: who.method,
            outcome: ans.outcome,
            ticket: ans.ticket.clone(),
            reply,
        },
    );
    let gone = || format!("approval {id} is no longer pending: an approval is answered once");
    if offered.is_err() {
        return Err(refuse(&state, &who, &id, StatusCode::CONFLICT, gone()).await);
    }
    match tokio::time::timeout(Duration::from_secs(30), verdict).await {
        Ok(Ok(Verdict::Accepted)) => {}
        Ok(Ok(Verdict::CannotLift)) => {
            return Err(refuse(
                &state,
                &who,
                &id,
                StatusCode::FORBIDDEN,
                format!(
                    "the policy does not let a grant by {} lift this rule (segregation of \
                     duties: someone other than the requester, or someone the rule names, \
                     must approve); the approval stays open for them",
                    who.user.name
                ),
            )
            .await)
        }
        Ok(Err(_)) | Err(_) => {
            return Err(refuse(&state, &who, &id, StatusCode::CONFLICT, gone()).await)
        }
    }
    let settled = match ans.outcome {
        ApprovalOutcome::Granted => ApprovalState::Granted,
        ApprovalOutcome::Refused => ApprovalState::Refused,
    };
    state
        .store
        .settle_approval(&id, settled, Some(&who.user.name))
        .await?;
    let mut done = a;
    done.state = settled;
    done.approver = Some(who.user.name.clone());
    Ok(Json(request(done)))
}
