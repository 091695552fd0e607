//! What callers append: an [`Event`] with its kind, actor, target, decision,
//! references, outcome and payloads. The sequencer turns it into a leaf.
//!
//! Struct fields are declared in sorted key order so that compact serde JSON
//! of these types is already RFC 8785 canonical (see `leaf.rs`).

use serde::{Deserialize, Serialize};

/// Every kind of event the log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// First entry of a log: origin, key, nonce, software version.
    #[serde(rename = "log.genesis")]
    LogGenesis,
    /// A writer opened the log (logging started).
    #[serde(rename = "log.open")]
    LogOpen,
    /// A writer closed the log cleanly (logging stopped).
    #[serde(rename = "log.close")]
    LogClose,
    /// Nothing happened for the heartbeat interval.
    #[serde(rename = "heartbeat")]
    Heartbeat,
    /// The wall clock's source and synchronisation state (at log open,
    /// session start and when it changes).
    #[serde(rename = "clock.state")]
    ClockState,
    /// The wall clock stepped (back, or forward beyond the monotonic
    /// clock); carries both readings and the time entries carry.
    #[serde(rename = "clock.step")]
    ClockStep,
    /// A session started.
    #[serde(rename = "session.start")]
    SessionStart,
    /// A session ended; carries its entry count and sub-chain head.
    #[serde(rename = "session.end")]
    SessionEnd,
    /// A session was found unfinished (crash) and closed.
    #[serde(rename = "session.interrupted")]
    SessionInterrupted,
    /// An intent was found without a result and closed; never re-executed.
    #[serde(rename = "interrupted")]
    Interrupted,
    /// Intent: a request to a model.
    #[serde(rename = "model.request")]
    ModelRequest,
    /// Result of a model request.
    #[serde(rename = "model.response")]
    ModelResponse,
    /// Intent: a tool call.
    #[serde(rename = "tool.intent")]
    ToolIntent,
    /// Result of a tool call.
    #[serde(rename = "tool.result")]
    ToolResult,
    /// Intent: a file handle is opened.
    #[serde(rename = "file.open")]
    FileOpen,
    /// Result: the handle closed (bytes, content hash).
    #[serde(rename = "file.close")]
    FileClose,
    /// Intent: a program starts.
    #[serde(rename = "exec.start")]
    ExecStart,
    /// Result: the program ended.
    #[serde(rename = "exec.end")]
    ExecEnd,
    /// Intent: an outbound connection.
    #[serde(rename = "net.connect")]
    NetConnect,
    /// Result: the connection closed.
    #[serde(rename = "net.close")]
    NetClose,
    /// MCP tools were listed (and filtered).
    #[serde(rename = "mcp.list")]
    McpList,
    /// Intent: an MCP tool call.
    #[serde(rename = "mcp.call")]
    McpCall,
    /// Result of an MCP tool call.
    #[serde(rename = "mcp.result")]
    McpResult,
    /// A policy decision that is not followed by an action (usually a denial).
    #[serde(rename = "policy.decision")]
    PolicyDecision,
    /// A policy bundle was loaded and activated.
    #[serde(rename = "policy.load")]
    PolicyLoad,
    /// A human was asked to approve.
    #[serde(rename = "approval.request")]
    ApprovalRequest,
    /// The human approved.
    #[serde(rename = "approval.grant")]
    ApprovalGrant,
    /// The human refused (or the request timed out).
    #[serde(rename = "approval.deny")]
    ApprovalDeny,
    /// Payload bodies were erased; names the commitments, who and why.
    #[serde(rename = "redaction")]
    Redaction,
    /// The log signing key changed.
    #[serde(rename = "key.rotation")]
    KeyRotation,
    /// A former log key is no longer to be trusted from a tree size on
    /// (it was compromised): names the key, the size and why.
    #[serde(rename = "key.revocation")]
    KeyRevocation,
    /// Someone read the log.
    #[serde(rename = "audit.read")]
    AuditRead,
    /// Someone exported the log.
    #[serde(rename = "audit.export")]
    AuditExport,
    /// The log's own verification found it altered; the writer stops.
    #[serde(rename = "audit.alert")]
    AuditAlert,
    // --- retention, legal hold and archival (issue 21) ---
    /// Payload bodies past their retention were erased; names the
    /// commitments, the retention class, the cut-off and the configuration.
    #[serde(rename = "payload.expiry")]
    PayloadExpiry,
    /// A legal hold was placed on a session, a principal or a time range.
    #[serde(rename = "hold.place")]
    HoldPlace,
    /// One of the two approvals that release a legal hold (dual control).
    #[serde(rename = "hold.release")]
    HoldRelease,
    /// A sealed prefix of the log was moved into an archive bundle.
    #[serde(rename = "log.archive")]
    LogArchive,
    // --- end of retention kinds ---
}

/// Whether a kind opens an action that must later be closed by a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentRole {
    /// An intent; its result must name it.
    Intent,
    /// A result of the given intent kind.
    Result(EventKind),
    /// Neither.
    Plain,
}

impl EventKind {
    /// All kinds, for documentation and exhaustive tests.
    pub const ALL: [EventKind; 38] = [
        Self::LogGenesis,
        Self::LogOpen,
        Self::LogClose,
        Self::Heartbeat,
        Self::ClockState,
        Self::ClockStep,
        Self::SessionStart,
        Self::SessionEnd,
        Self::SessionInterrupted,
        Self::Interrupted,
        Self::ModelRequest,
        Self::ModelResponse,
        Self::ToolIntent,
        Self::ToolResult,
        Self::FileOpen,
        Self::FileClose,
        Self::ExecStart,
        Self::ExecEnd,
        Self::NetConnect,
        Self::NetClose,
        Self::McpList,
        Self::McpCall,
        Self::McpResult,
        Self::PolicyDecision,
        Self::PolicyLoad,
        Self::ApprovalRequest,
        Self::ApprovalGrant,
        Self::ApprovalDeny,
        Self::Redaction,
        Self::KeyRotation,
        Self::KeyRevocation,
        Self::AuditRead,
        Self::AuditExport,
        Self::AuditAlert,
        // retention, legal hold and archival
        Self::PayloadExpiry,
        Self::HoldPlace,
        Self::HoldRelease,
        Self::LogArchive,
    ];

    /// The wire name, e.g. `tool.intent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogGenesis => "log.genesis",
            Self::LogOpen => "log.open",
            Self::LogClose => "log.close",
            Self::Heartbeat => "heartbeat",
            Self::ClockState => "clock.state",
            Self::ClockStep => "clock.step",
            Self::SessionStart => "session.start",
            Self::SessionEnd => "session.end",
            Self::SessionInterrupted => "session.interrupted",
            Self::Interrupted => "interrupted",
            Self::ModelRequest => "model.request",
            Self::ModelResponse => "model.response",
            Self::ToolIntent => "tool.intent",
            Self::ToolResult => "tool.result",
            Self::FileOpen => "file.open",
            Self::FileClose => "file.close",
            Self::ExecStart => "exec.start",
            Self::ExecEnd => "exec.end",
            Self::NetConnect => "net.connect",
            Self::NetClose => "net.close",
            Self::McpList => "mcp.list",
            Self::McpCall => "mcp.call",
            Self::McpResult => "mcp.result",
            Self::PolicyDecision => "policy.decision",
            Self::PolicyLoad => "policy.load",
            Self::ApprovalRequest => "approval.request",
            Self::ApprovalGrant => "approval.grant",
            Self::ApprovalDeny => "approval.deny",
            Self::Redaction => "redaction",
            Self::KeyRotation => "key.rotation",
            Self::KeyRevocation => "key.revocation",
            Self::AuditRead => "audit.read",
            Self::AuditExport => "audit.export",
            Self::AuditAlert => "audit.alert",
            // retention, legal hold and archival
            Self::PayloadExpiry => "payload.expiry",
            Self::HoldPlace => "hold.place",
            Self::HoldRelease => "hold.release",
            Self::LogArchive => "log.archive",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Intent/result pairing of this kind.
    pub fn role(self) -> IntentRole {
        match self {
            Self::ModelRequest
            | Self::ToolIntent
            | Self::FileOpen
            | Self::ExecStart
            | Self::NetConnect
            | Self::McpCall => IntentRole::Intent,
            Self::ModelResponse => IntentRole::Result(Self::ModelRequest),
            Self::ToolResult => IntentRole::Result(Self::ToolIntent),
            Self::FileClose => IntentRole::Result(Self::FileOpen),
            Self::ExecEnd => IntentRole::Result(Self::ExecStart),
            Self::NetClose => IntentRole::Result(Self::NetConnect),
            Self::McpResult => IntentRole::Result(Self::McpCall),
            Self::LogGenesis
            | Self::LogOpen
            | Self::LogClose
            | Self::Heartbeat
            | Self::ClockState
            | Self::ClockStep
            | Self::SessionStart
            | Self::SessionEnd
            | Self::SessionInterrupted
            | Self::Interrupted
            | Self::McpList
            | Self::PolicyDecision
            | Self::PolicyLoad
            | Self::ApprovalRequest
            | Self::ApprovalGrant
            | Self::ApprovalDeny
            | Self::Redaction
            | Self::KeyRotation
            | Self::KeyRevocation
            | Self::AuditRead
            | Self::AuditExport
            | Self::AuditAlert
            // retention, legal hold and archival
            | Self::PayloadExpiry
            | Self::HoldPlace
            | Self::HoldRelease
            | Self::LogArchive => IntentRole::Plain,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted: the human principal, their teams, the host and the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Host name of the machine that wrote the entry.
    pub host: String,
    /// The authenticated human principal (user id), or `system`.
    pub principal: String,
    /// `stele/<version>`.
    pub runtime: String,
    /// The principal's teams at decision time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
}

/// What the event acted on, in canonical form. Only the fields that apply are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Program arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Host name (canonical, ASCII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Workspace-relative path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Program (resolved absolute path or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Model provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Scheme or protocol (`https`, `http`, `tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// MCP server (as configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Tool name (stele tool or MCP tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// A policy decision's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Permitted.
    Allow,
    /// Refused.
    Deny,
    /// A human must approve.
    Ask,
}

/// The policy decision recorded with an intent or a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// `sha256:<hex>` digest of the policy bundle in force.
    pub bundle: String,
    /// The effect.
    pub effect: Effect,
    /// Layer that determined the decision (`org`, `team:<name>`, `project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Ids of the determining policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Short human explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A result's reference to its intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refs {
    /// Base64 leaf hash of the intent.
    pub intent_leaf: String,
    /// Index of the intent.
    pub intent_seq: u64,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Succeeded.
    Ok,
    /// Failed.
    Error,
    /// Refused by policy or a human.
    Denied,
    /// Killed or crashed before finishing.
    Interrupted,
    /// Stopped by a timeout.
    Timeout,
}

/// The outcome of an action. Integers only (no floats in leaves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Bytes received / read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes sent / written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Exit code or protocol status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Short detail (error message, signal name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The status.
    pub status: Status,
    /// Model input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    /// Model output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
}

impl Outcome {
    /// An outcome with only a status.
    pub fn status(status: Status) -> Self {
        Self {
            bytes_in: None,
            bytes_out: None,
            code: None,
            detail: None,
            duration_ms: None,
            status,
            tokens_in: None,
            tokens_out: None,
        }
    }
}

/// Whether a payload's plain SHA-256 may appear in the leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Only the salted commitment is in the leaf (prompts, outputs).
    CommitmentOnly,
    /// Also the plain SHA-256 (non-sensitive content such as file bytes a
    /// reviewer wants to match against a copy).
    WithDigest,
}

/// A payload body to store beside the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadInput {
    /// Role (`request`, `response`, `stdout`, `args`, …).
    pub role: String,
    /// Media type.
    pub media: String,
    /// The bytes.
    pub body: Vec<u8>,
    /// Whether the plain digest is disclosed.
    pub disclosure: Disclosure,
}

/// A payload's commitment as written in the leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRef {
    /// `sha256s:<base64 SHA-256(salt ‖ body)>`.
    pub commit: String,
    /// Media type.
    pub media: String,
    /// Role.
    pub role: String,
    /// Plain SHA-256 hex, only with [`Disclosure::WithDigest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Body size in bytes.
    pub size: u64,
}

/// One event to append. The sequencer adds log, index, chain links and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The kind.
    pub kind: EventKind,
    /// Session id, when the event belongs to a session.
    pub session: Option<String>,
    /// Who.
    pub actor: Actor,
    /// On what.
    pub target: Option<Target>,
    /// The policy decision, for intents and denials.
    pub decision: Option<DecisionRecord>,
    /// For results: the intent.
    pub refs: Option<Refs>,
    /// For results: how it ended.
    pub outcome: Option<Outcome>,
    /// Bodies to commit to.
    pub payloads: Vec<PayloadInput>,
    /// Bodies the caller has already sealed ([`crate::payload::seal`]), so that it knows their
    /// commitments before the entry is written (to refer to them from other bodies). Stored
    /// and listed in the leaf like `payloads`, after them.
    pub sealed: Vec<crate::payload::SealedPayload>,
    /// Payloads committed by an earlier entry that this entry refers to again: listed in the
    /// leaf (role as given here), stored once. The writer refuses a commitment it does not
    /// hold.
    pub shared: Vec<PayloadRef>,
    /// Kind-specific extra fields (integers and strings only; no floats).
    pub data: Option<serde_json::Value>,
}

impl Event {
    /// A bare event of `kind` by `actor`.
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Self {
            kind,
            session: None,
            actor,
            target: None,
            decision: None,
            refs: None,
            outcome: None,
            payloads: Vec::new(),
            sealed: Vec::new(),
            shared: Vec::new(),
            data: None,
        }
    }

    /// Set the session.
    pub fn in_session(mut self, id: impl Into<String>) -> Self {
        self.session = Some(id.into());
        self
    }

    /// Set the target.
    pub fn with_target(mut self, t: Target) -> Self {
        self.target = Some(t);
        self
    }

    /// Set the decision.
    pub fn with_decision(mut self, d: DecisionRecord) -> Self {
        self.decision = Some(d);
        self
    }

    /// Set the intent reference.
    pub fn with_refs(mut self, r: Refs) -> Self {
        self.refs = Some(r);
        self
    }

    /// Set the outcome.
    pub fn with_outcome(mut self, o: Outcome) -> Self {
        self.outcome = Some(o);
        self
    }

    /// Add a payload.
    pub fn with_payload(mut self, p: PayloadInput) -> Self {
        self.payloads.push(p);
        self
    }

    /// Add a payload sealed by the caller.
    pub fn with_sealed_payload(mut self, p: crate::payload::SealedPayload) -> Self {
        self.sealed.push(p);
        self
    }

    /// Refer to a payload an earlier entry committed.
    pub fn with_shared_payload(mut self, r: PayloadRef) -> Self {
        self.shared.push(r);
        self
    }

    /// Set kind-specific data.
    pub fn with_data(mut self, d: serde_json::Value) -> Self {
        self.data = Some(d);
        self
    }
}
