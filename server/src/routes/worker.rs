//! The worker API (`stele worker`, docs/server.md "Workers"), for tokens
//! with scope `worker` only: `POST /api/v1/worker/claim` (the next queued
//! session, or 204), `…/jobs/{job}/events` (the session's messages,
//! numbered: a retry never duplicates), `…/jobs/{job}/heartbeat` (the lease
//! runs on; the answer carries pause requests and approval answers),
//! `…/jobs/{job}/finish` (ended, paused or failed). `GET /api/v1/worker`
//! lists the workers seen, for admins.

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
use crate::sessions::events::WorkerMsg;
use crate::sessions::remote::enqueue;
use crate::sessions::remote::wire::{
    ClaimRequest, Claimed, DecisionWire, EventsAck, EventsRequest, FinishRequest, HeartbeatReply,
    HeartbeatRequest, Outcome, VerdictWire, WireMsg, WorkerList,
};
use crate::sessions::run::now;
use crate::state::Shared;

fn lost(job: i64, attempt: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "job {job}: claim {attempt} is no longer this worker's (its lease ran out, or it \
             finished); stop working on it"
        ),
    )
}

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
    state
        .sessions
        .remote
        .seen(&name, Some(&req.verifier), &who.user.name, now());
    match enqueue::claim(&state, &name).await? {
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
    _who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<EventsRequest>,
) -> Result<Json<EventsAck>, ApiError> {
    let shared = state.clone();
    let r = state.sessions.remote.with(job, req.attempt, |run| {
        let new = run.seq.accept(req.from, req.messages)?;
        for m in new {
            run.effects |= m.is_effect();
            match &m {
                WireMsg::Started => run.started = true,
                WireMsg::Ask { id, .. } => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    shared.pending.wait_on(id, tx);
                    run.asks.insert(id.clone(), rx);
                }
                WireMsg::Settled { id, .. } => {
                    shared.pending.forget(id);
                    run.asks.remove(id);
                    run.replies.remove(id);
                }
                _ => {}
            }
            let _ = run.tx.send(m.into_worker(&run.session));
        }
        Ok::<u64, crate::sessions::remote::sequence::Gap>(run.seq.acked())
    });
    match r {
        None => Err(lost(job, req.attempt)),
        Some(Err(gap)) => Err(ApiError::new(StatusCode::CONFLICT, format!("from: {gap}"))),
        Some(Ok(acked)) => Ok(Json(EventsAck { acked })),
    }
}

/// Keep the lease; hear of pause requests and answers.
#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/heartbeat", tag = "worker",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = HeartbeatRequest,
    security(("token" = [])),
    responses((status = 200, description = "The lease runs on; pause requests and answers", body = HeartbeatReply)))]
pub async fn heartbeat(
    State(state): State<Shared>,
    _who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<HeartbeatRequest>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    let Some(lease) = state
        .sessions
        .remote
        .with(job, req.attempt, |r| r.lease.clone())
    else {
        return Err(lost(job, req.attempt));
    };
    state.sessions.remote.seen(&lease.worker, None, "", now());
    let lease_secs = state.config.workers.lease_secs as i64;
    let Some(until) = state.store.heartbeat(&lease, lease_secs, now()).await? else {
        return Err(lost(job, req.attempt));
    };
    let shared = state.clone();
    let reply = state.sessions.remote.with(job, req.attempt, |run| {
        run.lease_until = until;
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
    _who: Principal,
    Path(job): Path<i64>,
    Body(req): Body<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    let Some(run) = state.sessions.remote.take(job, req.attempt) else {
        return Err(lost(job, req.attempt));
    };
    for id in run.asks.keys() {
        state.pending.forget(id);
    }
    let t = now();
    let done = match req.outcome {
        Outcome::Ended | Outcome::Paused => state.store.complete(&run.lease, t).await?,
        Outcome::Failed => {
            let why = req
                .reason
                .clone()
                .unwrap_or_else(|| "the worker gave no reason".into());
            if !run.started {
                // It never opened: its row says why (nothing else will).
                let _ = run
                    .tx
                    .send(WorkerMsg::State(SessionState::Failed, Some(why.clone())));
            }
            state.store.fail(&run.lease, &why, t).await?
        }
    };
    let session = run.session.clone();
    // Its pump ends once it has taken every message.
    drop(run);
    state.sessions.remote.end(&session);
    if !done {
        return Err(lost(job, req.attempt));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The workers this server has seen, and what each runs.
#[utoipa::path(get, path = "/api/v1/worker", tag = "worker",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The workers this server has seen", body = WorkerList)))]
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
    Ok(Json(WorkerList {
        workers: state.sessions.remote.workers(),
    }))
}
