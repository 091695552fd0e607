//! The evidence a reviewer takes away: `GET
//! /api/v1/audit/entries/{index}/proof` (one entry's inclusion proof
//! against the newest signed checkpoint, in the C2SP tlog-proof form
//! `stele audit proof` prints and `stele-verify` checks), `GET
//! /api/v1/audit/export?since=&until=` (the bundle `stele audit export
//! --since --until` makes, streamed as the session export is) and `GET
//! /api/v1/audit/sessions/{id}/verify` (the log verified, as the reviewer
//! of one session may ask it). Each is a recorded Cedar decision before
//! anything is read; a proof is also an `audit.read` entry.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_audit::export::layout::Selection;
use stele_audit::{Event, EventKind};
use stele_policy::ServerResource;
use stele_runtime::cli::entry_filter::{time_bound, Bound};

use super::audit::{actor, blocking, send_export};
use super::authorize;
use super::sessions::{permitted, workspace_teams};
use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::{ApiError, ServerError};
use crate::state::Shared;

/// The offline check of a bundle named `file`, as a reviewer types it.
pub fn verify_command(file: &str, vkey: &str) -> String {
    format!("stele-verify {file} --key '{vkey}'")
}

/// The offline check of a proof file named `file`.
fn proof_command(file: &str, vkey: &str) -> String {
    format!("stele audit verify-proof {file} --vkey '{vkey}'")
}

/// The newest signed checkpoint: its size, root and who signed it (the
/// log's key, and any witness cosignatures the note carries).
pub fn checkpoint_facts(store: &stele_audit::Store, origin: &str) -> serde_json::Value {
    let Ok(Some((size, note))) = store.latest_checkpoint() else {
        return serde_json::Value::Null;
    };
    let root = note.lines().nth(2).unwrap_or_default().to_string();
    let signers: Vec<serde_json::Value> = stele_attest::SignedNote::parse(&note)
        .map(|n| {
            n.signatures
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "role": if s.name == origin { "log" } else { "witness" },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({"size": size, "root": root, "signers": signers, "note": note})
}

/// `GET /api/v1/audit/entries/{index}/proof`.
#[utoipa::path(get, path = "/api/v1/audit/entries/{index}/proof", tag = "audit",
    params(
        ("index" = u64, Path, description = "The entry's index in the log"),
        ("format" = Option<String>, Query, description = "json (the default: the parts and the proof text) or tlog (the proof file, as a download)"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The entry, its leaf hash, its audit path and the signed checkpoint it is proven against (C2SP tlog-proof)", body = serde_json::Value)))]
pub async fn proof(
    State(state): State<Shared>,
    who: Principal,
    Path(index): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(bad) = q.keys().find(|k| k.as_str() != "format") {
        return Err(ApiError::bad_request(format!(
            "{bad}: not a parameter of this endpoint (it takes format)"
        )));
    }
    let as_file = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("tlog") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "format: {v:?} is not json or tlog"
            )))
        }
    };
    // What the entry is about decides who may prove it: its session's
    // readers, or (an entry of no session this server ran) the log's. An
    // index past the end is named as such (the log's size is no secret:
    // every checkpoint states it).
    let log = state.log.clone();
    let session = blocking(move || -> Result<Option<String>, ApiError> {
        let store = log.store().map_err(ServerError::from)?;
        if index >= store.size().map_err(ServerError::from)? {
            return Err(ApiError::not_found(format!("no entry {index} in the log")));
        }
        let e = store.entry(index).map_err(ServerError::from)?;
        let mut scratch = Vec::new();
        let leaf = stele_audit::leaf::Leaf::decode_canonical(&e.leaf, &mut scratch)
            .map_err(|e| ServerError::from(stele_audit::AuditError::from(e)))?;
        Ok(leaf.session.map(|s| s.id))
    })
    .await??;
    let on = match &session {
        Some(id) => match state.store.session(id).await? {
            Some(s) => {
                let teams = workspace_teams(&state, &s.workspace);
                authz::session(&s.id, &s.owner, &s.workspace, &teams)
            }
            None => ServerResource::AuditLog,
        },
        None => ServerResource::AuditLog,
    };
    let what = serde_json::json!({"entry": index, "command": "api proof"});
    authorize(&state, &who, ServerAction::AuditRead, on, what.clone()).await?;
    let mut ev_data = what;
    ev_data["method"] = serde_json::json!(who.method);
    let ev = Event::new(EventKind::AuditRead, actor(&who)).with_data(ev_data);
    let log = state.log.clone();
    let made = blocking(move || -> Result<_, ApiError> {
        // The read is durable and after the entry: a checkpoint covers both.
        log.append_blocking(ev).map_err(ServerError::from)?;
        let store = log.store().map_err(ServerError::from)?;
        if index >= store.size().map_err(ServerError::from)? {
            return Err(ApiError::not_found(format!("no entry {index} in the log")));
        }
        if store
            .latest_checkpoint()
            .map_err(ServerError::from)?
            .is_none_or(|(size, _)| size <= index)
        {
            log.sync_blocking().map_err(ServerError::from)?;
        }
        let text =
            stele_audit::proof::make(&store, &log.verifier(), index).map_err(ServerError::from)?;
        let parsed = stele_audit::proof::parse(&text)
            .map_err(|e| ApiError::from(ServerError::Task(format!("proof: {e}"))))?;
        let leaf: serde_json::Value = serde_json::from_slice(&parsed.leaf)
            .map_err(|e| ApiError::from(ServerError::Task(format!("entry {index}: {e}"))))?;
        let body = serde_json::json!({
            "index": index,
            "leaf": leaf,
            "leaf_hash": B64.encode(stele_audit::merkle::leaf_hash(&parsed.leaf)),
            "path": parsed.path.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            "checkpoint": parsed.note,
            "proof": text,
        });
        Ok((body, text))
    })
    .await??;
    let (mut body, text) = made;
    let vkey = state.log.verifier().to_string();
    let file = format!("entry-{index}.tlog-proof");
    if as_file {
        let mut r = (StatusCode::OK, text).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(r);
    }
    body["verifier"] = serde_json::json!(vkey);
    body["command"] = serde_json::json!(proof_command(&file, &vkey));
    Ok(Json(body).into_response())
}

/// The `since` and `until` of a period's query (nothing else is taken), as
/// leaf times.
pub(super) fn range_of(q: &HashMap<String, String>) -> Result<(String, String), ApiError> {
    if let Some(bad) = q.keys().find(|k| !["since", "until"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{bad}: not a parameter of this endpoint (it takes since, until)"
        )));
    }
    let bound = |name: &str, b: Bound| -> Result<String, ApiError> {
        let v = q
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("{name}: give a time")))?;
        time_bound(v, b).map_err(|e| ApiError::bad_request(format!("{name}: {}", e.message)))
    };
    let since = bound("since", Bound::Since)?;
    let until = bound("until", Bound::Until)?;
    if since >= until {
        return Err(ApiError::bad_request(format!(
            "until: {until} is not after since ({since})"
        )));
    }
    Ok((since, until))
}

/// `GET /api/v1/audit/export?since=&until=`: a time range's bundle.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    params(
        ("since" = String, Query, description = "From this time, inclusive (date or RFC 3339)"),
        ("until" = String, Query, description = "Until this time, exclusive (date or RFC 3339)"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The entries of the range as an evidence bundle (stele-verify checks it); X-Stele-Verifier and X-Stele-Verify-Command name the key and the offline check", content_type = "application/x-tar")))]
pub async fn export_range(
    State(state): State<Shared>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (since, until) = range_of(&q)?;
    // A time range holds every team's entries: reading the log itself
    // (the schema's `audit.export` applies to a session; the templates give
    // `audit.read` on the log to admins). The bundle's `audit.export` entry
    // is written as the CLI's is.
    authorize(
        &state,
        &who,
        ServerAction::AuditRead,
        ServerResource::AuditLog,
        serde_json::json!({"command": "api export", "since": since, "until": until}),
    )
    .await?;
    let name = format!(
        "stele-entries-{}-{}.tar",
        since.replace(':', ""),
        until.replace(':', "")
    );
    send_export(&state, &who, Selection::Time { since, until }, name).await
}

/// `GET /api/v1/audit/sessions/{id}/verify`.
#[utoipa::path(get, path = "/api/v1/audit/sessions/{id}/verify", tag = "audit",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The log verified against its key (every entry, checkpoint and session chain), with the newest checkpoint, its signers, and the session's entries", body = serde_json::Value)))]
pub async fn verify_session(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    permitted(
        &state,
        &who,
        &id,
        ServerAction::AuditRead,
        serde_json::json!({"command": "api verify"}),
    )
    .await?;
    let log = state.log.clone();
    let sid = id.clone();
    let result = blocking(move || {
        stele_audit::verify::verify_db_then(log.path(), &log.verifier(), None, |store, r| {
            let n = store
                .session_row(&sid)?
                .map_or(0, |row| row.n.saturating_add(1));
            Ok::<_, stele_audit::AuditError>((n, checkpoint_facts(store, &r.origin)))
        })
    })
    .await?;
    let vkey = state.log.verifier().to_string();
    let file = format!("stele-session-{id}.tar");
    Ok(Json(match result {
        Ok((r, Ok((n, checkpoint)))) => serde_json::json!({
            "verified": true,
            "origin": r.origin,
            "entries": r.entries,
            "checkpoints": r.checkpoints,
            "root": r.root,
            "checkpoint": checkpoint,
            "session": {"id": id, "entries": n},
            "verifier": vkey,
            "command": verify_command(&file, &vkey),
        }),
        Ok((_, Err(e))) => serde_json::json!({
            "verified": false,
            "failure": e.to_string(),
        }),
        Err(f) => serde_json::json!({
            "verified": false,
            "failure": f.to_string(),
        }),
    }))
}
