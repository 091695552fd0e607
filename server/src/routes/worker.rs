//! The worker API (`stele worker`, docs/server.md "Workers"), for tokens
//! with scope `worker` only: `POST /api/v1/worker/claim` (the next queued
//! session, or 204), `…/jobs/{job}/events` (the session's messages,
//! numbered: a retry never duplicates), `…/jobs/{job}/heartbeat` (the lease
//! runs on; the answer carries pause requests and approval answers),
//! `…/jobs/{job}/finish` (ended, paused or failed). `GET /api/v1/worker`
//! lists the workers seen, for admins.
//!
//! A worker's name is bound to the account whose token first registered
//! it, and each claim to the account that claimed it: a call on a job from
//! any other account is refused (403) and recorded. Claims live in the
//! store, so a worker's calls may reach any server sharing it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use stele_policy::ServerResource;
use stele_protocol::SessionState;

use super::{authorize, Body};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::sessions::approvals::Verdict;
use crate::sessions::remote::claims::{lost, own, refuse};
use crate::sessions::remote::enqueue::{self, Claimer};
use crate::sessions::remote::ingest;
use crate::sessions::remote::wire::{
    ClaimRequest, Claimed, DecisionWire, EventsAck, EventsRequest, FinishRequest, HeartbeatReply,
    HeartbeatRequest, Outcome, VerdictWire, WorkerInfo, WorkerList,
};
use crate::sessions::run::now;
use crate::state::Shared;
use crate::store::remote::Registered;

/// The name a worker registers with, checked.
fn worker_name(name: &str) -> Result<String, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ApiError::bad_request(
            "name: 1 to 64 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(name.to_string())
}

/// Claim the next queued session (204: none).
#[utoipa::path(post, path = "/api/v1/worker/claim", tag = "worker",
    request_body = ClaimRequest,
    security(("token" = [])),
    responses((status = 200, description = "The next queued session, claimed", body = Claimed), (status = 204, description = "Nothing is queued")))]
pub async fn claim(
    State(state): State<Shared>,
    who: Principal,
    Body(req): Body<ClaimRequest>,
) -> Result<Response, ApiError> {
    let name = worker_name(&req.name)?;
    let account = who.user.name.as_str();
    let registered = state
        .store
        .register_worker(&name, account, Some(&req.verifier), now())
        .await?;
    if let Registered::OtherAccount(owner) = registered {
        let reason = format!(
            "worker name {name} is registered by account {owner}; account {account} may not \
             claim under it"
        );
        return Err(refuse(&state, &who, "claim", reason).await);
    }
    let by = Claimer {
        name: &name,
        account,
        verifier: &req.verifier,
    };
    match enqueue::claim(&state, &by).await? {
        Some(c) => {
            tracing::info!(
                "worker {name} claimed job {} (session {})",
                c.job,
                c.payload.session
            );
            Ok(Json(c).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// A batch of the session's messages.
#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/events", tag = "worker",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = EventsRequest,
    security(("token" = [])),
    responses((status = 200, description = "The last message number taken", body = EventsAck)))]
pub async fn events(
    State(state): State<Shared>,
    who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<EventsRequest>,
) -> Result<Json<EventsAck>, ApiError> {
    let run = own(&state, &who, job, req.attempt, "events").await?;
    let acked = ingest::take(&state, run, req.from, req.messages).await?;
    Ok(Json(EventsAck { acked }))
}

/// Keep the lease; hear of pause requests and answers.
#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/heartbeat", tag = "worker",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = HeartbeatRequest,
    security(("token" = [])),
    responses((status = 200, description = "The lease runs on; pause requests and answers", body = HeartbeatReply)))]
pub async fn heartbeat(
    State(state): State<Shared>,
    who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<HeartbeatRequest>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    let run = own(&state, &who, job, req.attempt, "heartbeat").await?;
    let lease = run.lease;
    let t = now();
    if let Registered::OtherAccount(_) = state
        .store
        .register_worker(&lease.worker, &run.account, None, t)
        .await?
    {
        tracing::warn!("worker {}: its name changed hands", lease.worker);
    }
    let lease_secs = state.config.workers.lease_secs as i64;
    if state
        .store
        .heartbeat(&lease, lease_secs, t)
        .await?
        .is_none()
    {
        return Err(lost(job, req.attempt));
    }
    let shared = state.clone();
    let reply = state.sessions.remote.with(&lease, |run| {
        for v in req.verdicts {
            let Some(reply) = run.replies.remove(&v.approval) else {
                continue;
            };
            match v.verdict {
                VerdictWire::Accepted => {
                    shared.pending.forget(&v.approval);
                    run.asks.remove(&v.approval);
                    let _ = reply.send(Verdict::Accepted);
                }
                VerdictWire::CannotLift => {
                    let _ = reply.send(Verdict::CannotLift);
                }
                // Dropped: the API answers that the approval is no longer pending.
                VerdictWire::Gone => drop(reply),
            }
        }
        let mut decisions = Vec::new();
        for (id, rx) in &run.asks {
            if run.replies.contains_key(id) {
                continue;
            }
            if let Ok(c) = rx.try_recv() {
                decisions.push(DecisionWire {
                    approval: id.clone(),
                    approver: c.approver,
                    method: c.method.to_string(),
                    outcome: c.outcome,
                    ticket: c.ticket,
                });
                run.replies.insert(id.clone(), c.reply);
            }
        }
        HeartbeatReply {
            pause: run.control.pause.requested(),
            decisions,
        }
    });
    // Channels are set up by `own`; none means the claim closed meanwhile.
    reply.map(Json).ok_or_else(|| lost(job, req.attempt))
}

/// The session finished on its worker.
#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/finish", tag = "worker",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = FinishRequest,
    security(("token" = [])),
    responses((status = 204, description = "Reported")))]
pub async fn finish(
    State(state): State<Shared>,
    who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    let run = own(&state, &who, job, req.attempt, "finish").await?;
    let t = now();
    let done = match req.outcome {
        Outcome::Ended | Outcome::Paused => state.store.complete(&run.lease, t).await?,
        Outcome::Failed => {
            let why = req
                .reason
                .clone()
                .unwrap_or_else(|| "the worker gave no reason".into());
            if !run.progress.started {
                // It never opened: its row says why (nothing else will).
                state
                    .store
                    .set_session_state(&run.session, SessionState::Failed, Some(why.clone()), t)
                    .await?;
            }
            state.store.fail(&run.lease, &why, t).await?
        }
    };
    state.store.close_run(&run.lease).await?;
    enqueue::forget(&state, job);
    state.sessions.gone(&run.session);
    state.sessions.remote.end(&run.session);
    if !done {
        return Err(lost(job, req.attempt));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The workers registered, and what each runs now.
#[utoipa::path(get, path = "/api/v1/worker", tag = "worker",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The workers registered", body = WorkerList)))]
pub async fn list(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<WorkerList>, ApiError> {
    authorize(
        &state,
        &who,
        ServerAction::Admin,
        ServerResource::Server,
        serde_json::json!({"admin": "workers"}),
    )
    .await?;
    let runs = state.store.remote_runs().await?;
    let workers = state
        .store
        .workers()
        .await?
        .into_iter()
        .map(|w| WorkerInfo {
            sessions: runs
                .iter()
                .filter(|r| r.lease.worker == w.name)
                .map(|r| r.session.clone())
                .collect(),
            name: w.name,
            verifier: w.verifier,
            account: w.account,
            first_seen: w.first_seen,
            last_seen: w.last_seen,
        })
        .collect();
    Ok(Json(WorkerList { workers }))
}
