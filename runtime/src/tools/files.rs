//! The workspace file tools (through cap-std; each file access is mediated).

use std::io::Read as _;
use std::sync::Arc;

use serde_json::Value;
use stele_sandbox::tools::{ToolError, WorkspaceTools};
use stele_sandbox::Refusal;

use super::{denial_json, specs, Ran};
use crate::gate::mediator::{RefusedBeforePolicy, ShowWrite};
use crate::gate::shown::{self, Current, MAX_DIFFED_FILE};
use crate::gate::Denial;

/// What an approver of a `file_write` or `file_edit` call is shown: the
/// content written, or its changes to the current file (read by stele
/// through `dir`, for the approver only). `None` for other tools.
pub(crate) fn show_write(
    dir: &Arc<cap_std::fs::Dir>,
    name: &str,
    input: &Value,
) -> Option<ShowWrite> {
    let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let dir = dir.clone();
    match name {
        specs::FILE_WRITE => {
            let content = text("content")?;
            Some(Box::new(move |path: &str| {
                Some(shown::file_write(
                    path,
                    content.as_bytes(),
                    &current(&dir, path),
                ))
            }))
        }
        specs::FILE_EDIT => {
            let (old, new) = (text("old_text")?, text("new_text")?);
            Some(Box::new(move |path: &str| {
                let cur = current(&dir, path);
                // The same replacement the tool makes; when it would fail,
                // the tool fails before writing, and the default text stands.
                let Current::Present(bytes) = &cur else {
                    return None;
                };
                let before = std::str::from_utf8(bytes).ok()?;
                if old.is_empty() || before.matches(old.as_str()).count() != 1 {
                    return None;
                }
                let after = before.replacen(old.as_str(), &new, 1);
                Some(shown::file_write(path, after.as_bytes(), &cur))
            }))
        }
        _ => None,
    }
}

/// The file at `path` as an approver should see it replaced.
fn current(dir: &cap_std::fs::Dir, path: &str) -> Current {
    let meta = match dir.symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Current::Absent,
        Err(_) => return Current::NotRead(None),
    };
    if !meta.is_file() || meta.len() > MAX_DIFFED_FILE as u64 {
        return Current::NotRead(Some(meta.len()));
    }
    let mut bytes = Vec::new();
    match dir
        .open(path)
        .and_then(|f| f.take(MAX_DIFFED_FILE as u64 + 1).read_to_end(&mut bytes))
    {
        Ok(n) if n <= MAX_DIFFED_FILE => Current::Present(bytes),
        Ok(n) => Current::NotRead(Some(n as u64)),
        Err(_) => Current::NotRead(Some(meta.len())),
    }
}

fn arg<'a>(input: &'a Value, key: &str) -> Result<&'a str, String> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string argument {key:?}"))
}

/// Largest file the model may read in one call.
const READ_LIMIT: usize = 1 << 20;

/// Run a file tool; errors become tool errors for the model.
pub(crate) fn run(files: &WorkspaceTools, name: &str, input: &Value) -> Ran {
    match run_inner(files, name, input) {
        Ok(text) => Ran::ok(text),
        Err(Failure::Arg(e)) => Ran::error(e),
        Err(Failure::Tool(
            ToolError::Denied {
                action,
                path,
                refusal,
            }
            | ToolError::Refused {
                action,
                path,
                refusal,
                ..
            },
        )) => denied(action, &path, &refusal),
        Err(Failure::Tool(e)) => Ran::error(e.to_string()),
    }
}

/// A refused file access as the model sees it: the logged denial (rules,
/// layer, audit entry) with the action and path; a refusal made before
/// policy (an unusable path, an escape, a FIFO…) with its rule and audit
/// entry; or, when nothing could be logged, the reason.
fn denied(action: &str, path: &str, refusal: &Refusal) -> Ran {
    let text = if let Some(r) = refusal.detail::<RefusedBeforePolicy>() {
        serde_json::json!({
            "error": "refused",
            "action": action,
            "path": path,
            "rule": r.rule,
            "reason": r.denial.reason,
            "audit_entry": r.denial.seq,
        })
    } else {
        match refusal.detail::<Denial>() {
            Some(d) => {
                let mut v = denial_json(d);
                v["action"] = action.into();
                v["path"] = path.into();
                v
            }
            None => serde_json::json!({
                "error": "refused",
                "action": action,
                "path": path,
                "reason": refusal.reason(),
            }),
        }
    };
    let mut r = Ran::error(text.to_string());
    r.outcome.status = stele_audit::Status::Denied;
    r.outcome.detail = Some(refusal.reason().chars().take(200).collect());
    r
}

enum Failure {
    Arg(String),
    Tool(ToolError),
}

impl From<ToolError> for Failure {
    fn from(e: ToolError) -> Self {
        Failure::Tool(e)
    }
}

fn run_inner(files: &WorkspaceTools, name: &str, input: &Value) -> Result<String, Failure> {
    let a = |k| arg(input, k).map_err(Failure::Arg);
    match name {
        specs::FILE_READ => {
            let out = files.read(a("path")?, READ_LIMIT)?;
            Ok(String::from_utf8_lossy(&out.content).into_owned())
        }
        specs::FILE_WRITE => {
            let out = files.write(a("path")?, a("content")?.as_bytes())?;
            Ok(format!(
                "wrote {} bytes to {} ({:?})",
                out.bytes_written, out.path, out.creation
            ))
        }
        specs::FILE_EDIT => {
            let out = files.edit(a("path")?, a("old_text")?, a("new_text")?)?;
            Ok(format!("edited {} ({} bytes)", out.path, out.bytes_written))
        }
        specs::FILE_LIST => {
            // No path, "", "." and "./" all name the workspace root.
            let path = match input.get("path") {
                None | Some(Value::Null) => ".",
                Some(_) => a("path")?,
            };
            let entries = files.list(path)?;
            Ok(entries
                .iter()
                .map(|e| format!("{:?}\t{}\t{}", e.kind, e.size, e.name))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        specs::FILE_SEARCH => {
            let glob = input.get("glob").and_then(Value::as_str);
            let hits = files.search(a("query")?, glob, 200)?;
            Ok(hits
                .iter()
                .map(|h| format!("{}:{}: {}", h.path, h.line, h.text))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        other => Err(Failure::Arg(format!("{other} is not a file tool"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;

    use serde_json::json;
    use stele_sandbox::tools::WorkspaceTools;
    use stele_sandbox::Requester;

    use crate::gate::mediator::tests::setup;
    use crate::gate::mediator::{GateMediator, Parent};
    use crate::provider::ToolResultStatus;

    #[test]
    fn a_file_tool_denial_names_the_rule_and_its_layer() {
        let s = setup();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("reports/audit-export")).unwrap();
        let m = Arc::new(GateMediator::with_parent(
            s.gate.clone(),
            Parent::ToolCall(3),
        ));
        let files = WorkspaceTools::open(ws.path(), m, Requester::default()).unwrap();
        let input = json!({"path": "reports/audit-export/x.csv", "content": "a,b\n"});
        let ran = super::run(&files, super::specs::FILE_WRITE, &input);
        assert_eq!(ran.status, ToolResultStatus::Error);
        assert_eq!(ran.outcome.status, stele_audit::Status::Denied);
        let v: serde_json::Value = serde_json::from_str(&ran.text).unwrap();
        assert_eq!(v["error"], "denied_by_policy");
        assert_eq!(v["policies"], json!(["project.no-audit-exports"]));
        assert_eq!(v["layer"], "project");
        assert_eq!(v["action"], "file.write");
        assert_eq!(v["path"], "reports/audit-export/x.csv");
        assert!(v["audit_entry"].as_u64().is_some(), "{v}");
        assert!(!ws.path().join("reports/audit-export/x.csv").exists());
        // A refusal no policy made says so, without inventing a rule.
        let ran = super::run(
            &files,
            super::specs::FILE_READ,
            &json!({"path": "/etc/passwd"}),
        );
        assert_eq!(ran.status, ToolResultStatus::Error);
        assert!(!ran.text.contains("denied_by_policy"), "{}", ran.text);
        // It is a denial all the same, with its rule and its entry.
        assert_eq!(ran.outcome.status, stele_audit::Status::Denied);
        let v: serde_json::Value = serde_json::from_str(&ran.text).unwrap();
        assert_eq!(v["error"], "refused");
        assert_eq!(v["rule"], "path.absolute");
        assert!(v["audit_entry"].as_u64().is_some(), "{v}");
    }

    #[test]
    fn the_root_is_listed_and_searched_and_escapes_are_logged_denials() {
        let s = setup();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("receipts")).unwrap();
        std::fs::write(ws.path().join("receipts/r1.txt"), "north 12\n").unwrap();
        let fifo =
            std::ffi::CString::new(ws.path().join("receipts/pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let m = Arc::new(GateMediator::with_parent(
            s.gate.clone(),
            Parent::ToolCall(3),
        ));
        let files = WorkspaceTools::open(ws.path(), m, Requester::default()).unwrap();
        // The model's natural first call, in every spelling (finance lets
        // its members list ".").
        for input in [
            json!({}),
            json!({"path": "."}),
            json!({"path": ""}),
            json!({"path": "./"}),
        ] {
            let ran = super::run(&files, super::specs::FILE_LIST, &input);
            assert_eq!(ran.status, ToolResultStatus::Ok, "{input}: {}", ran.text);
            assert!(ran.text.contains("receipts"), "{input}: {}", ran.text);
        }
        let ran = super::run(
            &files,
            super::specs::FILE_SEARCH,
            &json!({"query": "north"}),
        );
        assert!(
            ran.text.contains("receipts/r1.txt:1: north 12"),
            "{}",
            ran.text
        );
        // A FIFO is refused at once (reading it would block the run).
        let started = std::time::Instant::now();
        let ran = super::run(
            &files,
            super::specs::FILE_READ,
            &json!({"path": "receipts/pipe"}),
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            ran.outcome.status,
            stele_audit::Status::Denied,
            "{}",
            ran.text
        );
        let v: serde_json::Value = serde_json::from_str(&ran.text).unwrap();
        assert_eq!(v["rule"], "file.not_regular");
        // Escapes are denials in the log: a policy.decision, status denied.
        let ran = super::run(
            &files,
            super::specs::FILE_READ,
            &json!({"path": "../../etc/passwd"}),
        );
        let v: serde_json::Value = serde_json::from_str(&ran.text).unwrap();
        assert_eq!(v["rule"], "path.parent_dir");
        let seq = v["audit_entry"].as_u64().unwrap();
        s.gate.end_session(stele_audit::Status::Ok, None).unwrap();
        let l = crate::gate::mediator::tests::leaves(&s.db);
        let e = &l[seq as usize];
        assert_eq!(e.kind, stele_audit::EventKind::PolicyDecision);
        assert_eq!(
            e.outcome.as_ref().unwrap().status,
            stele_audit::Status::Denied
        );
        assert_eq!(
            e.target.as_ref().unwrap().path.as_deref(),
            Some("../../etc/passwd")
        );
        assert_eq!(e.data.as_ref().unwrap()["tool_call"], 3);
        assert_eq!(
            e.data.as_ref().unwrap()["refusal"]["rule"],
            "path.parent_dir"
        );
        // The root's listing was decided, as ".".
        assert!(l
            .iter()
            .any(|e| e.kind == stele_audit::EventKind::PolicyDecision
                && e.target.as_ref().and_then(|t| t.path.as_deref()) == Some(".")
                && e.decision
                    .as_ref()
                    .is_some_and(|d| d.effect == stele_audit::Effect::Allow)));
    }
}
