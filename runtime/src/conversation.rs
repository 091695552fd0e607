//! Rebuilding a session's conversation from the audit log's payloads — the
//! log is the one source of truth for resuming.

use stele_audit::leaf::Leaf;
use stele_audit::payload::parse_commit;
use stele_audit::{AuditError, EventKind, Status, Store};

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

fn payload(store: &Store, leaf: &Leaf, role: &str) -> Result<Vec<u8>, ConversationError> {
    let p = leaf
        .payload
        .iter()
        .find(|p| p.role == role)
        .ok_or_else(|| ConversationError::Payload {
            seq: leaf.seq,
            role: role.into(),
            why: "not recorded".into(),
        })?;
    let cmt = parse_commit(&p.commit).ok_or_else(|| ConversationError::Corrupt {
        seq: leaf.seq,
        detail: "bad commitment".into(),
    })?;
    match store.payload(&cmt)?.and_then(|p| p.body) {
        Some(b) => Ok(b),
        None => Err(ConversationError::Payload {
            seq: leaf.seq,
            role: role.into(),
            why: "redacted".into(),
        }),
    }
}

/// The messages to continue the session with: the last conversation sent to
/// the model, its answer if one was recorded, and a result for every tool
/// call it made — the recorded output, or a note that the call was
/// interrupted and not re-run.
/// `leaves` are the session's entries ([`session_leaves`]); `store` supplies
/// the payload bodies.
pub fn rebuild(
    store: &Store,
    id: &str,
    leaves: &[Leaf],
) -> Result<Vec<Message>, ConversationError> {
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
        serde_json::from_slice(&payload(store, req, "conversation")?).map_err(|e| {
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
        return Ok(messages);
    };
    let content: Vec<Content> = serde_json::from_slice(&payload(store, resp, "assistant")?)
        .map_err(|e| ConversationError::Corrupt {
            seq: resp.seq,
            detail: e.to_string(),
        })?;
    let mut results = Vec::new();
    for c in &content {
        if let Content::ToolUse { id: call, .. } = c {
            results.push(tool_result(store, leaves, call)?);
        }
    }
    messages.push(Message::assistant(content));
    if !results.is_empty() {
        messages.push(Message {
            role: Role::User,
            content: results,
        });
    }
    Ok(messages)
}

fn tool_use_id(l: &Leaf) -> Option<&str> {
    l.data.as_ref()?.get("tool_use_id")?.as_str()
}

fn tool_result(store: &Store, leaves: &[Leaf], call: &str) -> Result<Content, ConversationError> {
    let done = leaves
        .iter()
        .find(|l| l.kind == EventKind::ToolResult && tool_use_id(l) == Some(call));
    let (content, status) = match done {
        Some(r) => {
            let full = payload(store, r, "output")?;
            let ok = r.outcome.as_ref().is_some_and(|o| o.status == Status::Ok);
            (
                crate::tools::for_model(&full),
                if ok {
                    ToolResultStatus::Ok
                } else {
                    ToolResultStatus::Error
                },
            )
        }
        None => {
            let started = leaves
                .iter()
                .any(|l| l.kind == EventKind::ToolIntent && tool_use_id(l) == Some(call));
            let text = if started {
                "interrupted: stele stopped while this tool call was running; it was NOT re-run. \
                 Check the workspace before repeating it."
            } else {
                "not run: the session stopped before this tool call started."
            };
            (text.to_string(), ToolResultStatus::Error)
        }
    };
    Ok(Content::ToolResult {
        tool_use_id: call.to_string(),
        content,
        status,
    })
}
