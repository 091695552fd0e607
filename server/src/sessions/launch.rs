//! Starting a session's worker and pump, for a new session or one resumed
//! from the log; answers once the session is in the log (or why not).

use std::sync::Arc;

use super::events::pump;
use super::manager::WATCH_BUFFER;
use super::worker::{self, Work};
use crate::config::RunWhere;
use crate::state::AppState;

/// Why a session did not start or resume.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Every slot is taken, or the server is stopping.
    #[error("no free session slot (the server runs its most sessions at once, or is stopping)")]
    NoSlot,
    /// The worker thread could not be made.
    #[error("starting a session thread: {0}")]
    Thread(std::io::Error),
    /// The session refused to start or resume: why.
    #[error("{0}")]
    Refused(String),
    /// The worker ended without saying.
    #[error("the session's worker ended before saying whether it started")]
    Vanished,
}

/// Run `work` on a worker of its own; the session's id once it is in the
/// log and indexed.
pub async fn launch(state: &Arc<AppState>, work: Work) -> Result<String, LaunchError> {
    launch_then(state, work, || {}).await
}

/// [`launch`], calling `ended` once the session's pump has ended: the
/// session finished, or never started (the scheduler frees its schedule).
pub async fn launch_then(
    state: &Arc<AppState>,
    work: Work,
    ended: impl FnOnce() + Send + 'static,
) -> Result<String, LaunchError> {
    match (state.config.workers.run, &work) {
        (RunWhere::Remote, Work::New(job)) => {
            return super::remote::enqueue::enqueue(state, job.clone(), ended).await;
        }
        (RunWhere::Remote, Work::Resume(id))
            if stele_runtime::session_resume::recorded(&state.log, id).is_err() =>
        {
            // It ran on a worker: it resumes on whichever worker claims it.
            let rec = match state.store.session(id).await {
                Ok(Some(rec)) => rec,
                Ok(None) => {
                    ended();
                    return Err(LaunchError::Refused(format!("no session {id}")));
                }
                Err(e) => {
                    ended();
                    return Err(LaunchError::Refused(format!("session {id}: {e}")));
                }
            };
            return super::remote::enqueue::enqueue_resume(state, &rec, ended).await;
        }
        _ => {}
    }
    let Some(slot) = state.sessions.slot() else {
        ended();
        return Err(LaunchError::NoSlot);
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (live, _) = tokio::sync::broadcast::channel(WATCH_BUFFER);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let pumped = state.clone();
    tokio::spawn(async move {
        pump(pumped, rx, live, started_tx).await;
        ended();
    });
    let control = state.sessions.register();
    let n = control.0;
    if let Err(e) = worker::spawn(state.clone(), work, tx, slot, control) {
        state.sessions.finished(n);
        return Err(LaunchError::Thread(e));
    }
    match started_rx.await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(why)) => Err(LaunchError::Refused(why)),
        Err(_) => Err(LaunchError::Vanished),
    }
}
