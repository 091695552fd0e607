//! The server's side of remote runs: a new session is queued as a job
//! (its row shows it queued); a claim opens the claim's row in the store
//! (whose it is, its progress: `store/remote.rs`), which every server
//! sharing the store takes the worker's reports against; a lease that runs
//! out puts the session back in the queue if it had not reached for an
//! effect yet, and marks it interrupted otherwise (once: the first server
//! to close the claim's row does it).

use std::sync::Arc;
use std::time::Duration;

use stele_protocol::SessionState;

use super::claims;
use super::continuation::{Cause, Continues};
use super::wire::{queued_row, Claimed, Payload, Start};
use super::KIND;
use crate::error::ServerError;
use crate::sessions::launch::LaunchError;
use crate::sessions::run::now;
use crate::sessions::webhook;
use crate::sessions::worker::Job;
use crate::state::AppState;
use crate::store::jobs::Lease;
use crate::store::remote::{Progress, RemoteRun, Standing};
use crate::store::SessionRecord;

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
    let payload = payload(state, &session, job, Start::New);
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

fn payload(state: &AppState, session: &str, job: Job, start: Start) -> Payload {
    Payload {
        session: session.to_string(),
        policy: state.config.server.policy.clone(),
        members: state.bundle.members().users().map(str::to_string).collect(),
        ask_deadline_secs: state.config.server.ask_deadline_secs,
        job,
        start,
    }
}

/// Queue the paused session `rec` (it ran on a worker) to resume on
/// whichever worker claims it, from the servers' copy of its log; its id.
/// `ended` runs once it has finished or will never run.
pub async fn enqueue_resume(
    state: &Arc<AppState>,
    rec: &SessionRecord,
    ended: impl FnOnce() + Send + 'static,
) -> Result<String, LaunchError> {
    if state.sessions.stopping() {
        ended();
        return Err(LaunchError::NoSlot);
    }
    let Some(ws) = state.config.workspace.get(&rec.workspace) else {
        ended();
        return Err(LaunchError::Refused(format!(
            "session {}: its workspace {:?} is no longer on this server",
            rec.id, rec.workspace
        )));
    };
    start_reaper(state);
    let job = Job {
        principal: rec.owner.clone(),
        workspace: rec.workspace.clone(),
        path: ws.path.clone(),
        // The conversation travels in the bundle; the task is not asked again.
        task: String::new(),
        model: state.config.server.model.clone().unwrap_or_default(),
        max_steps: None,
        scheduled: None,
    };
    let t = now();
    let payload = payload(state, &rec.id, job, Start::Resume);
    let queued = async {
        let value = serde_json::to_value(&payload)
            .map_err(|e| ServerError::Start(format!("a job's payload: {e}")))?;
        let detail = "queued to resume on a worker, from the servers' copy of its log".to_string();
        state
            .store
            .set_session_state(&rec.id, SessionState::Starting, Some(detail), t)
            .await?;
        state.store.enqueue(KIND, &value, t).await
    };
    match queued.await {
        Ok(_) => {
            state.sessions.remote.on_end(&rec.id, ended);
            Ok(rec.id.clone())
        }
        Err(e) => {
            ended();
            Err(LaunchError::Refused(format!("queueing the session: {e}")))
        }
    }
}

/// Check the leases every second (once per server; every server sharing
/// the store does, and the first to close an expired claim handles it).
pub fn start_reaper(state: &Arc<AppState>) {
    if state.sessions.remote.reaper.set(()).is_err() {
        return;
    }
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(state) = weak.upgrade() else { return };
            if let Err(e) = reap(&state).await {
                tracing::error!("checking the workers' leases: {e}");
            }
            if let Err(e) = finished_elsewhere(&state).await {
                tracing::error!("checking the sessions queued here: {e}");
            }
        }
    });
}

/// Claims whose lease ran out: back to the queue before any effect,
/// interrupted after one. Claims whose job finished meanwhile are closed.
pub async fn reap(state: &Arc<AppState>) -> Result<(), ServerError> {
    let t = now();
    // Taken before the store's list: a claim opened meanwhile is not dropped.
    let cached = state.sessions.remote.leases();
    if !cached.is_empty() {
        let open = state.store.remote_runs().await?;
        for lease in cached {
            if !open.iter().any(|r| r.lease == lease) {
                // Closed by another server (its finish went there): this
                // server's watchers of it are done.
                forget(state, lease.job);
            }
        }
    }
    for (run, standing) in state.store.stale_runs(t).await? {
        if !state.store.close_run(&run.lease).await? {
            // Another server closed it first.
            continue;
        }
        forget(state, run.lease.job);
        if standing == Standing::Superseded {
            continue;
        }
        let why = format!(
            "worker {} stopped reporting (its lease ran out)",
            run.lease.worker
        );
        if run.progress.effects {
            // Continued by the next claim from what the servers hold of
            // that worker's log, never run again from the start.
            tracing::warn!(
                "session {}: {why} after the session had reached for effects; queued to continue \
                 on another worker from its shipped log",
                run.session
            );
            let detail = format!(
                "queued again: {why} after the session had reached for effects; it continues \
                 from that worker's shipped log"
            );
            if let Err(e) = state
                .store
                .set_session_state(&run.session, SessionState::Starting, Some(detail), t)
                .await
            {
                tracing::error!("session {}: {e}", run.session);
            }
        } else {
            tracing::warn!(
                "session {}: {why} before any effect; queued again",
                run.session
            );
            let detail = format!("queued again: {why} before any effect");
            if let Err(e) = state
                .store
                .set_session_state(&run.session, SessionState::Starting, Some(detail), t)
                .await
            {
                tracing::error!("session {}: {e}", run.session);
            }
        }
    }
    Ok(())
}

/// Drop this server's channels of job `job`'s claim: its live watchers'
/// streams end, its questions are no longer waited on here.
pub fn forget(state: &AppState, job: i64) {
    if let Some(l) = state.sessions.remote.take(job) {
        for id in l.asks.keys() {
            state.pending.forget(id);
        }
        state.sessions.gone(&l.session);
    }
}

/// Sessions this server queued that finished through another server
/// (their worker's last calls reached it): their `ended` runs here.
async fn finished_elsewhere(state: &Arc<AppState>) -> Result<(), ServerError> {
    for id in state.sessions.remote.waiting() {
        let done = state.store.session(&id).await?.is_some_and(|s| {
            matches!(
                s.state,
                SessionState::Ended | SessionState::Failed | SessionState::Paused
            )
        });
        if done {
            state.sessions.remote.end(&id);
        }
    }
    Ok(())
}

/// Session `session` reached for an effect on a worker that is gone, and
/// cannot continue from what the servers hold of that worker's log (`why`):
/// it fails, and is never run again from the start.
async fn interrupt(state: &Arc<AppState>, lease: &Lease, session: &str, why: &str) {
    let detail = format!("interrupted: {why}; it is not run again from the start");
    tracing::warn!("session {session}: {detail}");
    let t = now();
    if let Err(e) = state.store.fail(lease, &detail, t).await {
        tracing::error!("session {session}: failing its job: {e}");
    }
    if let Ok(Some(rec)) = state.store.session(session).await {
        let whose = (rec.owner, rec.workspace);
        webhook::session_changed(state, session, &whose, SessionState::Failed, Some(&detail));
    }
    if let Err(e) = state
        .store
        .set_session_state(session, SessionState::Failed, Some(detail), t)
        .await
    {
        tracing::error!("session {session}: {e}");
    }
    state.sessions.remote.end(session);
}

/// The number of the last event kept for session `session` (0: none), and
/// whether those events show a tool call (a claim before this one reached
/// for an effect).
async fn kept(state: &Arc<AppState>, session: &str) -> Result<(i64, bool), ServerError> {
    let kept = state.store.events_after(session, 0).await?;
    let last = kept
        .last()
        .map_or(0, |(n, _)| i64::try_from(*n).unwrap_or(i64::MAX));
    let effects = kept.iter().any(|(_, json)| {
        serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| v["event"] == "tool_call")
    });
    Ok((last, effects))
}

/// Who claims: the worker's registered name, the account of its token and
/// its log key.
#[derive(Debug, Clone)]
pub struct Claimer<'a> {
    /// The worker's name.
    pub name: &'a str,
    /// The account whose worker token it uses.
    pub account: &'a str,
    /// Its log's verifier key.
    pub verifier: &'a str,
}

/// Claim the next job for worker `by`: its claim is opened in the store,
/// its row says who runs it. None when nothing is queued.
pub async fn claim(
    state: &Arc<AppState>,
    by: &Claimer<'_>,
) -> Result<Option<Claimed>, ServerError> {
    reap(state).await?;
    let lease_secs = state.config.workers.lease_secs;
    loop {
        let t = now();
        let Some(c) = state.store.claim(by.name, lease_secs as i64, t).await? else {
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
        let (events, effects) = kept(state, &session).await?;
        let cause = match payload.start {
            Start::Resume => Some(Cause::Resumed),
            Start::New if c.lease.attempt > 1 && effects => Some(Cause::WorkerStopped),
            Start::New => None,
        };
        let continuation = if let Some(cause) = cause {
            match super::continuation::build(state, &session, by, cause).await {
                Ok(Continues::From(cont)) => Some(cont),
                Ok(Continues::Not(why)) => {
                    interrupt(state, &c.lease, &session, &why).await;
                    continue;
                }
                Err(e) => {
                    // The job stays claimed by nobody until its lease runs
                    // out; the next claim tries again.
                    tracing::error!("session {session}: preparing its continuation: {e}");
                    return Err(e);
                }
            }
        } else {
            None
        };
        let run = RemoteRun {
            lease: c.lease.clone(),
            session: session.clone(),
            account: by.account.to_string(),
            verifier: by.verifier.to_string(),
            progress: Progress {
                next_msg: 1,
                events,
                effects: false,
                started: false,
            },
        };
        state.store.open_run(&run).await?;
        claims::local(state, &run);
        let detail = format!(
            "claimed by worker {} (attempt {})",
            by.name, c.lease.attempt
        );
        let row = queued_row(&session, &payload.job, detail, t);
        if let Err(e) = state
            .store
            .set_session_state(&session, row.state, row.detail, t)
            .await
        {
            tracing::error!("session {session}: indexing its claim: {e}");
        }
        return Ok(Some(Claimed {
            job: c.lease.job,
            attempt: c.lease.attempt,
            lease_secs,
            payload,
            continuation,
        }));
    }
}
