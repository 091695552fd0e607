//! Rebuilding a session's conversation from the audit log's payloads — the
//! log is the one source of truth for resuming.

use stele_audit::leaf::Leaf;
use stele_audit::payload::parse_commit;
use stele_audit::{AuditError, EventKind, PayloadRef, Status, Store};

use crate::payloads::{resolve, LargeValues};
use crate::provider::{ChatRequest, Content, Message, Role, ToolResultStatus};

/// Why a conversation cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// Reading the log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The session is not in the log.
    #[error("session {0} is not in this audit log")]
    UnknownSession(String),
    /// The session has ended.
    #[error("session {0} has ended; start a new one")]
    Ended(String),
    /// A payload needed to resume was redacted or is missing.
    #[error(
        "the {role} payload of entry {seq} is not available ({why}); the session cannot be resumed"
    )]
    Payload {
        /// Entry index.
        seq: u64,
        /// Payload role.
        role: String,
        /// Why.
        why: String,
    },
    /// A payload is not what the runtime wrote.
    #[error("entry {seq}: {detail}")]
    Corrupt {
        /// Entry index.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
}

/// Where payload bodies come from: the log's store, or (importing a
/// session that moved) the bundle it came in.
pub trait Bodies {
    /// The body committed to as `commit`; `None` when it is not there
    /// (redacted, expired, withheld).
    fn body(&self, commit: &stele_audit::merkle::Hash) -> Result<Option<Vec<u8>>, AuditError>;
}

impl Bodies for Store {
    fn body(&self, commit: &stele_audit::merkle::Hash) -> Result<Option<Vec<u8>>, AuditError> {
        Ok(self.payload(commit)?.and_then(|p| p.body))
    }
}

/// A session's entries, in order.
pub fn session_leaves(store: &Store, id: &str) -> Result<Vec<Leaf>, AuditError> {
    let mut out = Vec::new();
    store.for_each_entry(0, u64::MAX, |_, bytes, _| {
        let leaf = Leaf::parse_canonical(bytes)?;
        if leaf.session.as_ref().is_some_and(|s| s.id == id) || is_refs_only(&leaf) {
            out.push(leaf);
        }
        Ok(())
    })?;
    // Keep refs-only entries (interrupted closures written without a session)
    // only when they close an intent of this session.
    let seqs: std::collections::HashSet<u64> = out
        .iter()
        .filter(|l| l.session.is_some())
        .map(|l| l.seq)
        .collect();
    out.retain(|l| {
        l.session.is_some()
            || l.refs
                .as_ref()
                .is_some_and(|r| seqs.contains(&r.intent_seq))
    });
    Ok(out)
}

fn is_refs_only(l: &Leaf) -> bool {
    l.session.is_none() && l.kind == EventKind::Interrupted
}

/// A payload's body, rebuilt if it was stored spliced; the large values it referred to are
/// remembered in `large`.
fn payload(
    store: &dyn Bodies,
    leaf: &Leaf,
    role: &str,
    large: &mut LargeValues,
) -> Result<Vec<u8>, ConversationError> {
    let p = leaf
        .payload
        .iter()
        .find(|p| p.role == role)
        .ok_or_else(|| ConversationError::Payload {
            seq: leaf.seq,
            role: role.into(),
            why: "not recorded".into(),
        })?;
    let body = body_of(store, leaf.seq, role, &p.commit)?;
    let mut fetch = |c: &str| -> Result<Option<Vec<u8>>, stele_audit::AuditError> {
        let Some(h) = parse_commit(c) else {
            return Ok(None);
        };
        store.body(&h)
    };
    let refs: Vec<PayloadRef> = leaf.payload.clone();
    let mut seen = |c: &str, b: &[u8]| {
        if let Some(r) = refs.iter().find(|r| r.commit == c) {
            large.remember(b.to_vec(), r.clone());
        }
    };
    resolve(&p.media, body, &mut fetch, &mut seen).map_err(|e| ConversationError::Payload {
        seq: leaf.seq,
        role: role.into(),
        why: e.to_string(),
    })
}

fn body_of(
    store: &dyn Bodies,
    seq: u64,
    role: &str,
    commit: &str,
) -> Result<Vec<u8>, ConversationError> {
    let cmt = parse_commit(commit).ok_or_else(|| ConversationError::Corrupt {
        seq,
        detail: "bad commitment".into(),
    })?;
    match store.body(&cmt)? {
        Some(b) => Ok(b),
        None => Err(ConversationError::Payload {
            seq,
            role: role.into(),
            why: "redacted".into(),
        }),
    }
}

/// A session's conversation as rebuilt from the log, with the large values its bodies refer
/// to (so that the resumed run stores them once more by reference, not again).
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// The messages to continue with.
    pub messages: Vec<Message>,
    /// The large values already in the log.
    pub large: LargeValues,
}

/// The messages to continue the session with: the last conversation sent to
/// the model, its answer if one was recorded, and a result for every tool
/// call it made — the recorded output, or a note that the call was
/// interrupted and not re-run.
/// `leaves` are the session's entries ([`session_leaves`]); `store` supplies
/// the payload bodies.
pub fn rebuild(
    store: &dyn Bodies,
    id: &str,
    leaves: &[Leaf],
) -> Result<Vec<Message>, ConversationError> {
    Ok(rebuild_session(store, id, leaves, Stopped::InThisLog)?.messages)
}

/// Where the session's record stopped, which decides what the model is
/// told of a call with no entry at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The whole record is here: a call with no entry never started.
    InThisLog,
    /// The record is what a team server held of a worker that stopped: a
    /// call with no entry may have started there (its entries never
    /// reached the server), so the model is told its result is unknown.
    WorkerLost,
}

/// [`rebuild`], with the large values the bodies refer to.
///
/// Results are paired with calls by stele's call id (`data.call_id` of the call's entries),
/// never by the provider's id, which servers omit, repeat and reuse. Each call of the last
/// recorded reply gets: its recorded output (`tool.result`, `mcp.result`); its refusal (a
/// `policy.decision` naming it, or a refused approval); or, if its intent has no result, the
/// note that it was interrupted and NOT re-run; or, with no entry at all, that it never started.
pub fn rebuild_session(
    store: &dyn Bodies,
    id: &str,
    leaves: &[Leaf],
    stopped: Stopped,
) -> Result<Rebuilt, ConversationError> {
    let mut large = LargeValues::default();
    if leaves.is_empty() {
        return Err(ConversationError::UnknownSession(id.into()));
    }
    if leaves.iter().any(|l| {
        matches!(
            l.kind,
            EventKind::SessionEnd | EventKind::SessionInterrupted
        )
    }) {
        return Err(ConversationError::Ended(id.into()));
    }
    let Some(req) = leaves
        .iter()
        .rev()
        .find(|l| l.kind == EventKind::ModelRequest)
    else {
        return Err(ConversationError::Payload {
            seq: 0,
            role: "conversation".into(),
            why: "the session never asked the model".into(),
        });
    };
    let chat: ChatRequest =
        serde_json::from_slice(&payload(store, req, "conversation", &mut large)?).map_err(|e| {
            ConversationError::Corrupt {
                seq: req.seq,
                detail: e.to_string(),
            }
        })?;
    let mut messages = chat.messages;
    let response = leaves.iter().find(|l| {
        l.kind == EventKind::ModelResponse
            && l.refs.as_ref().is_some_and(|r| r.intent_seq == req.seq)
            && l.outcome.as_ref().is_some_and(|o| o.status == Status::Ok)
    });
    let Some(resp) = response else {
        return Ok(Rebuilt { messages, large });
    };
    let content: Vec<Content> =
        serde_json::from_slice(&payload(store, resp, "assistant", &mut large)?).map_err(|e| {
            ConversationError::Corrupt {
                seq: resp.seq,
                detail: e.to_string(),
            }
        })?;
    // Sessions recorded before stele named calls itself carry the provider's id only.
    let named = leaves
        .iter()
        .any(|l| l.seq > req.seq && l.data.as_ref().is_some_and(|d| d.get("call_id").is_some()))
        || content
            .iter()
            .any(|c| matches!(c, Content::ToolUse { id, .. } if id.starts_with("call-")));
    let mut results = Vec::new();
    for c in &content {
        if let Content::ToolUse { id: call, .. } = c {
            let key = if named {
                Key::CallId(call)
            } else {
                Key::ToolUseId(call)
            };
            results.push(tool_result(
                store, leaves, req.seq, call, key, stopped, &mut large,
            )?);
        }
    }
    messages.push(Message::assistant(content));
    if !results.is_empty() {
        messages.push(Message {
            role: Role::User,
            content: results,
        });
    }
    Ok(Rebuilt { messages, large })
}

/// How a call's entries name it.
#[derive(Clone, Copy)]
enum Key<'a> {
    /// stele's id (`data.call_id`).
    CallId(&'a str),
    /// The provider's id (`data.tool_use_id`), in sessions recorded before call ids.
    ToolUseId(&'a str),
}

impl Key<'_> {
    fn names(&self, l: &Leaf) -> bool {
        let field = |k: &str| {
            l.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|v| v.as_str())
        };
        match self {
            Key::CallId(id) => field("call_id") == Some(id),
            Key::ToolUseId(id) => field("tool_use_id") == Some(id),
        }
    }
}

fn tool_result(
    store: &dyn Bodies,
    leaves: &[Leaf],
    after: u64,
    call: &str,
    key: Key<'_>,
    stopped: Stopped,
    large: &mut LargeValues,
) -> Result<Content, ConversationError> {
    // Only entries after the request: an old-style provider id may repeat across turns.
    let later = || leaves.iter().filter(|l| l.seq > after);
    let result = |content: String, ok: bool| Content::ToolResult {
        tool_use_id: call.to_string(),
        content,
        status: if ok {
            ToolResultStatus::Ok
        } else {
            ToolResultStatus::Error
        },
    };
    let ok_of = |l: &Leaf| l.outcome.as_ref().is_some_and(|o| o.status == Status::Ok);
    if let Some(r) = later().find(|l| l.kind == EventKind::ToolResult && key.names(l)) {
        let full = payload(store, r, "output", large)?;
        return Ok(result(crate::tools::for_model(&full), ok_of(r)));
    }
    if let Some(r) = later().find(|l| l.kind == EventKind::McpResult && key.names(l)) {
        let is_error = r
            .data
            .as_ref()
            .and_then(|d| d.get("is_error"))
            .and_then(|v| v.as_bool())
            == Some(true);
        let text = match payload(store, r, "result", large) {
            Ok(body) => serde_json::from_slice(&body)
                .map(|v| crate::tools::mcp::result_text(&v))
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned()),
            Err(_) => r
                .outcome
                .as_ref()
                .and_then(|o| o.detail.clone())
                .unwrap_or_else(|| "the MCP call failed".into()),
        };
        return Ok(result(
            crate::tools::for_model(text.as_bytes()),
            ok_of(r) && !is_error,
        ));
    }
    if let Some(d) = later().find(|l| {
        l.kind == EventKind::PolicyDecision
            && key.names(l)
            && l.outcome
                .as_ref()
                .is_some_and(|o| o.status == Status::Denied)
    }) {
        return Ok(result(refusal_text(d), false));
    }
    if let Some(asked) = later().find(|l| l.kind == EventKind::ApprovalRequest && key.names(l)) {
        let answer = later().find(|l| {
            l.data
                .as_ref()
                .and_then(|d| d.get("request_seq"))
                .and_then(|v| v.as_u64())
                == Some(asked.seq)
        });
        if let Some(a) = answer.filter(|a| a.kind == EventKind::ApprovalDeny) {
            let who = a
                .data
                .as_ref()
                .and_then(|d| d.get("approver"))
                .and_then(|v| v.as_str())
                .unwrap_or("the approver");
            let text = serde_json::json!({
                "error": "denied_by_policy",
                "policies": asked.decision.as_ref().map(|d| d.policies.clone()).unwrap_or_default(),
                "reason": format!("it needs approval and {who} refused it"),
                "audit_entry": a.seq,
            });
            return Ok(result(text.to_string(), false));
        }
    }
    let started = later()
        .any(|l| matches!(l.kind, EventKind::ToolIntent | EventKind::McpCall) && key.names(l));
    let text = match (started, stopped) {
        (true, Stopped::InThisLog) => {
            "interrupted: stele stopped while this tool call was running; it was NOT re-run. \
             Check the workspace before repeating it."
        }
        (true, Stopped::WorkerLost) => {
            "interrupted: the machine running this session stopped while this tool call was \
             running; its result is unknown and it was NOT re-run. Check the workspace before \
             repeating it."
        }
        (false, Stopped::InThisLog) => {
            "not run: the session stopped before this tool call started."
        }
        (false, Stopped::WorkerLost) => {
            "unknown: the machine running this session stopped around the time of this tool \
             call; whether it started is not known and it was NOT re-run. Check the workspace \
             before repeating it."
        }
    };
    Ok(result(text.to_string(), false))
}

/// What the model was told of a refusal recorded as a `policy.decision` entry.
fn refusal_text(d: &Leaf) -> String {
    let rec = d.decision.as_ref();
    let reason = rec.and_then(|r| r.reason.clone()).unwrap_or_default();
    let refused = d
        .data
        .as_ref()
        .and_then(|x| x.get("refused"))
        .and_then(|v| v.as_str());
    match refused {
        Some(code) => serde_json::json!({
            "error": code, "reason": reason, "audit_entry": d.seq,
        }),
        None => serde_json::json!({
            "error": "denied_by_policy",
            "policies": rec.map(|r| r.policies.clone()).unwrap_or_default(),
            "layer": rec.and_then(|r| r.layer.clone()),
            "reason": reason,
            "audit_entry": d.seq,
        }),
    }
    .to_string()
}
