//! The team server's own requests (`stele serve`): who may start, see, list,
//! approve, read and export sessions, hold the log, manage schedules and
//! administer the server. They are Cedar decisions in the same bundle as the
//! gate's, under their own actions (schema `stele-7`): a server action never
//! decides a session's tool call, and a gate action never decides a server
//! action, so a permit on one cannot lift a rule on the other.
//!
//! The principal is the server's account: a `User` whose parents are its
//! teams and its role (`Role::"member"`, `"approver"`, `"reviewer"`,
//! `"admin"`). The resource is a `Session` (owner, workspace, the
//! workspace's teams), a `Workspace`, the `AuditLog` or the `Server`.
//! Decide with [`crate::Bundle::decide_server`]; the answer is Allow or Deny
//! (never Ask: nothing parks a server action), deny by default.

use std::fmt;
use std::str::FromStr;

use crate::error::PolicyError;
use crate::members::valid_name;

/// The roles the server knows; a `Role::"…"` literal in a policy must be one.
pub const ROLES: [&str; 4] = ["member", "approver", "reviewer", "admin"];

/// A server action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAction {
    /// Start a session in a workspace (resource: the workspace).
    SessionStart,
    /// See a session, its summary and its events (resource: the session).
    SessionView,
    /// List sessions at all (resource: the server); each one listed is
    /// also a `session.view` decision.
    SessionList,
    /// Answer a session's approval (resource: the session). Whether the
    /// grant lifts the gate's rule is still the gate's decision.
    SessionApprove,
    /// Read audit entries (resource: a session, or the whole log).
    AuditRead,
    /// Export a session's evidence bundle (resource: the session).
    AuditExport,
    /// Place or release a legal hold (resource: the log).
    AuditHold,
    /// Add, change or remove scheduled tasks (resource: the workspace).
    ScheduleManage,
    /// List and inspect scheduled tasks and their runs (resource: the workspace).
    ScheduleView,
    /// List and download a workspace's files (resource: the workspace);
    /// each file is still the person's own `file.list`/`file.read` through
    /// the gate. Uploading is `session.start`.
    WorkspaceRead,
    /// Administer the server: accounts, tokens (resource: the server).
    Admin,
}

impl ServerAction {
    /// Every server action, in a fixed order (used for indexing).
    pub const ALL: [ServerAction; 11] = [
        ServerAction::SessionStart,
        ServerAction::SessionView,
        ServerAction::SessionList,
        ServerAction::SessionApprove,
        ServerAction::AuditRead,
        ServerAction::AuditExport,
        ServerAction::AuditHold,
        ServerAction::ScheduleManage,
        ServerAction::Admin,
        ServerAction::ScheduleView,
        ServerAction::WorkspaceRead,
    ];

    /// The Cedar action id, e.g. `session.view`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerAction::SessionStart => "session.start",
            ServerAction::SessionView => "session.view",
            ServerAction::SessionList => "session.list",
            ServerAction::SessionApprove => "session.approve",
            ServerAction::AuditRead => "audit.read",
            ServerAction::AuditExport => "audit.export",
            ServerAction::AuditHold => "audit.hold",
            ServerAction::ScheduleManage => "schedule.manage",
            ServerAction::Admin => "admin",
            ServerAction::ScheduleView => "schedule.view",
            ServerAction::WorkspaceRead => "workspace.read",
        }
    }

    /// Position in [`ServerAction::ALL`].
    pub fn index(self) -> usize {
        match self {
            ServerAction::SessionStart => 0,
            ServerAction::SessionView => 1,
            ServerAction::SessionList => 2,
            ServerAction::SessionApprove => 3,
            ServerAction::AuditRead => 4,
            ServerAction::AuditExport => 5,
            ServerAction::AuditHold => 6,
            ServerAction::ScheduleManage => 7,
            ServerAction::Admin => 8,
            ServerAction::ScheduleView => 9,
            ServerAction::WorkspaceRead => 10,
        }
    }

    /// Whether `resource` is a valid resource for this action (as the
    /// schema's `appliesTo` says).
    pub fn accepts(self, resource: &ServerResource) -> bool {
        use ServerAction as A;
        use ServerResource as R;
        matches!(
            (self, resource),
            (
                A::SessionStart | A::ScheduleManage | A::ScheduleView | A::WorkspaceRead,
                R::Workspace { .. }
            ) | (
                A::SessionView | A::SessionApprove | A::AuditExport,
                R::Session { .. }
            ) | (A::AuditRead, R::Session { .. } | R::AuditLog)
                | (A::AuditHold, R::AuditLog)
                | (A::SessionList | A::Admin, R::Server)
        )
    }
}

impl fmt::Display for ServerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServerAction {
    type Err = PolicyError;
    /// Accepts `session.view` or `Action::"session.view"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = crate::request::bare_action_name(s);
        ServerAction::ALL
            .into_iter()
            .find(|a| a.as_str() == bare)
            .ok_or_else(|| PolicyError::Request(format!("unknown server action `{s}`")))
    }
}

/// What a server action is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerResource {
    /// A session: its id, who started it, its workspace and that
    /// workspace's teams.
    Session {
        /// The session id.
        id: String,
        /// Who started it.
        owner: String,
        /// Its workspace's name.
        workspace: String,
        /// The workspace's teams.
        teams: Vec<String>,
    },
    /// A workspace, by name, and its teams.
    Workspace {
        /// Its name.
        name: String,
        /// Its teams.
        teams: Vec<String>,
    },
    /// The audit log (`AuditLog::"log"`).
    AuditLog,
    /// The server (`Server::"stele"`).
    Server,
}

impl ServerResource {
    /// The Cedar entity type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerResource::Session { .. } => "Session",
            ServerResource::Workspace { .. } => "Workspace",
            ServerResource::AuditLog => "AuditLog",
            ServerResource::Server => "Server",
        }
    }

    /// The Cedar entity id.
    pub fn entity_id(&self) -> &str {
        match self {
            ServerResource::Session { id, .. } => id,
            ServerResource::Workspace { name, .. } => name,
            ServerResource::AuditLog => "log",
            ServerResource::Server => "stele",
        }
    }
}

/// The person behind a server request: the account's name, teams and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account name (the `User` id).
    pub name: String,
    /// Its teams.
    pub teams: Vec<String>,
    /// Its role, one of [`ROLES`].
    pub role: String,
}

/// A server request to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRequest {
    pub(crate) principal: Account,
    pub(crate) action: ServerAction,
    pub(crate) resource: ServerResource,
    pub(crate) method: String,
}

impl ServerRequest {
    /// A request by `principal`, authenticated through `method`. Refused
    /// when the resource does not fit the action, or a name or role is
    /// not one the schema allows.
    pub fn new(
        principal: Account,
        action: ServerAction,
        resource: ServerResource,
        method: &str,
    ) -> Result<Self, PolicyError> {
        if !action.accepts(&resource) {
            return Err(PolicyError::Request(format!(
                "{action} does not apply to a {}",
                resource.type_name()
            )));
        }
        if !ROLES.contains(&principal.role.as_str()) {
            return Err(PolicyError::Request(format!(
                "unknown role `{}` (roles: {})",
                principal.role,
                ROLES.join(", ")
            )));
        }
        if !valid_name(&principal.name) {
            return Err(PolicyError::Request(format!(
                "invalid account name `{}`",
                principal.name
            )));
        }
        Ok(Self {
            principal,
            action,
            resource,
            method: method.to_owned(),
        })
    }

    /// The account.
    pub fn principal(&self) -> &Account {
        &self.principal
    }

    /// The action.
    pub fn action(&self) -> ServerAction {
        self.action
    }

    /// The resource.
    pub fn resource(&self) -> &ServerResource {
        &self.resource
    }

    /// Whether the principal started the session the request is about.
    pub fn is_owner(&self) -> bool {
        matches!(&self.resource, ServerResource::Session { owner, .. } if *owner == self.principal.name)
    }
}
