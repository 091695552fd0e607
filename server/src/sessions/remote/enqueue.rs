//! The server's side of remote runs: a new session is queued as a job
//! (its row shows it queued); a claim sets up its pump, fed by the worker's
//! reports; a lease that runs out puts the session back in the queue if it
//! had not reached for an effect yet, and marks it interrupted otherwise.

use std::sync::Arc;
use std::time::Duration;

use stele_protocol::SessionState;

use super::runs::Run;
use super::sequence::Sequencer;
use super::wire::{queued_row, Claimed, Payload};
use super::KIND;
use crate::error::ServerError;
use crate::sessions::events::{pump, WorkerMsg};
use crate::sessions::launch::LaunchError;
use crate::sessions::manager::{Control, WATCH_BUFFER};
use crate::sessions::run::now;
use crate::sessions::worker::Job;
use crate::state::AppState;
use crate::store::jobs::Lease;

/// Queue `job` for a worker; the session's id (its row shows it queued).
/// `ended` runs once it has finished or will never run.
pub async fn enqueue(
    state: &Arc<AppState>,
    job: Job,
    ended: impl FnOnce() + Send + 'static,
) -> Result<String, LaunchError> {
    if state.sessions.stopping() {
        ended();
        return Err(LaunchError::NoSlot);
    }
    start_reaper(state);
    let session = format!("s-{}", uuid::Uuid::new_v4().simple());
    let t = now();
    let row = queued_row(&session, &job, "queued for a worker".into(), t);
    let payload = Payload {
        session: session.clone(),
        policy: state.config.server.policy.clone(),
        members: state.bundle.members().users().map(str::to_string).collect(),
        ask_deadline_secs: state.config.server.ask_deadline_secs,
        job,
    };
    let queued = async {
        let value = serde_json::to_value(&payload)
            .map_err(|e| ServerError::Start(format!("a job's payload: {e}")))?;
        state.store.put_session(row).await?;
        state.store.enqueue(KIND, &value, t).await
    };
    match queued.await {
        Ok(_) => {
            state.sessions.remote.on_end(&session, ended);
            Ok(session)
        }
        Err(e) => {
            ended();
            Err(LaunchError::Refused(format!("queueing the session: {e}")))
        }
    }
}

/// Check the leases every second (once per server).
fn start_reaper(state: &Arc<AppState>) {
    if state.sessions.remote.reaper.set(()).is_err() {
        return;
    }
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(state) = weak.upgrade() else { return };
            reap(&state).await;
        }
    });
}

/// Runs whose lease ran out: back to the queue before any effect,
/// interrupted after one.
pub async fn reap(state: &Arc<AppState>) {
    for run in state.sessions.remote.expired(now()) {
        let why = format!(
            "worker {} stopped reporting (its lease ran out)",
            run.lease.worker
        );
        for id in run.asks.keys() {
            state.pending.forget(id);
        }
        if run.effects {
            interrupt(state, &run.lease, &run.session, &why, Some(&run.tx)).await;
        } else {
            tracing::warn!(
                "session {}: {why} before any effect; queued again",
                run.session
            );
            let _ = run.tx.send(WorkerMsg::State(
                SessionState::Starting,
                Some(format!("queued again: {why} before any effect")),
            ));
        }
    }
}

/// Session `session` reached for an effect on a worker that is gone: it is
/// never run again from the start; resuming it from that worker's log is
/// not supported yet.
async fn interrupt(
    state: &Arc<AppState>,
    lease: &Lease,
    session: &str,
    why: &str,
    tx: Option<&crate::sessions::events::WorkerTx>,
) {
    let detail = format!(
        "interrupted: {why} after the session had started effects; its log is on that \
         worker, and resuming it elsewhere is not supported yet"
    );
    tracing::warn!("session {session}: {detail}");
    let t = now();
    if let Err(e) = state.store.fail(lease, &detail, t).await {
        tracing::error!("session {session}: failing its job: {e}");
    }
    let r = match tx {
        Some(tx) => tx
            .send(WorkerMsg::State(SessionState::Failed, Some(detail.clone())))
            .map_err(|_| ()),
        None => Err(()),
    };
    if r.is_err() {
        if let Err(e) = state
            .store
            .set_session_state(session, SessionState::Failed, Some(detail), t)
            .await
        {
            tracing::error!("session {session}: {e}");
        }
    }
    state.sessions.remote.end(session);
}

/// Whether session `session`'s kept events show a tool call (a claim
/// before this one reached for an effect).
async fn had_effects(state: &Arc<AppState>, session: &str) -> Result<bool, ServerError> {
    let kept = state.store.events_after(session, 0).await?;
    Ok(kept.iter().any(|(_, json)| {
        serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| v["event"] == "tool_call")
    }))
}

/// Claim the next job for worker `name`: its pump is set up, its row says
/// who runs it. None when nothing is queued.
pub async fn claim(state: &Arc<AppState>, name: &str) -> Result<Option<Claimed>, ServerError> {
    reap(state).await;
    let lease_secs = state.config.workers.lease_secs;
    loop {
        let t = now();
        let Some(c) = state.store.claim(name, lease_secs as i64, t).await? else {
            return Ok(None);
        };
        let payload = if c.kind == KIND {
            serde_json::from_value::<Payload>(c.payload.clone()).map_err(|e| e.to_string())
        } else {
            Err(format!("unknown job kind {:?}", c.kind))
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                state.store.fail(&c.lease, &e, t).await?;
                continue;
            }
        };
        let session = payload.session.clone();
        if c.lease.attempt > 1 && had_effects(state, &session).await? {
            let why = "an earlier worker stopped reporting".to_string();
            interrupt(state, &c.lease, &session, &why, None).await;
            continue;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (live, _) = tokio::sync::broadcast::channel(WATCH_BUFFER);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(pump(state.clone(), rx, live, started_tx));
        let detail = format!("claimed by worker {name} (attempt {})", c.lease.attempt);
        let row = queued_row(&session, &payload.job, detail, t);
        let _ = tx.send(WorkerMsg::Claimed(row));
        if let Ok(Err(e)) = started_rx.await {
            tracing::error!("session {session}: indexing its claim: {e}");
        }
        let control = Arc::new(Control::default());
        let _ = control.id.set(session.clone());
        state.sessions.remote.insert(Run {
            lease: c.lease.clone(),
            session,
            lease_until: c.lease_until,
            seq: Sequencer::default(),
            tx,
            control,
            effects: false,
            started: false,
            asks: Default::default(),
            replies: Default::default(),
        });
        return Ok(Some(Claimed {
            job: c.lease.job,
            attempt: c.lease.attempt,
            lease_secs,
            payload,
        }));
    }
}
