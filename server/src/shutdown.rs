//! Graceful shutdown (SIGTERM, SIGINT): the listener stops accepting, then
//! every running session is asked to pause at its next safe point — after a
//! step's results are recorded and before the next model request, or where
//! it is parked on an approval. A parked question is never answered by the
//! shutdown: it is taken off the queue (no answer reaches it), stays open in
//! the log, and is asked again when the session resumes. A session that does
//! not reach a safe point within `server.shutdown_grace_secs` (a model reply
//! still streaming, a long tool call) is left as a kill would leave it: its
//! open intent is closed as interrupted, never re-run, when the log is next
//! opened. Each pause is a `session.pause` entry by the server, and the
//! session's row says `paused` with the reason; all of them resume when the
//! server starts again ([`crate::sessions::restart`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stele_audit::Effect;
use stele_protocol::{ApprovalState, SessionState};

use crate::record::ServerDecision;
use crate::state::Shared;

/// How every shutdown pause's detail begins; the sessions whose row says so
/// are resumed when the server starts again.
pub const SHUTDOWN_PAUSE: &str = "paused by the server's shutdown";

/// Wait for SIGINT or SIGTERM.
pub async fn signalled() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Where a session was when the shutdown paused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Its worker reached a safe point between steps and recorded its pause.
    BetweenSteps,
    /// It waits for an approval; the question stays open, unanswered.
    ParkedOnApproval,
    /// It did not reach a safe point within the grace period.
    MidStep,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::BetweenSteps => "between_steps",
            Stop::ParkedOnApproval => "parked_on_approval",
            Stop::MidStep => "mid_step",
        }
    }

    /// The row's detail, when the shutdown writes it (a worker that paused
    /// itself wrote its own).
    fn detail(self, grace: Duration) -> Option<String> {
        match self {
            Stop::BetweenSteps => None,
            Stop::ParkedOnApproval => Some(format!(
                "{SHUTDOWN_PAUSE} while waiting for an approval: the question was not \
                 answered, and is asked again when the session resumes"
            )),
            Stop::MidStep => Some(format!(
                "{SHUTDOWN_PAUSE} before it reached a safe point within {} s: an action in \
                 flight is closed as interrupted (never re-run) when it resumes",
                grace.as_secs()
            )),
        }
    }
}

/// Pause every running session for the shutdown, waiting at most `grace`
/// for them to reach a safe point; the number paused.
pub async fn pause_sessions(state: &Shared, grace: Duration) -> usize {
    state.sessions.begin_stopping();
    let controls = state.sessions.controls();
    for c in &controls {
        c.pause.request(&format!(
            "{SHUTDOWN_PAUSE} (it resumes when the server starts)"
        ));
    }
    // No answer reaches a parked question any more: the shutdown answers none.
    state.pending.withdraw_all();
    let until = Instant::now() + grace;
    loop {
        // Settled, and a finished worker's last rows written by its pump.
        let settled = controls.iter().all(|c| c.settled())
            && controls
                .iter()
                .filter(|c| c.done.load(Ordering::SeqCst))
                .all(|c| c.id.get().is_none_or(|id| !state.sessions.is_live(id)));
        if settled || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Questions asked during the wait are withdrawn too; none is pending for
    // a process that is going away.
    state.pending.withdraw_all();
    let asks = match state.store.pending_approvals().await {
        Ok(asks) => asks,
        Err(e) => {
            tracing::error!("listing pending approvals at shutdown: {e}");
            Vec::new()
        }
    };
    // Only this server's own sessions' questions: on a shared store, a
    // remote worker's session asks through whichever server it calls, and
    // another server still answers it after this one has gone.
    let own: std::collections::HashSet<&str> = controls
        .iter()
        .filter_map(|c| c.id.get().map(String::as_str))
        .collect();
    for a in asks.iter().filter(|a| own.contains(a.session.as_str())) {
        if let Err(e) = state
            .store
            .settle_approval(&a.id, ApprovalState::Expired, None)
            .await
        {
            tracing::error!("approval {}: marking it withdrawn: {e}", a.id);
        }
    }
    let mut paused = 0;
    for c in &controls {
        let Some(id) = c.id.get() else { continue };
        let stop = if c.done.load(Ordering::SeqCst) {
            Stop::BetweenSteps
        } else if c.parked.load(Ordering::SeqCst) {
            Stop::ParkedOnApproval
        } else {
            Stop::MidStep
        };
        if let Some(detail) = stop.detail(grace) {
            if let Err(e) = state
                .store
                .set_session_state(id, SessionState::Paused, Some(detail), now())
                .await
            {
                tracing::error!("session {id}: marking it paused: {e}");
            }
        }
        // A worker that finished during the wait may have ended instead.
        let row = state.store.session(id).await.ok().flatten();
        let is_paused = row.as_ref().is_some_and(|r| {
            r.state == SessionState::Paused
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(SHUTDOWN_PAUSE))
        });
        if !is_paused {
            continue;
        }
        paused += 1;
        if stop == Stop::ParkedOnApproval {
            crate::sessions::withdraw::record(state, id, &asks).await;
        }
        let entry = state
            .record(ServerDecision {
                principal: "system".into(),
                teams: Vec::new(),
                action: "session.pause",
                effect: Effect::Allow,
                reason: format!("the server is shutting down: session {id} paused, resumable"),
                data: serde_json::json!({
                    "session": id,
                    "at": stop.as_str(),
                    "detail": row.and_then(|r| r.detail),
                }),
            })
            .await;
        if let Err(e) = entry {
            tracing::error!("session {id}: recording its pause: {e}");
        }
    }
    paused
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every detail the shutdown writes is one the restart resumes.
    #[test]
    fn the_shutdown_details_carry_the_marker_the_restart_looks_for() {
        let grace = Duration::from_secs(10);
        for stop in [Stop::ParkedOnApproval, Stop::MidStep] {
            let d = stop.detail(grace).unwrap_or_default();
            assert!(d.starts_with(SHUTDOWN_PAUSE), "{d}");
        }
        // A worker that paused itself wrote its own detail.
        assert!(Stop::BetweenSteps.detail(grace).is_none());
    }
}
