//! `GET /api/v1/audit/fleet-export?since=&until=`: a period's evidence
//! across the fleet, as one tar download of bundles each verified on its
//! own (docs/server.md "Reviewers across the fleet"):
//!
//! - `server.tar`: this server's own log for the period (what `GET
//!   /api/v1/audit/export` gives);
//! - `sessions/<session>.tar`: each session that ran on workers and has
//!   shipped entries in the period, written from the shipped log it ran in
//!   last, earlier logs' slices nested (as `GET
//!   /api/v1/audit/sessions/{id}/export` gives);
//! - `fleet.json`: what each file is, the keys to verify it with (the
//!   server's log key; each worker's log key and the server's export key)
//!   and the sessions left out, with why (not ended yet, nothing shipped).
//!
//! Every bundle is recorded in this server's log before it is written, as
//! its own export is; the decision is `audit.read` on the log, as for a
//! period's export.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stele_audit::export::attestation::file_stem;
use stele_audit::export::layout::Selection;
use stele_audit::export::tar::TarWriter;
use stele_policy::ServerResource;

use super::audit::{actor, blocking, exports_dir, write_export};
use super::audit_evidence::range_of;
use super::authorize;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::{ApiError, ServerError};
use crate::shipped::session_bundle::{self, Purpose};
use crate::state::Shared;

/// `GET /api/v1/audit/fleet-export?since=&until=`.
#[utoipa::path(get, path = "/api/v1/audit/fleet-export", tag = "audit",
    params(
        ("since" = String, Query, description = "From this time, inclusive (date or RFC 3339)"),
        ("until" = String, Query, description = "Until this time, exclusive (date or RFC 3339)"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "A tar of bundles: this server's log for the period (server.tar), each session that ran on workers in it (sessions/*.tar), and fleet.json naming the keys to verify each with", content_type = "application/x-tar")))]
pub async fn export(
    State(state): State<Shared>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (since, until) = range_of(&q)?;
    authorize(
        &state,
        &who,
        ServerAction::AuditRead,
        ServerResource::AuditLog,
        serde_json::json!({"command": "api fleet-export", "since": since, "until": until}),
    )
    .await?;
    // The pack is written to an unlinked file beside the log, a bundle at
    // a time, and streamed from it: a period of a busy fleet never has to
    // fit in memory (only one session's bundle at a time does).
    let mut pack = Pack::create(&exports_dir(&state)?).await?;
    let mut listed = Vec::new();
    let mut left_out = Vec::new();
    // This server's own log for the period.
    let selection = Selection::Time {
        since: since.clone(),
        until: until.clone(),
    };
    let (entry, (file, len)) = write_export(&state, &who, selection).await?;
    pack = pack.add("server.tar", len, file).await?;
    let server_key = state.log.verifier().to_string();
    listed.push(serde_json::json!({
        "file": "server.tar", "log": state.log.origin(), "key": server_key,
        "export_entry": entry,
        "verify": format!("stele-verify server.tar --key '{server_key}'"),
    }));
    // Each session that ran on workers in the period.
    for id in state.store.shipped_sessions_between(&since, &until).await? {
        let Some(s) = session_bundle::find(&state, &id).await? else {
            continue;
        };
        if !s.ended() {
            left_out.push(serde_json::json!({
                "session": id, "origin": s.log.origin,
                "why": format!(
                    "it has not ended in the log of worker {} (as shipped so far)",
                    s.log.worker
                ),
            }));
            continue;
        }
        let w = session_bundle::write(&state, &id, &s, Purpose::Review, actor(&who)).await?;
        let name = format!("sessions/{}.tar", file_stem(&id));
        listed.push(serde_json::json!({
            "file": name, "session": id, "log": s.log.origin, "worker": s.log.worker,
            "key": s.log.verifier, "export_key": server_key, "export_entry": w.export_entry,
            "verify": format!(
                "stele-verify {name} --key '{}' --export-key '{server_key}'",
                s.log.verifier
            ),
        }));
        let len = w.bytes.len() as u64;
        pack = pack.add(&name, len, std::io::Cursor::new(w.bytes)).await?;
    }
    let index = serde_json::json!({
        "since": since, "until": until, "files": listed, "left_out": left_out,
    });
    let index = serde_json::to_vec_pretty(&index).map_err(|e| ServerError::Task(e.to_string()))?;
    let len = index.len() as u64;
    pack = pack
        .add("fleet.json", len, std::io::Cursor::new(index))
        .await?;
    let (file, len) = pack.finish().await?;
    let name = format!(
        "stele-fleet-{}-{}.tar",
        since.replace(':', ""),
        until.replace(':', "")
    );
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut r = (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The fleet pack being written: a tar on an unlinked private file.
struct Pack {
    tar: TarWriter<std::io::BufWriter<std::fs::File>>,
}

impl Pack {
    /// A new pack in `dir` (made private if new); the file is unlinked at
    /// once, so it vanishes with the response however that ends.
    async fn create(dir: &std::path::Path) -> Result<Self, ApiError> {
        let dir = dir.to_path_buf();
        blocking(move || -> Result<Self, ApiError> {
            stele_runtime::paths::ensure_private_dir(&dir)
                .map_err(|e| ApiError::from(ServerError::Task(format!("export folder: {e}"))))?;
            let path = dir.join(format!("fleet-{}.tar", uuid::Uuid::new_v4()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
            let _ = std::fs::remove_file(&path);
            Ok(Pack {
                tar: TarWriter::new(std::io::BufWriter::new(file)),
            })
        })
        .await?
    }

    /// Append `name`, `len` bytes read from `data`.
    async fn add(
        mut self,
        name: &str,
        len: u64,
        data: impl std::io::Read + Send + 'static,
    ) -> Result<Self, ApiError> {
        let name = name.to_owned();
        blocking(move || -> Result<Self, ApiError> {
            self.tar
                .file_from(&name, len, data)
                .map_err(|e| ApiError::from(ServerError::Task(format!("packing {name}: {e}"))))?;
            Ok(self)
        })
        .await?
    }

    /// The finished pack, from its start, and its length.
    async fn finish(self) -> Result<(std::fs::File, u64), ApiError> {
        blocking(move || -> Result<(std::fs::File, u64), ApiError> {
            use std::io::Seek as _;
            let buffered = self.tar.finish().map_err(|e| {
                ApiError::from(ServerError::Task(format!("packing the fleet export: {e}")))
            })?;
            let mut file = buffered
                .into_inner()
                .map_err(|e| io_error("writing the fleet export".into(), e.into_error()))?;
            let len = file
                .seek(std::io::SeekFrom::End(0))
                .and_then(|len| file.rewind().map(|()| len))
                .map_err(|e| io_error("reading back the fleet export".into(), e))?;
            Ok((file, len))
        })
        .await?
    }
}

fn io_error(what: String, source: std::io::Error) -> ApiError {
    ApiError::from(ServerError::Io { what, source })
}
