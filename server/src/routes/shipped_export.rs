//! The export of a session that ran on workers (`GET
//! /api/v1/audit/sessions/{id}/export` when the session is not in this
//! server's log): its session bundle written from the shipped log of the
//! worker it ran on last, holding the slices of every earlier worker it
//! continued from (docs/export-format.md §8a). The worker's key verifies
//! the entries and checkpoint, this server's key the manifest:
//! `stele-verify FILE --key WORKER_KEY --export-key SERVER_KEY`
//! (`x-stele-verifier`, `x-stele-export-key`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::audit::actor;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::shipped::session_bundle::{self, Purpose};
use crate::state::Shared;

/// Whether session `id` has entries in this server's own log.
pub(super) async fn in_server_log(state: &Shared, id: &str) -> Result<bool, ApiError> {
    let log = state.log.clone();
    let id = id.to_string();
    super::audit::blocking(move || {
        let store = log.store().map_err(|e| e.to_string())?;
        stele_runtime::conversation::session_leaves(&store, &id)
            .map(|l| !l.is_empty())
            .map_err(|e| e.to_string())
    })
    .await?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The bundle of session `id` from the shipped logs, as a download.
pub(super) async fn send(state: &Shared, who: &Principal, id: &str) -> Result<Response, ApiError> {
    let Some(s) = session_bundle::find(state, id).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "session {id} ran on a worker, and none of its record has reached the servers yet"
            ),
        ));
    };
    if !s.ended() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "session {id} has not ended in the log of worker {} (as shipped so far): its \
                 completeness could not be shown; export it once it has ended",
                s.log.worker
            ),
        ));
    }
    let w = session_bundle::write(state, id, &s, Purpose::Review, actor(who)).await?;
    let filename = format!("stele-session-{id}.tar");
    let len = w.bytes.len();
    let mut r = (StatusCode::OK, w.bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&w.export_entry.to_string()) {
        h.insert("x-stele-export-entry", v);
    }
    let export_key = state.signer.0.verifier().to_string();
    for (name, value) in [
        ("x-stele-verifier", s.log.verifier.clone()),
        ("x-stele-export-key", export_key.clone()),
        ("x-stele-origin", s.log.origin.clone()),
        (
            "x-stele-verify-command",
            format!(
                "stele-verify {filename} --key '{}' --export-key '{export_key}'",
                s.log.verifier
            ),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(r)
}
