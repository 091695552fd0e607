//! The audit endpoints: `GET /api/v1/audit/entries` (the entries a reviewer
//! asks for, with `stele audit show`'s filters, paged), `GET
//! /api/v1/audit/sessions/{id}/export` (the session bundle `stele audit
//! export --session` makes, as a tar download) and `GET
//! /api/v1/audit/verify` (the log's verification). Each is a Cedar
//! decision (`audit.read`, `audit.export`) recorded before anything is
//! read; every read of entries is itself an `audit.read` entry naming who
//! read what, as the CLI's reads are; an export writes its `audit.export`
//! entry as the CLI's does.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stele_audit::leaf::Leaf;
use stele_audit::{Actor, Event, EventKind};
use stele_policy::ServerResource;
use stele_runtime::cli::entry_filter::{EntryFilter, FilterInput};

use super::authorize;
use super::sessions::workspace_teams;
use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::{ApiError, ServerError};
use crate::state::Shared;

/// Most entries in one page (and the default).
pub const MAX_PAGE: u64 = 1000;

/// Entries scanned per store read while filling a page.
const CHUNK: u64 = 4096;

/// The query parameters `GET entries` accepts; any other is refused.
const PARAMS: [&str; 9] = [
    "session",
    "kind",
    "principal",
    "path",
    "decision",
    "since",
    "until",
    "from",
    "limit",
];

pub(super) fn actor(who: &Principal) -> Actor {
    let mut a = Actor::system();
    a.principal = who.user.name.clone();
    a.teams = who.user.teams.clone();
    a
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(ServerError::Task(e.to_string())))
}

/// What the entries are about, for the decision: one session the server
/// knows, or (no session filter, or a session it did not run) the log.
async fn read_resource(state: &Shared, session: Option<&str>) -> Result<ServerResource, ApiError> {
    let Some(id) = session else {
        return Ok(ServerResource::AuditLog);
    };
    Ok(match state.store.session(id).await? {
        Some(s) => {
            let teams = workspace_teams(state, &s.workspace);
            authz::session(&s.id, &s.owner, &s.workspace, &teams)
        }
        None => ServerResource::AuditLog,
    })
}

pub(super) fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name}: {v:?} is not a whole number")))
        })
        .transpose()
}

/// `GET /api/v1/audit/entries`.
#[utoipa::path(get, path = "/api/v1/audit/entries", tag = "audit",
    params(
        ("session" = Option<String>, Query, description = "Only this session's entries"),
        ("kind" = Option<String>, Query, description = "Only entries of this kind"),
        ("principal" = Option<String>, Query, description = "Only this principal's entries"),
        ("path" = Option<String>, Query, description = "Only entries touching this path"),
        ("decision" = Option<String>, Query, description = "Only decisions with this effect"),
        ("since" = Option<String>, Query, description = "From this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Until this time (RFC 3339)"),
        ("from" = Option<u64>, Query, description = "From this entry index (paging)"),
        ("limit" = Option<u64>, Query, description = "At most this many entries"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Entries of the log (each read is itself an entry)", body = serde_json::Value)))]
pub async fn entries(
    State(state): State<Shared>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(bad) = q.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{bad}: not a filter of this endpoint (it takes {})",
            PARAMS.join(", ")
        )));
    }
    let arg = |k: &str| q.get(k).map(String::as_str);
    // Every filter is checked before anything is decided or read, so a
    // mistyped one is a 400 naming it, never an empty page.
    let filter = EntryFilter::parse(&FilterInput {
        session: arg("session"),
        kind: arg("kind"),
        principal: arg("principal"),
        path: arg("path"),
        decision: arg("decision"),
        since: arg("since"),
        until: arg("until"),
    })
    .map_err(|e| {
        ApiError::bad_request(format!("{}: {}", e.flag.trim_start_matches('-'), e.message))
    })?;
    let from = number(&q, "from")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: give 1 to {MAX_PAGE} entries per page"
        )));
    }
    let on = read_resource(&state, filter.session.as_deref()).await?;
    let mut what = filter.describe();
    what["from"] = serde_json::json!(from);
    what["limit"] = serde_json::json!(limit);
    authorize(&state, &who, ServerAction::AuditRead, on, what.clone()).await?;
    // The read itself, as `stele audit show` records it: before anything is read.
    what["command"] = serde_json::json!("api entries");
    what["method"] = serde_json::json!(who.method);
    let ev = Event::new(EventKind::AuditRead, actor(&who)).with_data(what);
    let log = state.log.clone();
    let read_entry = blocking(move || log.append_blocking(ev))
        .await?
        .map_err(ServerError::from)?
        .seq;
    let log = state.log.clone();
    let (page, next) = blocking(move || -> Result<_, ServerError> {
        let store = log.store()?;
        let size = store.size()?;
        let mut page: Vec<serde_json::Value> = Vec::new();
        let mut scratch = Vec::new();
        let mut at = from;
        let mut next = None;
        while at < size && next.is_none() {
            let end = at.saturating_add(CHUNK).min(size);
            store.for_each_entry(at, end, |seq, bytes, _| {
                if next.is_some() {
                    return Ok(());
                }
                let leaf = Leaf::decode_canonical(bytes, &mut scratch)?;
                if filter.matches(&leaf) {
                    if page.len() as u64 == limit {
                        next = Some(seq);
                        return Ok(());
                    }
                    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                        stele_audit::AuditError::Invalid(format!("entry {seq} is not JSON: {e}"))
                    })?;
                    page.push(serde_json::json!({"index": seq, "leaf": value}));
                }
                Ok(())
            })?;
            at = end;
        }
        Ok((page, next))
    })
    .await??;
    Ok(Json(serde_json::json!({
        "entries": page,
        "next": next,
        "read_entry": read_entry,
    })))
}

/// `GET /api/v1/audit/sessions/{id}/export`: a tar download.
#[utoipa::path(get, path = "/api/v1/audit/sessions/{id}/export", tag = "audit",
    params(("id" = String, Path, description = "The session's id")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The session's evidence bundle (stele-verify checks it)", content_type = "application/gzip")))]
pub async fn export(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(s) = state.store.session(&id).await? else {
        return Err(ApiError::not_found(format!(
            "no session {id:?} on this server"
        )));
    };
    let teams = workspace_teams(&state, &s.workspace);
    authorize(
        &state,
        &who,
        ServerAction::AuditExport,
        authz::session(&s.id, &s.owner, &s.workspace, &teams),
        serde_json::json!({"session": id}),
    )
    .await?;
    // A session that ran on workers is in their shipped logs, not here.
    if !super::shipped_export::in_server_log(&state, &id).await? {
        return super::shipped_export::send(&state, &who, &id).await;
    }
    use stele_audit::export::layout::Selection;
    send_export(
        &state,
        &who,
        Selection::Session { id: id.clone() },
        format!("stele-session-{id}.tar"),
    )
    .await
}

/// Write the bundle of `selection` (as `stele audit export` does, its
/// `audit.export` entry included), and stream it as `filename`.
pub(super) async fn send_export(
    state: &Shared,
    who: &Principal,
    selection: stele_audit::export::layout::Selection,
    filename: String,
) -> Result<Response, ApiError> {
    let (entry, (file, len)) = write_export(state, who, selection).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut r = (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let name = format!("attachment; filename=\"{filename}\"");
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&entry.to_string()) {
        h.insert("x-stele-export-entry", v);
    }
    let vkey = state.log.verifier().to_string();
    if let Ok(v) = HeaderValue::from_str(&vkey) {
        h.insert("x-stele-verifier", v);
    }
    let command = super::audit_evidence::verify_command(&filename, &vkey);
    if let Ok(v) = HeaderValue::from_str(&command) {
        h.insert("x-stele-verify-command", v);
    }
    Ok(r)
}

/// The private folder beside the log where exports are written before
/// they are sent (and removed).
pub(super) fn exports_dir(state: &Shared) -> Result<std::path::PathBuf, ApiError> {
    let dir = state.config.db().parent().map(|d| d.join("exports.tmp"));
    dir.ok_or_else(|| ApiError::from(ServerError::Task("no state folder".into())))
}

/// Write the bundle of `selection` from this server's log: its
/// `audit.export` entry, and the bundle as an open file (already unlinked)
/// with its length.
pub(super) async fn write_export(
    state: &Shared,
    who: &Principal,
    selection: stele_audit::export::layout::Selection,
) -> Result<(u64, (std::fs::File, u64)), ApiError> {
    // Written privately beside the log, sent, then removed: the server
    // keeps no copy (the log keeps the `audit.export` entry).
    let dir = exports_dir(state)?;
    let out = dir.join(format!("{}.tar", uuid::Uuid::new_v4()));
    let (log, signer, bundle) = (
        state.log.clone(),
        state.signer.0.clone(),
        state.bundle.clone(),
    );
    let exporter = actor(who);
    let path = out.clone();
    let made = blocking(move || -> Result<_, ApiError> {
        stele_runtime::paths::ensure_private_dir(&dir)
            .map_err(|e| ApiError::from(ServerError::Task(format!("export folder: {e}"))))?;
        use stele_audit::export::write::{export, ExportOptions, PolicyInput};
        let opts = ExportOptions {
            selection,
            payloads: true,
            policies: vec![PolicyInput {
                dir: bundle.root().to_path_buf(),
                bundle_digest: Some(bundle.digest().to_string()),
            }],
            exporter,
            allow_open_session: false,
            tar: true,
        };
        let r = export(&log, signer.as_ref(), &opts, &path);
        // Opened, then unlinked: the bundle is streamed from the open file
        // and vanishes with it, never held in memory whole.
        let file = match &r {
            Ok(_) => std::fs::File::open(&path)
                .and_then(|f| f.metadata().map(|m| (f, m.len())))
                .map_err(|e| {
                    ApiError::from(ServerError::Io {
                        what: format!("opening the export {}", path.display()),
                        source: e,
                    })
                }),
            Err(_) => Err(ApiError::from(ServerError::Task("no export".into()))),
        };
        let _ = std::fs::remove_file(&path);
        match r {
            Ok(report) => Ok((report.export_entry, file?)),
            Err(stele_audit::export::ExportError::Invalid(why)) => {
                Err(ApiError::new(StatusCode::CONFLICT, why))
            }
            Err(e) => Err(ApiError::from(ServerError::Task(format!("export: {e}")))),
        }
    })
    .await??;
    Ok(made)
}

/// `GET /api/v1/audit/verify`: the whole log verified against its key.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The log's verification", body = serde_json::Value)))]
pub async fn verify(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(
        &state,
        &who,
        ServerAction::AuditRead,
        ServerResource::AuditLog,
        serde_json::json!({"command": "api verify"}),
    )
    .await?;
    let log = state.log.clone();
    let result =
        blocking(move || stele_audit::verify::verify_db(log.path(), &log.verifier(), None)).await?;
    Ok(Json(match result {
        Ok(r) => serde_json::json!({
            "verified": true,
            "origin": r.origin,
            "entries": r.entries,
            "checkpoints": r.checkpoints,
            "root": r.root,
            "sessions": r.sessions,
            "open_sessions": r.open_sessions,
        }),
        Err(f) => serde_json::json!({
            "verified": false,
            "failure": f.to_string(),
        }),
    }))
}
