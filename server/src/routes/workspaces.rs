//! `GET /api/v1/workspaces` (those the caller may use), and a workspace's
//! files: `GET …/{name}/files?path=DIR` (a listing), `GET
//! …/{name}/files/{*path}` (a download, streamed), `PUT
//! …/{name}/files/{*path}` (an upload, streamed; nothing half-written).
//! Using a workspace at all is the server's `session.start` decision on it
//! (recorded); each file access is then the gate's decision as the person's
//! own file read, write or listing (`crate::workspace_files`).

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stele_audit::Effect;
use stele_policy::ServerResource;

use super::{authorize, may};
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::config::WorkspaceConfig;
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;
use crate::workspace_files::access::{Person, PersonGate};
use crate::workspace_files::listing::Listing;
use crate::workspace_files::upload::Uploaded;
use crate::workspace_files::{download, listing, upload, FilesError};

/// One workspace as the caller sees it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspaceSummary {
    /// Its name.
    pub name: String,
    /// The teams whose members may use it.
    pub teams: Vec<String>,
}

/// `GET /api/v1/workspaces`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    /// The workspaces the caller may use.
    pub workspaces: Vec<WorkspaceSummary>,
}

fn resource(name: &str, ws: &WorkspaceConfig) -> ServerResource {
    ServerResource::Workspace {
        name: name.to_string(),
        teams: ws.teams.clone(),
    }
}

/// The workspaces the caller may use (start sessions in, read and write
/// files of); one entry names them.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The workspaces the caller may use (one `workspace.list` entry)", body = WorkspaceList)))]
pub async fn list(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<WorkspaceList>, ApiError> {
    let workspaces: Vec<WorkspaceSummary> = state
        .config
        .workspace
        .iter()
        .filter(|(name, ws)| {
            may(&state, &who, ServerAction::SessionStart, resource(name, ws))
                || may(
                    &state,
                    &who,
                    ServerAction::WorkspaceRead,
                    resource(name, ws),
                )
        })
        .map(|(name, ws)| WorkspaceSummary {
            name: name.clone(),
            teams: ws.teams.clone(),
        })
        .collect();
    state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "workspace.list",
            effect: Effect::Allow,
            reason: "the workspaces the caller may use (session.start or workspace.read on each)"
                .into(),
            data: serde_json::json!({
                "method": who.method,
                "status": 200,
                "workspaces": workspaces.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            }),
        })
        .await?;
    Ok(Json(WorkspaceList { workspaces }))
}

/// The workspace `name`, if the caller may do `action` there (listing and
/// downloading: `workspace.read`; uploading: `session.start`; the decision
/// recorded), and the request's gate for the person.
async fn open(
    state: &Shared,
    who: &Principal,
    action: ServerAction,
    name: &str,
    http: String,
    file: &str,
) -> Result<(WorkspaceConfig, PersonGate), ApiError> {
    let Some(ws) = state.config.workspace.get(name).cloned() else {
        return Err(ApiError::not_found(format!(
            "no workspace {name:?} on this server"
        )));
    };
    authorize(
        state,
        who,
        action,
        resource(name, &ws),
        serde_json::json!({"workspace": name, "http": http, "file": file}),
    )
    .await?;
    let person = Person {
        name: who.user.name.clone(),
        method: who.method,
        http,
    };
    let (st, root, ws_name) = (state.clone(), ws.path.clone(), name.to_string());
    let pg =
        blocking(move || PersonGate::open(&st, person, &ws_name, &root).map_err(FilesError::from))
            .await?;
    Ok((ws, pg))
}

/// Run `f` on a blocking thread (the gate appends durably).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal task failed: {e}"),
        )),
    }
}

/// The workspace and file of a request, or the recorded refusal of a path
/// that is not text (a name policy could not be asked about).
async fn names(
    state: &Shared,
    who: &Principal,
    uri: &OriginalUri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    match path {
        Ok(Path(p)) => Ok(p),
        Err(e) => Err(not_text(state, who, uri, e.body_text()).await),
    }
}

/// Record and answer a path that could not be read as text.
async fn not_text(state: &Shared, who: &Principal, uri: &OriginalUri, detail: String) -> ApiError {
    let why = format!("the path is not a workspace path ({detail}); names must be UTF-8 text");
    let seq = state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "workspace.files",
            effect: Effect::Deny,
            reason: why.clone(),
            data: serde_json::json!({
                "method": who.method,
                "status": 400,
                "http": uri.0.path(),
                "refusal": {"rule": "path.not_utf8"},
            }),
        })
        .await;
    match seq {
        Ok(seq) => ApiError::bad_request(why).logged(seq),
        Err(e) => e.into(),
    }
}

/// `?path=DIR` of a listing.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    /// The folder [default: the workspace root].
    #[serde(default)]
    pub path: String,
}

/// A folder's entries.
#[utoipa::path(get, path = "/api/v1/workspaces/{name}/files", tag = "workspaces",
    params(("name" = String, Path, description = "The workspace"),
           ("path" = Option<String>, Query, description = "The folder [default: the workspace root]")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The folder's entries, each a `file.list` decision of the person", body = Listing)))]
pub async fn files(
    State(state): State<Shared>,
    who: Principal,
    Path(name): Path<String>,
    uri: OriginalUri,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return Err(not_text(&state, &who, &uri, e.body_text()).await),
    };
    let http = format!("GET /api/v1/workspaces/{name}/files");
    let (ws, pg) = open(
        &state,
        &who,
        ServerAction::WorkspaceRead,
        &name,
        http,
        &q.path,
    )
    .await?;
    let listed = blocking(move || listing::list(pg, &ws.path, &q.path)).await?;
    Ok(Json(listed))
}

/// A file's content, streamed.
#[utoipa::path(get, path = "/api/v1/workspaces/{name}/files/{path}", tag = "workspaces",
    params(("name" = String, Path, description = "The workspace"),
           ("path" = String, Path, description = "The file's workspace path")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The file, streamed (a `file.read` of the person: intent before, bytes and SHA-256 after)", content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn download(
    State(state): State<Shared>,
    who: Principal,
    uri: OriginalUri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (name, path) = names(&state, &who, &uri, path).await?;
    let http = format!("GET /api/v1/workspaces/{name}/files/{path}");
    let (ws, pg) = open(
        &state,
        &who,
        ServerAction::WorkspaceRead,
        &name,
        http,
        &path,
    )
    .await?;
    let d = blocking(move || download::start(pg, &ws.path, &path)).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (k, v) in [
        ("x-stele-session", d.session.clone()),
        ("x-stele-entry", d.intent.to_string()),
        ("x-stele-size", d.size.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    Ok((headers, Body::from_stream(download::stream(d))).into_response())
}

/// Receive a file; 201 when it is new, 200 when it replaced one.
#[utoipa::path(put, path = "/api/v1/workspaces/{name}/files/{path}", tag = "workspaces",
    params(("name" = String, Path, description = "The workspace"),
           ("path" = String, Path, description = "The file's workspace path")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's content (at most `max_upload_bytes`)"),
    security(("token" = []), ("cookie" = [])),
    responses((status = 201, description = "A new file written whole (a `file.write` of the person); over `max_upload_bytes` it is a 413 problem, nothing kept", body = Uploaded),
              (status = 200, description = "The file replaced whole", body = Uploaded)))]
pub async fn upload(
    State(state): State<Shared>,
    who: Principal,
    uri: OriginalUri,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let (name, path) = names(&state, &who, &uri, path).await?;
    let limit = state.config.server.max_upload_bytes;
    let http = format!("PUT /api/v1/workspaces/{name}/files/{path}");
    let (ws, pg) = open(&state, &who, ServerAction::SessionStart, &name, http, &path).await?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d > limit) {
        // Refused before a byte of it is read.
        let raw = path.clone();
        let refused =
            tokio::task::spawn_blocking(move || upload::refuse_declared(pg, &raw, declared, limit))
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("internal task failed: {e}"),
                    )
                })?;
        return Err(refused.into());
    }
    let root = ws.path.clone();
    let receiving = blocking(move || upload::begin(pg, &root, &path)).await?;
    // On a task of its own: if the client goes and this handler is
    // dropped, the upload still ends as it should (temporary file removed,
    // result recorded).
    let done = tokio::spawn(upload::receive(receiving, body.into_data_stream(), limit))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done)))
}
