//! What a graceful shutdown writes for a session parked on a question:
//! the question withdrawn (an `approval.withdraw` entry by the server, per
//! question, naming it), and the action that asked closed as `interrupted`
//! with the reason — never run, never answered. Written before the
//! session's `session.pause` and the log's `log.close`, so the next start
//! finds a cleanly closed log with no open intent: the crash recovery has
//! nothing to close, and the resumed session asks again.

use stele_audit::{Actor, AuditError, AuditLog, Event, EventKind, Outcome, Refs, Status};

use crate::record::ServerDecision;
use crate::state::Shared;
use crate::store::ApprovalRecord;

/// The detail of the `interrupted` entry closing a withdrawn question's action.
pub const WITHDRAWN: &str = "withdrawn by the server's shutdown: the question was not answered \
and the action did not run; the resumed session asks again";

/// Record the withdrawal of `asks` (the questions session `id` waited on)
/// and close the session's open intents as interrupted.
pub async fn record(state: &Shared, id: &str, asks: &[ApprovalRecord]) {
    for a in asks.iter().filter(|a| a.session == id) {
        let entry = state
            .record(ServerDecision {
                principal: "system".into(),
                teams: Vec::new(),
                action: "approval.withdraw",
                effect: stele_audit::Effect::Allow,
                reason: format!(
                    "the server is shutting down: approval {} of session {id} withdrawn, \
                     unanswered (asked again when the session resumes)",
                    a.id
                ),
                data: serde_json::json!({
                    "session": id,
                    "approval": a.id,
                    "shown_sha256": a.shown_sha256,
                    "requester": a.requester,
                }),
            })
            .await;
        if let Err(e) = entry {
            tracing::error!("approval {}: recording its withdrawal: {e}", a.id);
        }
    }
    let log = state.log.clone();
    let session = id.to_string();
    let closed = tokio::task::spawn_blocking(move || close_intents(&log, &session)).await;
    match closed {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("session {id}: closing its withdrawn action: {e}"),
        Err(e) => tracing::error!("session {id}: closing its withdrawn action: {e}"),
    }
}

/// Close session `id`'s open intents as interrupted ([`WITHDRAWN`]); their indices.
fn close_intents(log: &AuditLog, id: &str) -> Result<Vec<u64>, AuditError> {
    // What the parked worker wrote before it asked is in the store first.
    log.sync_blocking()?;
    let open = log.store()?.open_intents()?;
    let mut closed = Vec::new();
    for oi in open
        .into_iter()
        .filter(|o| o.session.as_deref() == Some(id))
    {
        let refs = Refs {
            intent_leaf: stele_audit::leaf::hash_b64(&oi.leaf_hash),
            intent_seq: oi.seq,
        };
        let mut outcome = Outcome::status(Status::Interrupted);
        outcome.detail = Some(WITHDRAWN.into());
        let ev = Event::new(EventKind::Interrupted, Actor::system())
            .with_refs(refs)
            .with_outcome(outcome)
            .in_session(id.to_string());
        log.append_blocking(ev)?;
        closed.push(oi.seq);
    }
    Ok(closed)
}
