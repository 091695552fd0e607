//! `GET /api/v1/sessions/{id}/outputs`: the files a session wrote, as its
//! log records them — each `file.open` the gate allowed as a `file.write`
//! whose `file.close` says it succeeded — so the page can link each to its
//! download. Read from the log (not from the event stream or the folder):
//! what is listed is what the record proves was written. Seeing them is
//! the `session.view` decision on the session, recorded.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use stele_audit::leaf::Leaf;
use stele_audit::{Effect, EventKind, Status};

use super::sessions::permitted;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::{ApiError, ServerError};
use crate::state::Shared;

/// One file a session wrote.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionOutput {
    /// Its workspace path.
    pub path: String,
    /// The log entry of the write's intent (the gate's decision).
    pub intent_entry: u64,
    /// The log entry of its result.
    pub result_entry: u64,
    /// Bytes written, when the result records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of what was written, when the result records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `GET /api/v1/sessions/{id}/outputs`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionOutputs {
    /// The session.
    pub session: String,
    /// Its workspace (the downloads are under it).
    pub workspace: String,
    /// The files it wrote, each once (its last successful write), in the
    /// order they were last written.
    pub files: Vec<SessionOutput>,
}

/// The action a `file.open` decided: its reason starts with it (gate/record.rs).
fn is_write(l: &Leaf) -> bool {
    l.decision.as_ref().is_some_and(|d| {
        d.effect == Effect::Allow
            && d.reason
                .as_deref()
                .is_some_and(|r| r.split_whitespace().next() == Some("file.write"))
    })
}

/// The files session `id` wrote, from its range of the log.
fn written(log: &stele_audit::AuditLog, id: &str) -> Result<Vec<SessionOutput>, ServerError> {
    let store = log.store()?;
    let Some(row) = store.session_row(id)? else {
        return Ok(Vec::new());
    };
    let from = row.first.unwrap_or(0);
    let to = row
        .last
        .map_or_else(|| store.size(), |l| Ok(l.saturating_add(1)))?;
    let mut intents: BTreeMap<u64, String> = BTreeMap::new();
    let mut done: Vec<SessionOutput> = Vec::new();
    let mut scratch = Vec::new();
    store.for_each_entry(from, to, |seq, bytes, _| {
        let leaf = Leaf::decode_canonical(bytes, &mut scratch)?;
        if leaf.session.as_ref().is_none_or(|s| s.id != id) {
            return Ok(());
        }
        match leaf.kind {
            EventKind::FileOpen if is_write(&leaf) => {
                if let Some(p) = leaf.target.as_ref().and_then(|t| t.path.clone()) {
                    intents.insert(seq, p);
                }
            }
            EventKind::FileClose => {
                let ok = leaf
                    .outcome
                    .as_ref()
                    .is_some_and(|o| o.status == Status::Ok);
                let intent = leaf.refs.as_ref().map(|r| r.intent_seq);
                if let (true, Some(path)) = (ok, intent.and_then(|i| intents.remove(&i))) {
                    let data = leaf.data.as_ref();
                    done.retain(|o| o.path != path);
                    done.push(SessionOutput {
                        path,
                        intent_entry: intent.unwrap_or_default(),
                        result_entry: seq,
                        bytes: leaf.outcome.as_ref().and_then(|o| o.bytes_out),
                        sha256: data
                            .and_then(|d| d.get("sha256"))
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(done)
}

/// The files the session wrote, as its log records them.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/outputs", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The files the session's log records as written (a `session.view` entry)", body = SessionOutputs)))]
pub async fn outputs(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<SessionOutputs>, ApiError> {
    let s = permitted(
        &state,
        &who,
        &id,
        ServerAction::SessionView,
        serde_json::json!({"outputs": true}),
    )
    .await?;
    let log = state.log.clone();
    let sid = id.clone();
    let files = tokio::task::spawn_blocking(move || written(&log, &sid))
        .await
        .map_err(|e| ApiError::from(ServerError::Task(e.to_string())))??;
    Ok(Json(SessionOutputs {
        session: id,
        workspace: s.workspace,
        files,
    }))
}
