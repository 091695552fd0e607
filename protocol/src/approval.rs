//! A request for a person's approval and its answer. The answer must echo
//! the SHA-256 of exactly the text that was shown (what the log's approval
//! entry hashes), which proves what the approver saw.

use serde::{Deserialize, Serialize};

/// Granted or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ApprovalOutcome {
    /// Go ahead.
    Granted,
    /// Do not.
    Refused,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for an answer.
    Pending,
    /// Answered: go ahead.
    Granted,
    /// Answered: do not.
    Refused,
    /// Nobody answered before the deadline: refused.
    Expired,
}

/// An approval a session is waiting for (or was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The approval's id (`POST /api/v1/approvals/{id}`).
    pub approval_id: String,
    /// The session that asks.
    pub session: String,
    /// Exactly what the approver is shown (what the log's `approval.request` entry hashes).
    pub shown: String,
    /// SHA-256 (hex) of `shown`, as the log records it.
    pub shown_sha256: String,
    /// The person whose session asks.
    pub requester: String,
    /// When it is refused unanswered (RFC 3339).
    pub deadline: String,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who answered, once answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

/// A person's answer (`POST /api/v1/approvals/{id}`). Who answers is never in
/// the body: it is the authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// SHA-256 (hex) of the text the approver saw; must equal the request's.
    pub shown_sha256: String,
    /// The answer.
    pub outcome: ApprovalOutcome,
    /// A reference for the record (a change ticket), printable, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// `GET /api/v1/approvals`: the pending approvals the caller may answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalList {
    /// Oldest first.
    pub approvals: Vec<ApprovalRequest>,
}
