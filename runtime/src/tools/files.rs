//! The workspace file tools (through cap-std; each file access is mediated).

use serde_json::Value;
use stele_sandbox::tools::{ToolError, WorkspaceTools};

use super::{specs, Ran};

fn arg<'a>(input: &'a Value, key: &str) -> Result<&'a str, String> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string argument {key:?}"))
}

/// Largest file the model may read in one call.
const READ_LIMIT: usize = 1 << 20;

/// Run a file tool; errors become tool errors for the model.
pub(super) fn run(files: &WorkspaceTools, name: &str, input: &Value) -> Ran {
    match run_inner(files, name, input) {
        Ok(text) => Ran::ok(text),
        Err(Failure::Arg(e)) => Ran::error(e),
        Err(Failure::Tool(ToolError::Denied {
            action,
            path,
            reason,
        })) => {
            let mut r = Ran::error(
                serde_json::json!({
                    "error": "denied_by_policy",
                    "action": action,
                    "path": path,
                    "reason": reason,
                })
                .to_string(),
            );
            r.outcome.status = stele_audit::Status::Denied;
            r
        }
        Err(Failure::Tool(e)) => Ran::error(e.to_string()),
    }
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
            let path = input.get("path").and_then(Value::as_str).unwrap_or(".");
            let path = if path == "." { "" } else { path };
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
