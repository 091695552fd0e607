//! Every shape `--json` prints, as owned serde types with a JSON Schema
//! each (docs/json/NAME.schema.json, generated from these types; the test
//! `runtime/tests/json_schemas.rs` fails when a checked-in schema is stale,
//! and the end-to-end tests validate real output against them). No Rust
//! debug strings: enums serialise as their documented lower-case names.

use schemars::JsonSchema;
use serde::Serialize;

use crate::terminal_safe;

/// Print `v` as one line of terminal-safe JSON (JSON Lines).
pub fn line<T: Serialize>(v: &T) -> anyhow::Result<()> {
    crate::outln!("{}", terminal_safe::json_line(&serde_json::to_value(v)?));
    Ok(())
}

/// Print `v` as pretty, terminal-safe JSON (one document).
pub fn pretty<T: Serialize>(v: &T) -> anyhow::Result<()> {
    crate::outln!("{}", terminal_safe::json_pretty(&serde_json::to_value(v)?));
    Ok(())
}

/// The first event of `stele run --json` (one JSON object per line; the
/// other events are described in docs/runtime.md).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunStart {
    /// Always `start`.
    pub event: StartEvent,
    /// The session's id (`stele session show ID`, `stele session resume ID`).
    pub session: String,
    /// The person the session runs for.
    pub principal: String,
    /// The policy bundle's digest (in every decision of the session).
    pub policy: String,
    /// The audit database.
    pub log: String,
}

/// The tag of [`RunStart`].
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartEvent {
    /// The session started.
    Start,
}

/// `stele bench tool-call --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallBench {
    /// Tool calls measured (the warm-up call left out).
    pub calls: usize,
    /// Model's last streamed event → the call's durable `tool.intent`, p50.
    pub intent_p50_ms: f64,
    /// The same, p99.
    pub intent_p99_ms: f64,
    /// Model's last streamed event → the sandboxed program's first instruction, p50.
    pub program_p50_ms: f64,
    /// The same, p99.
    pub program_p99_ms: f64,
}

/// `stele audit bench --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditBench {
    /// Where the signing key is (`--signer`), in words.
    pub signer: String,
    /// The measured log's verifier key.
    pub verifier: String,
    /// Entries in the log before the measured appends (`--existing`).
    pub existing: u64,
    /// Opening the log (its start-up check), in ms.
    pub open_ms: f64,
    /// Opening it when its full verification is due, in ms (null when not measured).
    pub full_start_ms: Option<f64>,
    /// Concurrent writers.
    pub writers: usize,
    /// Entries appended concurrently.
    pub entries: u64,
    /// Durable, acknowledged appends per second with `writers` writers.
    pub appends_per_s: f64,
    /// Append → acknowledged (signed checkpoint), p50.
    pub latency_p50_ms: f64,
    /// The same, p99.
    pub latency_p99_ms: f64,
    /// Checkpoint signatures made during the concurrent appends.
    pub signatures: u64,
    /// One checkpoint signature during the concurrent appends, p50 (ms).
    pub sign_p50_ms: f64,
    /// The same, p99.
    pub sign_p99_ms: f64,
    /// Bytes written to storage per appended entry, where the platform says.
    pub bytes_written_per_entry: Option<f64>,
    /// Appends per second with one writer waiting for each acknowledgement.
    pub serial_per_s: f64,
    /// One serial append, p50.
    pub serial_p50_ms: f64,
    /// One checkpoint signature during the serial appends, p50 (ms).
    pub serial_sign_p50_ms: f64,
    /// The same, p99.
    pub serial_sign_p99_ms: f64,
    /// Entries in the verified log (0 with `--no-verify`).
    pub verified_entries: u64,
    /// Verification speed (entries per wall-clock second; null when not verified).
    pub verify_per_s: Option<f64>,
    /// Verification speed per CPU second of the verifying thread (null when
    /// too little CPU was used to give a rate).
    pub verify_cpu_per_s: Option<f64>,
    /// Average leaf size in bytes.
    pub leaf_bytes: f64,
    /// Integrity bytes per entry (leaf hash, tree nodes, checkpoints).
    pub integrity_bytes: f64,
    /// Database file bytes per entry, everything included.
    pub file_bytes: f64,
    /// Where the scratch log was kept (`--keep`), else null.
    pub kept: Option<String>,
}

/// `stele keys show --json` and `stele keys init --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// The key file.
    pub key_file: String,
    /// The log origin (the key's name).
    pub origin: String,
    /// The verifier key in signed-note form (give it to reviewers).
    pub verifier: String,
    /// True when the key was created by this command.
    pub created: bool,
}

/// One line of `stele session list --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// The person it ran for.
    pub principal: String,
    /// When it started (leaf time).
    pub started: String,
    /// Entries it has in the log.
    pub entries: u64,
    /// `ok`, `error`, `timeout`, `denied`, … when ended; else `paused: …`
    /// or `open: …` (both resumable).
    pub state: String,
}

/// `stele audit export --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportReport {
    /// The bundle written (a folder, or a .tar file).
    pub out: String,
    /// Entries in the exported tiles (the log's size at export).
    pub tree_size: u64,
    /// Entries selected (a session, a time range, or all).
    pub selected: u64,
    /// Files in the bundle.
    pub files: u64,
    /// The log entry recording this export.
    pub export_entry: u64,
    /// The verifier key a reviewer checks it with (`stele-verify OUT --key …`).
    pub verifier: String,
}

/// `stele sandbox exec --json`: the command's result.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecReport {
    /// The request id.
    pub id: String,
    /// `exit N`, `killed by signal N`, `timed out (killed)`.
    pub status: String,
    /// The exit code as a shell reports it (128+N for a signal, 124 timed out).
    pub exit_code: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// When stdout was cut: the bytes the program wrote.
    pub stdout_truncated_total: Option<u64>,
    /// When stderr was cut: the bytes the program wrote.
    pub stderr_truncated_total: Option<u64>,
    /// User CPU time.
    pub user_cpu_ms: f64,
    /// System CPU time.
    pub system_cpu_ms: f64,
    /// Peak resident memory.
    pub max_rss_bytes: u64,
    /// The command's cgroup figures: limits, peaks, CPU, limit events
    /// (docs/sandbox.md, "Resource limits"); null without cgroups.
    pub resources: Option<serde_json::Value>,
    /// The session group's figures after the command; null without cgroups.
    pub session_resources: Option<serde_json::Value>,
    /// Wall time.
    pub duration_ms: f64,
}

/// `stele sandbox bench --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnBench {
    /// Measured runs of each kind.
    pub runs: usize,
    /// `mediated` or `plain`.
    pub workspace: String,
    /// `none` or `proxy`.
    pub network: String,
    /// Plain spawn of /usr/bin/true, median.
    pub plain_median_ms: f64,
    /// Plain spawn, 99th percentile.
    pub plain_p99_ms: f64,
    /// Sandboxed spawn, median.
    pub sandbox_median_ms: f64,
    /// Sandboxed spawn, 99th percentile.
    pub sandbox_p99_ms: f64,
    /// Sandbox median minus plain median.
    pub overhead_median_ms: f64,
}

/// `stele bench gate --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateBench {
    /// Tool calls measured.
    pub calls: usize,
    /// Gate overhead per tool call (decide + durable intent + durable result), median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Of which the policy decision, median.
    pub decide_p50_us: f64,
}

/// `stele bench exec --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBench {
    /// Sandbox backend (`process`, `vm`).
    pub backend: String,
    /// Measured runs per log size (after the first).
    pub runs: usize,
    /// One measurement per log size.
    pub sizes: Vec<ExecBenchSize>,
}

/// `stele bench exec` on a log of one size.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBenchSize {
    /// Entries in the audit log before the first run.
    pub entries_before: u64,
    /// The first run (the executable's digest not yet cached, the export
    /// index not yet built), milliseconds.
    pub first_ms: f64,
    /// Median of the measured runs, milliseconds.
    pub median_ms: f64,
    /// 90th percentile of the measured runs, milliseconds.
    pub p90_ms: f64,
    /// Each measured run, milliseconds, sorted.
    pub wall_ms: Vec<f64>,
    /// Peak RSS, KiB: the largest of `stele` and the processes it started
    /// and waited for (the sandbox's, QEMU), over all runs.
    pub max_rss_kib: u64,
    /// The runs as text (for the human-readable report).
    #[serde(skip)]
    pub runs_text: String,
}

/// `stele bench workload --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadBench {
    /// Small files the command read.
    pub files: usize,
    /// Files it wrote.
    pub writes: usize,
    /// Sandbox backend (`process`, `vm`).
    pub backend: String,
    /// Measured runs of each (after one warm-up run of each).
    pub runs: usize,
    /// Entries in the audit log before the first run.
    pub entries_before: u64,
    /// Entries each run added.
    pub entries_per_run: u64,
    /// Plain `python3`, each measured run, milliseconds, sorted.
    pub plain_ms: Vec<f64>,
    /// Through `stele sandbox exec`, each measured run, milliseconds, sorted.
    pub stele_ms: Vec<f64>,
    /// Median through stele over median plain.
    pub ratio: f64,
}

/// `stele vm check --json` (and `microvm` in `stele sandbox check --json`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmCheck {
    /// QEMU's version line, when found.
    pub qemu: Option<String>,
    /// KVM can be used.
    pub kvm_usable: bool,
    /// Why not, when it cannot.
    pub kvm_detail: Option<String>,
    /// TCG (software emulation) is available.
    pub tcg: bool,
    /// The guest image's digest, when built.
    pub image_digest: Option<String>,
    /// Why there is no image (it is built on first use).
    pub image_error: Option<String>,
    /// The guest agent binary.
    pub agent: Option<String>,
    /// A micro-VM would start now.
    pub ready: bool,
}

/// `stele audit verify --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VerifyOutput {
    /// `verified`, `tampered` or `unreadable`.
    pub result: VerifyResult,
    /// What failed (tampered, unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The report (verified).
    #[serde(flatten)]
    pub report: Option<VerifyFigures>,
}

/// The outcome of verification.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyResult {
    /// Everything checked.
    Verified,
    /// An integrity failure.
    Tampered,
    /// The log could not be read.
    Unreadable,
}

/// What a verified log holds.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyFigures {
    /// The log's origin.
    pub origin: String,
    /// Entries.
    pub entries: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Root hash (base64).
    pub root: String,
    /// Sessions.
    pub sessions: u64,
    /// Sessions without an end entry.
    pub open_sessions: u64,
    /// Payload bodies present and verified.
    pub payloads_present: u64,
    /// Payload bodies redacted.
    pub payloads_redacted: u64,
    /// Redaction entries.
    pub redactions: Vec<RedactionFigure>,
    /// Intents without a result.
    pub unfinished_intents: Vec<UnfinishedFigure>,
    /// Intents closed as interrupted.
    pub interrupted: u64,
    /// First and last entry time.
    pub time_span: Option<(String, String)>,
    /// Size of the anchor checkpoint it is consistent with.
    pub anchor_size: Option<u64>,
    /// Wall seconds.
    pub seconds: f64,
    /// CPU seconds.
    pub cpu_seconds: f64,
}

/// One redaction.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactionFigure {
    /// Its entry.
    pub seq: u64,
    /// Payloads erased.
    pub count: u64,
    /// Why.
    pub reason: String,
}

/// One intent without a result.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnfinishedFigure {
    /// Its entry.
    pub seq: u64,
    /// Its kind.
    pub kind: String,
}

/// Every shape with its schema file name (docs/json/NAME.schema.json).
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    use schemars::schema_for;
    vec![
        ("doctor", schema_for!(super::doctor::report::DoctorReport)),
        ("keys", schema_for!(KeyInfo)),
        ("session-list", schema_for!(SessionSummary)),
        ("audit-export", schema_for!(ExportReport)),
        ("audit-verify", schema_for!(VerifyOutput)),
        ("sandbox-exec", schema_for!(ExecReport)),
        ("sandbox-bench", schema_for!(SpawnBench)),
        ("bench-gate", schema_for!(GateBench)),
        ("bench-workload", schema_for!(WorkloadBench)),
        ("bench-exec", schema_for!(ExecBench)),
        ("vm-check", schema_for!(VmCheck)),
        ("run-start", schema_for!(RunStart)),
        ("bench-tool-call", schema_for!(ToolCallBench)),
        ("audit-bench", schema_for!(AuditBench)),
        (
            "policy-validate",
            schema_for!(super::policy_json::ValidateReport),
        ),
        ("policy-bench", schema_for!(super::policy_json::PolicyBench)),
        ("policy-test", schema_for!(super::policy_json::TestReport)),
        ("review-report", schema_for!(stele_verify::account::Account)),
        (
            "audit-feed-status",
            schema_for!(crate::feed::status::FeedStatus),
        ),
    ]
}
