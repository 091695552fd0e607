//! What the server remembers that is *not* the record: accounts, token
//! hashes, the sessions index, the approvals queue and each session's
//! events for replay. The audit log stays the truth about what happened;
//! this is the server's working state. A small async trait with two
//! implementations: SQLite (the embedded default, `sqlite.rs`) and
//! PostgreSQL (`[store] url`, `postgres.rs`) for servers that share one
//! database; [`open`] picks the one the configuration names.

pub mod credentials;
pub mod jobs;
pub mod kept_bundles;
mod migrations;
pub mod open;
pub mod postgres;
pub mod remote;
pub mod schedules;
pub mod shipped_reads;
pub mod shipping;
pub mod sqlite;
pub mod webhooks;

use async_trait::async_trait;
use stele_protocol::{ApprovalState, SessionState};

use crate::error::ServerError;

/// What a person may do on the server (the templates' roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Starts sessions and sees their own.
    Member,
    /// A member who also answers approvals of their teams' sessions.
    Approver,
    /// Reads every session of their teams; starts and answers nothing.
    Reviewer,
    /// Everything, on every team.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Approver => "approver",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// Parse a stored or typed name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Member, Role::Approver, Role::Reviewer, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A local account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user id (as principals are named in policies).
    pub name: String,
    /// Teams.
    pub teams: Vec<String>,
    /// Role.
    pub role: Role,
    /// argon2id PHC string, once a password is set.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("teams", &self.teams)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An account or token change made on the server's host (`stele user add`,
/// `stele token create`). It takes effect only once the server has recorded
/// it in the audit log: until then the account or token does not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminChange {
    /// Who made it: the host user who ran the command.
    pub by: String,
    /// What was done.
    pub action: AdminAction,
    /// The account it concerns.
    pub subject: String,
    /// What a reviewer needs: teams, role, token label and expiry (never a secret).
    pub detail: serde_json::Value,
    /// Unix seconds when it was made.
    pub at: i64,
}

/// The kinds of host-side administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// An account was added.
    AccountAdd,
    /// An API token was created.
    TokenCreate,
    /// An API token was revoked.
    TokenRevoke,
}

impl AdminAction {
    /// Its name in the store and in the log's `server_action`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::AccountAdd => "account.add",
            AdminAction::TokenCreate => "token.create",
            AdminAction::TokenRevoke => "token.revoke",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<AdminAction> {
        [
            AdminAction::AccountAdd,
            AdminAction::TokenCreate,
            AdminAction::TokenRevoke,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// What a presented token turns out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// A live token of this user, and what it may be used for.
    Valid(User, crate::auth::scopes::Scopes),
    /// A token of this user that has expired.
    Expired(String),
    /// A token of this user that was revoked.
    Revoked(String),
    /// No such token.
    Unknown,
}

/// One session in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (as in the log).
    pub id: String,
    /// Who it runs for.
    pub owner: String,
    /// The workspace's name.
    pub workspace: String,
    /// Where it stands.
    pub state: SessionState,
    /// How it ended or failed.
    pub detail: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub updated: i64,
}

/// One approval in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Its id.
    pub id: String,
    /// The session asking.
    pub session: String,
    /// Exactly what is shown.
    pub shown: String,
    /// SHA-256 (hex) of `shown`.
    pub shown_sha256: String,
    /// Whose session asks.
    pub requester: String,
    /// Unix seconds after which it is refused.
    pub deadline: i64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who answered.
    pub approver: Option<String>,
}

/// The server's state.
#[async_trait]
pub trait Store:
    credentials::CredentialStore
    + schedules::ScheduleStore
    + webhooks::WebhookStore
    + jobs::JobStore
    + remote::RemoteStore
    + shipping::ShippingStore
    + shipped_reads::ShippedReads
    + kept_bundles::KeptBundles
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Add an account; `setup` is the hash of a one-time set-up secret and its expiry.
    /// With `change`, the account works only once the change is recorded
    /// ([`Store::admin_change_recorded`]). False when the name is taken.
    async fn add_user(
        &self,
        user: User,
        setup: Option<(String, i64)>,
        change: Option<AdminChange>,
    ) -> Result<bool, ServerError>;
    /// The account `name`, if it works (its creation is recorded).
    async fn user(&self, name: &str) -> Result<Option<User>, ServerError>;
    /// Whether an account `name` exists, recorded or not.
    async fn account_exists(&self, name: &str) -> Result<bool, ServerError>;
    /// Every account that works (its creation recorded), by name (the
    /// admin page's list, which shows only whether a password is set).
    async fn users(&self) -> Result<Vec<User>, ServerError>;
    /// Host-side changes not yet in the audit log, oldest first, with their ids.
    async fn pending_admin_changes(&self) -> Result<Vec<(i64, AdminChange)>, ServerError>;
    /// Change `id` is in the log: what it made starts to work.
    async fn admin_change_recorded(&self, id: i64) -> Result<(), ServerError>;
    /// Set the password of the account whose live set-up secret hashes to
    /// `setup_hash`, and spend the secret; the account's name, or None.
    async fn complete_setup(
        &self,
        setup_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>, ServerError>;
    /// Set an account's password.
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, ServerError>;
    /// Remember a token by its hash; with `change`, it works only once the
    /// change is recorded.
    async fn add_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
        scopes: crate::auth::scopes::Scopes,
        lifetime: (i64, i64),
        change: Option<AdminChange>,
    ) -> Result<(), ServerError>;
    /// Whose token hashes to `token_hash`, and whether it is still live at
    /// `now` (a token or account whose creation is not recorded is unknown).
    async fn token(&self, token_hash: &str, now: i64) -> Result<TokenLookup, ServerError>;
    /// Add a session to the index.
    async fn put_session(&self, s: SessionRecord) -> Result<(), ServerError>;
    /// Change a session's state.
    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        detail: Option<String>,
        now: i64,
    ) -> Result<(), ServerError>;
    /// One session.
    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, ServerError>;
    /// Every session, newest first.
    async fn sessions(&self) -> Result<Vec<SessionRecord>, ServerError>;
    /// Keep event `n` (1-based, consecutive) of `session` for replay.
    async fn append_event(&self, session: &str, n: u64, json: &str) -> Result<(), ServerError>;
    /// Events of `session` after number `after`, in order.
    async fn events_after(
        &self,
        session: &str,
        after: u64,
    ) -> Result<Vec<(u64, String)>, ServerError>;
    /// Queue an approval.
    async fn add_approval(&self, a: ApprovalRecord) -> Result<(), ServerError>;
    /// One approval.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, ServerError>;
    /// Approvals still waiting, oldest first.
    async fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, ServerError>;
    /// Settle a pending approval; false when it was not pending (an answer counts once).
    async fn settle_approval(
        &self,
        id: &str,
        state: ApprovalState,
        approver: Option<&str>,
    ) -> Result<bool, ServerError>;
}
