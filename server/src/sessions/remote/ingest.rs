//! A batch of a remote session's messages, taken into the store. The
//! claim's progress in the store (next message number, events kept)
//! moves first, by compare-and-set: whichever server takes a batch — the
//! one that took the claim, another behind the same load balancer, or this
//! one after a restart — takes each message once and in order, and
//! numbers the session's events on from the last one kept. Then the
//! messages are applied (events kept and shown to this server's live
//! watchers, state changes, approvals queued) before the batch is
//! acknowledged.

use std::sync::Arc;

use axum::http::StatusCode;
use stele_protocol::SessionState;

use super::claims::lost;
use super::sequence::Sequencer;
use super::wire::WireMsg;
use crate::error::{ApiError, ServerError};
use crate::sessions::events::{Numbered, WorkerMsg};
use crate::sessions::run::now;
use crate::sessions::webhook;
use crate::state::AppState;
use crate::store::remote::{Progress, RemoteRun};

/// How many times a batch is tried again when another server moved the
/// claim at the same moment (each try re-reads the claim).
const TRIES: usize = 8;

/// Take the batch numbered `from` of `run`'s messages; the last number taken.
pub async fn take(
    state: &Arc<AppState>,
    mut run: RemoteRun,
    from: u64,
    messages: Vec<WireMsg>,
) -> Result<u64, ApiError> {
    for _ in 0..TRIES {
        let was = run.progress;
        let mut seq = Sequencer::at(u64::try_from(was.next_msg).unwrap_or(1));
        let new = seq
            .accept(from, messages.clone())
            .map_err(|gap| ApiError::new(StatusCode::CONFLICT, format!("from: {gap}")))?;
        let acked = seq.acked();
        if new.is_empty() {
            return Ok(acked);
        }
        let mut to = Progress {
            next_msg: i64::try_from(seq.next()).unwrap_or(i64::MAX),
            ..was
        };
        for m in &new {
            to.effects |= m.is_effect();
            to.started |= matches!(m, WireMsg::Started);
            if matches!(m, WireMsg::Event { .. }) {
                to.events += 1;
            }
        }
        if state
            .store
            .advance_run(&run.lease, was.next_msg, to)
            .await?
        {
            apply(state, &run, was.events, new).await;
            return Ok(acked);
        }
        // Another call moved it first: read where it stands and try again.
        let job = run.lease.job;
        let attempt = run.lease.attempt;
        run = match state.store.remote_run(job).await? {
            Some(r) if r.lease == run.lease => r,
            _ => return Err(lost(job, attempt)),
        };
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "job {}: the claim kept moving under this batch; send it again",
            run.lease.job
        ),
    ))
}

/// Apply messages taken (the session's events numbered on from `events`).
async fn apply(state: &Arc<AppState>, run: &RemoteRun, events: i64, new: Vec<WireMsg>) {
    let id = &run.session;
    let mut n = u64::try_from(events).unwrap_or(0);
    let mut whose: Option<(String, String)> = None;
    for m in new {
        let done: Result<(), ServerError> = match m.into_worker(id) {
            WorkerMsg::Event(v) => {
                n += 1;
                let json: Arc<str> = Arc::from(v.to_string());
                let r = state.store.append_event(id, n, &json).await;
                state.sessions.remote.with(&run.lease, |l| {
                    // No watcher is not an error.
                    let _ = l.live.send(Numbered { n, json });
                });
                r
            }
            WorkerMsg::State(s, detail) => {
                if whose.is_none() {
                    whose = match state.store.session(id).await {
                        Ok(Some(rec)) => Some((rec.owner, rec.workspace)),
                        _ => Some(Default::default()),
                    };
                }
                if let Some(w) = &whose {
                    webhook::session_changed(state, id, w, s, detail.as_deref());
                }
                state.store.set_session_state(id, s, detail, now()).await
            }
            WorkerMsg::Ask(a) => ask(state, run, a).await,
            WorkerMsg::Settled(approval, s) => {
                state.pending.forget(&approval);
                state.sessions.remote.with(&run.lease, |l| {
                    l.asks.remove(&approval);
                    l.replies.remove(&approval);
                });
                state
                    .store
                    .settle_approval(&approval, s, None)
                    .await
                    .map(|_| ())
            }
            WorkerMsg::Failed(why) => {
                tracing::warn!("session {id}: its worker could not start it: {why}");
                Ok(())
            }
            WorkerMsg::Started(_) | WorkerMsg::Resumed(_) | WorkerMsg::Claimed(_) => Ok(()),
        };
        if let Err(e) = done {
            // The worker's log is the record; the store's copy is for watchers. Say so loudly.
            tracing::error!("session {id}: the server store failed: {e}");
        }
    }
}

/// An approval waits: queue it, and hear answers offered on this server.
async fn ask(
    state: &Arc<AppState>,
    run: &RemoteRun,
    a: crate::store::ApprovalRecord,
) -> Result<(), ServerError> {
    let (tx, rx) = std::sync::mpsc::channel();
    state.pending.wait_on(&a.id, tx);
    let approval = a.id.clone();
    state.sessions.remote.with(&run.lease, |l| {
        l.asks.insert(approval, rx);
    });
    let notice = webhook::approval_requested(state, &a);
    state.store.add_approval(a).await?;
    // Once it is queued, so the link in the notice finds it.
    state.webhooks.notify(notice);
    state
        .store
        .set_session_state(&run.session, SessionState::WaitingApproval, None, now())
        .await
}
