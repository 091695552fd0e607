//! The `exec` tool: resolve the program, decide `exec` on it, run it in the
//! sandbox (whose file and network accesses the gate mediates), record the end.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stele_audit::{Disclosure, Outcome, PayloadInput, Status};
use stele_policy::canonical::ProgramRef;
use stele_policy::{Action, Resource};
use stele_sandbox::exec::{ExecOutcome, ExecRequest, ExitStatus, Sandbox, Truncation};

use super::Ran;
use crate::gate::{ActionRequest, Authorization, Gate, GateError};

/// Where programs are looked up: the sandbox's read-only system folders
/// (the same files the host has).
const SEARCH_PATH: [&str; 4] = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin"];

/// Resolve `argv[0]` the way the sandbox's PATH would.
pub fn resolve_program(name: &str) -> Option<String> {
    if name.contains('/') {
        return Path::new(name).is_absolute().then(|| name.to_string());
    }
    SEARCH_PATH
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).is_file())
}

/// What a gated command came to.
#[derive(Debug)]
pub enum GatedExec {
    /// Refused by policy or a human; nothing ran.
    Denied(crate::gate::Denial),
    /// It ran (the outcome is recorded in `exec.end`).
    Ran(Box<ExecOutcome>),
    /// The program could not be resolved, or the sandbox failed (recorded).
    Failed(String),
}

/// Decide `exec` on the resolved program, log the intent, run `argv` in the
/// sandbox (its id is the intent's index, so every file and network access
/// names it), log the end with stdout and stderr as payloads.
pub fn exec_gated(
    gate: &Gate,
    sandbox: &dyn Sandbox,
    mut er: ExecRequest,
    data: serde_json::Value,
) -> Result<GatedExec, GateError> {
    let Some(first) = er.argv.first() else {
        return Ok(GatedExec::Failed("argv must not be empty".into()));
    };
    let Some(path) = resolve_program(first) else {
        return Ok(GatedExec::Failed(format!(
            "program {first:?} not found in the sandbox"
        )));
    };
    let program = match ProgramRef::from_resolved_path(&path) {
        Ok(p) => p,
        Err(e) => return Ok(GatedExec::Failed(format!("program {path:?}: {e}"))),
    };
    let mut req = ActionRequest::new(Action::Exec, Resource::Program(program));
    req.argv = er.argv[1..].to_vec();
    req.data = Some(data);
    // Each argument quoted and escaped as needed: what the model sent cannot
    // pass for another command, nor drive the approver's terminal.
    req.shown = Some(crate::gate::shown::exec(
        &er.argv,
        &er.cwd,
        &gate.sandbox_text(),
    ));
    let permit = match gate.authorize(req)? {
        Authorization::Permitted(p) => p,
        Authorization::Denied(d) => return Ok(GatedExec::Denied(d)),
    };
    er.id = permit.intent_seq().to_string();
    match sandbox.exec(er) {
        Ok(out) => {
            let payloads = vec![
                stream("stdout", &out.stdout.bytes),
                stream("stderr", &out.stderr.bytes),
            ];
            let mut data = serde_json::json!({
                "stdout_truncated": matches!(out.stdout.truncation, Truncation::Truncated { .. }),
                "stderr_truncated": matches!(out.stderr.truncation, Truncation::Truncated { .. }),
                "cpu_ms": (out.usage.user_cpu + out.usage.system_cpu).as_millis() as u64,
                "max_rss_bytes": out.usage.max_rss_bytes,
            });
            resource_fields(&mut data, &out);
            // The session's workspace writes so far, against its quota.
            if let Some(w) = sandbox.workspace_usage() {
                data["workspace_bytes_written"] = serde_json::json!(w.bytes_written);
                data["workspace_write_quota"] = serde_json::json!(w.quota.limit());
                data["workspace_writes_refused"] = serde_json::json!(w.refused_writes);
            }
            gate.complete(permit, exec_outcome(&out), payloads, Some(data))?;
            Ok(GatedExec::Ran(Box::new(out)))
        }
        Err(e) => {
            let mut o = Outcome::status(Status::Error);
            o.detail = Some(e.to_string());
            gate.complete(permit, o, Vec::new(), None)?;
            Ok(GatedExec::Failed(format!(
                "the sandbox could not run the command: {e}"
            )))
        }
    }
}

/// Run the exec tool; `tool_intent` is the index of its `tool.intent` entry.
pub(super) fn run(
    gate: &Gate,
    sandbox: &dyn Sandbox,
    tool_intent: u64,
    input: &Value,
) -> Result<Ran, GateError> {
    let argv: Vec<String> = match input.get("argv").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => {
            return Ok(Ran::error(
                "argv must be a non-empty list of strings".into(),
            ))
        }
    };
    let mut er = ExecRequest::new(String::new(), argv);
    if let Some(s) = input.get("stdin").and_then(Value::as_str) {
        er.stdin = s.as_bytes().to_vec();
    }
    if let Some(t) = input.get("timeout_s").and_then(Value::as_u64) {
        er.limits.wall_time = Duration::from_secs(t.clamp(1, 3600));
    }
    let data = serde_json::json!({ "tool_intent": tool_intent, "cwd": "/workspace" });
    Ok(match exec_gated(gate, sandbox, er, data)? {
        GatedExec::Denied(d) => Ran::denied(&d),
        GatedExec::Failed(msg) => Ran::error(msg),
        GatedExec::Ran(out) => {
            let text = format!(
                "exit: {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                describe(out.status),
                limits_note(&out),
                String::from_utf8_lossy(&out.stdout.bytes),
                String::from_utf8_lossy(&out.stderr.bytes)
            );
            let status = match out.status {
                ExitStatus::Exit(0) => crate::provider::ToolResultStatus::Ok,
                _ => crate::provider::ToolResultStatus::Error,
            };
            Ran {
                text,
                status,
                outcome: exec_outcome(&out),
            }
        }
    })
}

/// The command's group figures (whole process tree: peak memory,
/// processes, CPU, limits hit) and the session's after it, in `exec.end`'s
/// data; left out when the sandbox ran without cgroups.
fn resource_fields(data: &mut Value, out: &ExecOutcome) {
    // Each distinct one is its own refusal entry; this counts them all.
    data["network_refusals"] = serde_json::json!(out.network_refusals);
    if let Some(g) = out.usage.group {
        data["resources"] = g.to_json();
    }
    if let Some(s) = out.usage.session {
        data["session_resources"] = s.to_json();
    }
}

fn stream(role: &str, bytes: &[u8]) -> PayloadInput {
    PayloadInput {
        role: role.into(),
        media: "application/octet-stream".into(),
        body: bytes.to_vec(),
        disclosure: Disclosure::CommitmentOnly,
    }
}

fn describe(s: ExitStatus) -> String {
    match s {
        ExitStatus::Exit(c) => format!("code {c}"),
        ExitStatus::Signal(n) => format!("killed by signal {n}"),
        ExitStatus::TimedOut => "timed out (killed)".into(),
    }
}

/// What the model is told about limits its command reached.
fn limits_note(out: &ExecOutcome) -> String {
    let hit = out.usage.group.map(|g| g.limits_hit()).unwrap_or_default();
    if hit.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = hit.iter().map(|h| h.name()).collect();
    format!("\nlimits reached: {}", names.join(", "))
}

fn exec_outcome(out: &ExecOutcome) -> Outcome {
    let status = match out.status {
        ExitStatus::Exit(0) => Status::Ok,
        ExitStatus::Exit(_) | ExitStatus::Signal(_) => Status::Error,
        ExitStatus::TimedOut => Status::Timeout,
    };
    let mut o = Outcome::status(status);
    o.code = Some(i64::from(out.status.code()));
    o.detail = Some(describe(out.status));
    o.duration_ms = Some(out.duration.as_millis() as u64);
    o.bytes_out = Some(out.stdout.bytes.len() as u64 + out.stderr.bytes.len() as u64);
    o
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stele_sandbox::exec::{Captured, ResourceUsage};
    use stele_sandbox::resources::{GroupLimits, GroupUsage};

    use super::*;

    fn outcome(group: Option<GroupUsage>) -> ExecOutcome {
        let none = Captured {
            bytes: Vec::new(),
            truncation: Truncation::Complete,
        };
        ExecOutcome {
            id: "1".into(),
            status: ExitStatus::Signal(9),
            stdout: none.clone(),
            stderr: none,
            usage: ResourceUsage {
                group,
                ..ResourceUsage::default()
            },
            duration: Duration::from_millis(5),
            network_refusals: 3,
        }
    }

    #[test]
    fn limits_reached_are_told_and_recorded() {
        let g = GroupUsage {
            limits: Some(GroupLimits::COMMAND_DEFAULT),
            oom_kills: 1,
            ..GroupUsage::default()
        };
        let out = outcome(Some(g));
        assert_eq!(limits_note(&out), "\nlimits reached: memory");
        let mut data = serde_json::json!({});
        resource_fields(&mut data, &out);
        assert_eq!(
            data["resources"]["limits_hit"],
            serde_json::json!(["memory"])
        );
        assert_eq!(data["network_refusals"], 3);
        assert!(data.get("session_resources").is_none());
        // Without cgroups: nothing to tell, no figures.
        let out = outcome(None);
        assert_eq!(limits_note(&out), "");
        let mut data = serde_json::json!({});
        resource_fields(&mut data, &out);
        assert!(data.get("resources").is_none());
    }
}
