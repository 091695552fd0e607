//! Bodies of the HTTP API (`/api/v1/...`).

use serde::{Deserialize, Serialize};

/// `POST /api/v1/login`: a local account's name and password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, even in a debug line.
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The answer to a successful login: a bearer token, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginResponse {
    /// `Authorization: Bearer TOKEN` on later requests.
    pub token: String,
    /// When it stops working (RFC 3339).
    pub expires: String,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/sessions`: start a task on a workspace the server manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// The workspace's name (`[workspace.NAME]` in the server's configuration).
    pub workspace: String,
    /// The task.
    pub task: String,
    /// Model as PROVIDER:NAME [default: the server's `model`]; its settings are the
    /// configuration's `[provider.PROVIDER]` table, as for `stele run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Most model turns [default: 40].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
}

/// The answer to [`StartSession`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartedSession {
    /// The session id (as in the audit log).
    pub id: String,
    /// Its events: `GET` this URL for server-sent events.
    pub events: String,
}

/// Where a session stands, as the server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Accepted, not yet started (waiting for a free slot or its sandbox).
    Starting,
    /// The agent is working.
    Running,
    /// A step waits for a person's approval.
    WaitingApproval,
    /// It ended (see its `end` event for how).
    Ended,
    /// It stopped, resumable (provider outage).
    Paused,
    /// It could not start or failed; the detail says why.
    Failed,
}

/// One session in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// Who it runs for.
    pub owner: String,
    /// The workspace's name.
    pub workspace: String,
    /// Where it stands.
    pub state: SessionState,
    /// The end's outcome or the failure, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Created (RFC 3339).
    pub created: String,
    /// Last changed (RFC 3339).
    pub updated: String,
}

/// `GET /api/v1/sessions`: the sessions the caller may see, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionList {
    /// The sessions.
    pub sessions: Vec<SessionSummary>,
}
