//! Failover (docs/server.md "Workers: failover"): a session whose worker
//! stopped reporting after it had reached for effects continues on the
//! next worker that claims it, from what the servers hold of the stopped
//! worker's log. The server writes the session's bundle from the shipped
//! log ([`crate::shipped::session_bundle`]), keeps it (the continuing
//! log's `session.start` names its digest, and later bundles of the
//! session carry it as their earlier slice), and hands it to the claiming
//! worker with the stopped worker's key and its own.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_audit::event::Actor;

use super::enqueue::Claimer;
use super::wire::{Continuation, ContinuationBundle};
use crate::error::ServerError;
use crate::sessions::run::now;
use crate::shipped::session_bundle::{self, Purpose};
use crate::state::AppState;

/// Why a session continues on another worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its worker stopped reporting (the lease ran out) after it had
    /// reached for effects.
    WorkerStopped,
    /// It paused on a worker (a drain, a stop) and a person resumed it.
    Resumed,
}

/// Whether a claimed session continues.
pub enum Continues {
    /// It does, from this.
    From(Continuation),
    /// It cannot: why (it fails, never run again from the start).
    Not(String),
}

/// The continuation of `session` for the worker `claimer`.
pub async fn build(
    state: &Arc<AppState>,
    session: &str,
    claimer: &Claimer<'_>,
    cause: Cause,
) -> Result<Continues, ServerError> {
    let Some(s) = session_bundle::find(state, session).await? else {
        return Ok(Continues::Not(
            "none of its record reached the servers from the worker that ran it".into(),
        ));
    };
    let worker = s.log.worker.clone();
    if s.log.revoked_at.is_some() {
        return Ok(Continues::Not(format!(
            "the key of worker {worker}, which ran it, is revoked: its shipped log is not \
             trusted to continue from"
        )));
    }
    if s.ended() {
        return Ok(Continues::Not(format!(
            "it ended on worker {worker}, which did not report it (see that worker's log)"
        )));
    }
    let how = match cause {
        Cause::WorkerStopped => format!("worker {worker} stopped reporting"),
        Cause::Resumed => format!("resumed after it paused on worker {worker}"),
    };
    let claimer_name = claimer.name;
    if s.log.verifier == claimer.verifier {
        // It ran last on this very worker: it resumes from its own log.
        return Ok(Continues::From(Continuation {
            why: format!("{how}; resumed on worker {claimer_name} from its own log"),
            from: None,
        }));
    }
    // In the system's name: no person asked for it.
    let written =
        session_bundle::write(state, session, &s, Purpose::Failover, Actor::system()).await?;
    let digest = session_bundle::digest(&written);
    let last = s.entries.last().map_or(-1, |e| e.seq);
    state
        .store
        .keep_bundle(&digest, session, &s.log.origin, last, &written.bytes, now())
        .await?;
    let why = format!(
        "{how}; continued on worker {claimer_name} from the {} entries of the session the servers \
         held of its log (size {})",
        s.entries.len(),
        s.log.size
    );
    tracing::warn!("session {session}: {why}");
    Ok(Continues::From(Continuation {
        why,
        from: Some(ContinuationBundle {
            bundle: B64.encode(&written.bytes),
            vkey: s.log.verifier.clone(),
            exporter: state.signer.0.verifier().to_string(),
        }),
    }))
}
