//! The server's own entries in the audit log: every authentication, login,
//! refusal and authorisation decision is a `policy.decision` entry by the
//! server, naming the principal (or `anonymous`), the action, the outcome
//! and why. Written durably before the answer leaves the server.

use std::sync::Arc;

use stele_audit::{Actor, AuditLog, DecisionRecord, Effect, Event, EventKind};

use crate::error::ServerError;

/// One server decision to record.
#[derive(Debug, Clone)]
pub struct ServerDecision {
    /// Who asked (`anonymous` when nobody could be identified).
    pub principal: String,
    /// Their teams.
    pub teams: Vec<String>,
    /// The server action (`authenticate`, `login`, `session.view`, …).
    pub action: &'static str,
    /// Allowed or refused.
    pub effect: Effect,
    /// Why, in words.
    pub reason: String,
    /// Details: method, HTTP status, path, session, approval.
    pub data: serde_json::Value,
}

/// Which policies decided, and in which layer (a Cedar decision's).
#[derive(Debug, Clone, Default)]
pub struct Deciders {
    /// The deciding layer (`org`, `team`, `project`).
    pub layer: Option<String>,
    /// The ids of the determining policies.
    pub policies: Vec<String>,
}

/// Append `d` durably; the entry's index.
pub async fn record(
    log: &Arc<AuditLog>,
    bundle_digest: &str,
    d: ServerDecision,
) -> Result<u64, ServerError> {
    record_decided(log, bundle_digest, d, Deciders::default()).await
}

/// Append `d`, decided by `by`, durably; the entry's index.
pub async fn record_decided(
    log: &Arc<AuditLog>,
    bundle_digest: &str,
    d: ServerDecision,
    by: Deciders,
) -> Result<u64, ServerError> {
    let mut actor = Actor::system();
    actor.principal = d.principal;
    actor.teams = d.teams;
    let mut data = serde_json::json!({ "server_action": d.action });
    if let (Some(o), serde_json::Value::Object(extra)) = (data.as_object_mut(), d.data) {
        o.extend(extra);
    }
    let ev = Event::new(EventKind::PolicyDecision, actor)
        .with_decision(DecisionRecord {
            bundle: bundle_digest.to_string(),
            effect: d.effect,
            layer: by.layer,
            policies: by.policies,
            reason: Some(d.reason),
        })
        .with_data(data);
    let log = log.clone();
    let r = tokio::task::spawn_blocking(move || log.append_blocking(ev))
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
    Ok(r.seq)
}
