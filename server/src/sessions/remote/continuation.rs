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

use super::wire::Continuation;
use crate::error::ServerError;
use crate::sessions::run::now;
use crate::shipped::session_bundle::{self, Purpose};
use crate::state::AppState;

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
    claimer: &str,
) -> Result<Continues, ServerError> {
    let Some(s) = session_bundle::find(state, session).await? else {
        return Ok(Continues::Not(
            "the worker that ran it stopped reporting before any of its record reached the \
             servers"
                .into(),
        ));
    };
    let worker = s.log.worker.clone();
    if s.log.revoked_at.is_some() {
        return Ok(Continues::Not(format!(
            "worker {worker} stopped reporting, and its key is revoked: its shipped log is not \
             trusted to continue from"
        )));
    }
    if s.ended() {
        return Ok(Continues::Not(format!(
            "it ended on worker {worker}, which stopped reporting before saying so (see that \
             worker's log)"
        )));
    }
    // In the system's name: no person asked for it.
    let written =
        session_bundle::write(state, session, &s, Purpose::Failover, Actor::system()).await?;
    let digest = session_bundle::digest(&written);
    state
        .store
        .keep_bundle(&digest, session, &s.log.origin, &written.bytes, now())
        .await?;
    let why = format!(
        "worker {worker} stopped reporting; continued on worker {claimer} from the {} entries of \
         the session the servers held of its log (size {})",
        s.entries.len(),
        s.log.size
    );
    tracing::warn!("session {session}: {why}");
    Ok(Continues::From(Continuation {
        why,
        bundle: B64.encode(&written.bytes),
        vkey: s.log.verifier.clone(),
        exporter: state.signer.0.verifier().to_string(),
    }))
}
