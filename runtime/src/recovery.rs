//! Start-up recovery: intents left without a result by a crash or a kill are
//! closed with an `interrupted` entry. They are never re-executed.

use stele_audit::{Actor, AuditError, AuditLog, Event, EventKind, Outcome, Refs, Status};

/// Close every open intent as interrupted; returns their indices.
///
/// Only one process writes a log at a time (the writer lock), so an intent
/// still open when a writer starts belongs to a process that died.
pub fn close_interrupted(log: &AuditLog) -> Result<Vec<u64>, AuditError> {
    let open = log.store()?.open_intents()?;
    let mut closed = Vec::with_capacity(open.len());
    for oi in open {
        let refs = Refs {
            intent_leaf: stele_audit::leaf::hash_b64(&oi.leaf_hash),
            intent_seq: oi.seq,
        };
        let mut outcome = Outcome::status(Status::Interrupted);
        outcome.detail =
            Some("the process recording this action stopped before its result; not re-run".into());
        let ev = Event::new(EventKind::Interrupted, Actor::system())
            .with_refs(refs)
            .with_outcome(outcome);
        // Keep the entry in its session's sub-chain when the session is still open.
        let in_session = match &oi.session {
            Some(id) => log.append_blocking(ev.clone().in_session(id.clone())),
            None => log.append_blocking(ev.clone()),
        };
        match in_session {
            Ok(_) => {}
            Err(AuditError::Invalid(_)) => {
                log.append_blocking(ev)?;
            }
            Err(e) => return Err(e),
        }
        closed.push(oi.seq);
    }
    Ok(closed)
}
