//! The reviewer's account of what happened, derived only from verified
//! entries and verified payloads — never from the exporter's prose. It
//! answers the auditor's questions per session: who, the task, which
//! models, every file read and written, every command and connection,
//! every denial with its rule, every approval with its approver, their
//! method and the exact text they were shown.
//!
//! Rendered as Markdown ([`markdown`]), one self-contained HTML file
//! ([`html`]) or JSON (serde; its shape is documented in
//! `docs/review-report.md`).

mod collect;
pub mod html;
pub mod markdown;
pub mod period;
mod period_render;
#[cfg(test)]
#[path = "period_tests.rs"]
mod period_tests;

#[cfg(test)]
#[path = "escape_tests.rs"]
mod escape_tests;

use serde::Serialize;

pub use collect::AccountBuilder;

/// Schema identifier of the JSON form.
pub const SCHEMA: &str = "https://stele.dev/review-report/v1";

/// Most timeline items kept per session (the rest are counted).
pub const MAX_TIMELINE: usize = 5_000;

/// The report.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Account {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Log origin.
    pub origin: String,
    /// What the export selected ("session s-…", "all entries", …).
    pub selection: String,
    /// What verification established.
    pub verification: Verification,
    /// One per session the selection touches, in order of first entry.
    pub sessions: Vec<SessionAccount>,
    /// Redaction entries in the selection.
    pub redactions: Vec<Redaction>,
    /// Retention expiries, legal holds placed and released, archival.
    pub retention: Vec<RetentionEvent>,
    /// The period evidence (a report for a time window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<period::Period>,
}

/// Verification facts (what was and was not checked).
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Verification {
    /// Always "verified": a report is only produced for a verified export.
    pub result: &'static str,
    /// Entries verified (the whole log prefix).
    pub entries: u64,
    /// Entries selected.
    pub selected: u64,
    /// Merkle root (base64) at that size.
    pub root: String,
    /// Checkpoint sizes whose signature verified.
    pub checkpoints: Vec<u64>,
    /// Witnesses and the largest size each cosigned.
    pub witnesses: Vec<Witnessed>,
    /// Payloads verified / redacted / withheld by the exporter.
    pub payloads_verified: u64,
    /// Payloads erased by a redaction.
    pub payloads_redacted: u64,
    /// Payloads the exporter left out.
    pub payloads_withheld: u64,
    /// Inclusion proofs verified.
    pub proofs: u64,
    /// Whether `SUMMARY.md` and the OCSF view were recomputed and matched.
    pub derived_files_match: bool,
    /// What could not be checked, in words.
    pub unchecked: Vec<String>,
    /// What was verified: an export bundle or the live log.
    pub source: Source,
    /// Who exported (an export), as the manifest says.
    pub exporter: Option<String>,
    /// The database file (the live log).
    pub log_file: Option<String>,
}

/// What a report was derived from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A signed export bundle, verified by `stele-verify`.
    #[default]
    Export,
    /// The live log, verified in one read transaction by `stele audit
    /// report` (there is no export manifest).
    LiveLog,
}

/// A witness cosignature.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Witnessed {
    /// Witness name.
    pub witness: String,
    /// Largest tree size it cosigned.
    pub size: u64,
}

/// Text from a payload: shown when the export holds it, else why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "state", content = "text", rename_all = "snake_case")]
pub enum PayloadText {
    /// The verified body (UTF-8, lossily decoded).
    Present(String),
    /// Erased by a redaction entry.
    Redacted,
    /// Left out by the exporter.
    Withheld,
    /// No payload was committed.
    #[default]
    None,
}

/// One session.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionAccount {
    /// Session id.
    pub id: String,
    /// The principal (user) it ran as.
    pub principal: String,
    /// The principal's teams.
    pub teams: Vec<String>,
    /// How the principal was established, as recorded (`session.start`).
    pub authentication: Option<String>,
    /// The client that started it (CLI command, chat, resume…).
    pub client: Option<serde_json::Value>,
    /// First entry's time.
    pub started: String,
    /// The end entry's time, if it ended.
    pub ended: Option<String>,
    /// How it ended ("ok", "error", "interrupted", …; none if open).
    pub end_status: Option<String>,
    /// The final answer or error, as recorded.
    pub end_detail: Option<String>,
    /// The task as given.
    pub task: PayloadText,
    /// Network mode, sandbox backend, policy bundle digest.
    pub network: Option<String>,
    /// Sandbox backend.
    pub sandbox: Option<String>,
    /// Policy bundle digest.
    pub policy_bundle: Option<String>,
    /// Models used.
    pub models: Vec<ModelUse>,
    /// Every file opened for reading or writing, and every refused access.
    pub files: Vec<FileAccess>,
    /// Every command.
    pub commands: Vec<CommandRun>,
    /// Every connection attempt.
    pub connections: Vec<Connection>,
    /// Every MCP call.
    pub mcp_calls: Vec<McpCall>,
    /// Every denial.
    pub denials: Vec<Denial>,
    /// Every approval asked for.
    pub approvals: Vec<Approval>,
    /// The entries in order (at most [`MAX_TIMELINE`]).
    pub timeline: Vec<TimelineItem>,
    /// Entries of the session in the selection.
    pub entries: u64,
}

/// A decision, as recorded.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rule {
    /// "allow", "deny" or "ask".
    pub effect: String,
    /// Policy ids that determined it (empty: denied by default).
    pub policies: Vec<String>,
    /// The layer ("org", "team:finance", …).
    pub layer: Option<String>,
    /// The decision's explanation, with each rule's source file and line.
    pub reason: Option<String>,
}

/// Model use.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelUse {
    /// Model name.
    pub model: String,
    /// Provider.
    pub provider: Option<String>,
    /// Endpoint it was sent to.
    pub endpoint: Option<String>,
    /// Requests made.
    pub requests: u64,
    /// Requests refused by policy.
    pub denied: u64,
    /// Input tokens reported.
    pub tokens_in: u64,
    /// Output tokens reported.
    pub tokens_out: u64,
}

/// A file access.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileAccess {
    /// Entry of the decision.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Workspace-relative path.
    pub path: String,
    /// "read" or "write".
    pub access: String,
    /// The operation recorded ("open", "create", …).
    pub op: Option<String>,
    /// Bytes read (from the close entry).
    pub bytes_read: Option<u64>,
    /// Bytes written.
    pub bytes_written: Option<u64>,
    /// SHA-256 of the file after writing.
    pub sha256_after_write: Option<String>,
    /// The decision.
    pub rule: Rule,
}

/// A command.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandRun {
    /// Entry of the start.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Program.
    pub program: Option<String>,
    /// Arguments.
    pub argv: Vec<String>,
    /// Working folder.
    pub cwd: Option<String>,
    /// Exit code.
    pub exit: Option<i64>,
    /// Result status ("ok", "error", …; none if no end entry).
    pub status: Option<String>,
    /// Duration.
    pub duration_ms: Option<u64>,
    /// The decision.
    pub rule: Rule,
}

/// A connection attempt.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Connection {
    /// Entry of the decision.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Host.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Scheme.
    pub scheme: Option<String>,
    /// Bytes sent.
    pub bytes_out: Option<u64>,
    /// Bytes received.
    pub bytes_in: Option<u64>,
    /// The decision.
    pub rule: Rule,
}

/// An MCP call.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct McpCall {
    /// Entry of the call.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Server.
    pub server: Option<String>,
    /// Tool.
    pub tool: Option<String>,
    /// Result status.
    pub status: Option<String>,
    /// The decision.
    pub rule: Rule,
}

/// A denial.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Denial {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Entry kind.
    pub kind: String,
    /// What was refused (path, program, host, model, tool).
    pub target: String,
    /// The decision, with the rule and its source line.
    pub rule: Rule,
}

/// An approval asked for, and its answer.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Approval {
    /// Entry of the request.
    pub seq: u64,
    /// Time asked.
    pub ts: String,
    /// Who asked (the session's principal).
    pub requester: String,
    /// What for.
    pub target: String,
    /// The rule that asked.
    pub rule: Rule,
    /// The exact text the approver was shown.
    pub shown: PayloadText,
    /// SHA-256 of the shown text, as recorded.
    pub shown_sha256: Option<String>,
    /// "granted", "denied" or "unanswered".
    pub answer: String,
    /// Who answered.
    pub approver: Option<String>,
    /// How ("terminal", "flag", "demo", …).
    pub method: Option<String>,
    /// Detail recorded with the answer (a ticket, why no one was asked).
    pub detail: Option<String>,
    /// Time answered.
    pub answered: Option<String>,
}

/// One line of the timeline.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TimelineItem {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Entry kind.
    pub kind: String,
    /// What it concerns.
    pub target: String,
    /// Decision effect or result status.
    pub outcome: String,
}

/// A redaction.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Redaction {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Who.
    pub actor: String,
    /// Payloads erased.
    pub count: usize,
    /// Why.
    pub reason: String,
}

/// A `payload.expiry`, `hold.place`, `hold.release` or `log.archive` entry.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RetentionEvent {
    /// Entry.
    pub seq: u64,
    /// Time.
    pub ts: String,
    /// Who.
    pub actor: String,
    /// The entry kind.
    pub kind: String,
    /// What it did: the class and cut-off of an expiry and how many
    /// payloads it erased; the scope of a hold; which hold a release
    /// approves and whether it released it; what was archived.
    pub detail: String,
}
