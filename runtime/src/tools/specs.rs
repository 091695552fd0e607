//! The tools offered to the model, with schemas a model uses well.

use serde_json::json;

use crate::provider::ToolSpec;

/// Names of the built-in tools.
pub const FILE_READ: &str = "file_read";
/// Write a file.
pub const FILE_WRITE: &str = "file_write";
/// Replace text in a file.
pub const FILE_EDIT: &str = "file_edit";
/// List a folder.
pub const FILE_LIST: &str = "file_list";
/// Search file contents.
pub const FILE_SEARCH: &str = "file_search";
/// Run a program in the sandbox.
pub const EXEC: &str = "exec";
/// End the task with an answer.
pub const FINAL_ANSWER: &str = "final_answer";

fn spec(name: &str, description: &str, schema: serde_json::Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: schema,
    }
}

/// Every built-in tool.
pub fn all() -> Vec<ToolSpec> {
    vec![
        spec(FILE_READ, "Read a text file from the workspace. Paths are relative to the workspace root.",
            json!({"type":"object","properties":{"path":{"type":"string","description":"workspace-relative path"}},"required":["path"]})),
        spec(FILE_WRITE, "Create or overwrite a file in the workspace with the given content.",
            json!({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]})),
        spec(FILE_EDIT, "Replace one exact, unique occurrence of old_text with new_text in a workspace file.",
            json!({"type":"object","properties":{"path":{"type":"string"},"old_text":{"type":"string"},"new_text":{"type":"string"}},"required":["path","old_text","new_text"]})),
        spec(FILE_LIST, "List the entries of a workspace folder ('.' for the root).",
            json!({"type":"object","properties":{"path":{"type":"string","default":"."}}})),
        spec(FILE_SEARCH, "Search workspace files for a text; optional glob limits which files.",
            json!({"type":"object","properties":{"query":{"type":"string"},"glob":{"type":"string","default":"**/*"}},"required":["query"]})),
        spec(EXEC, "Run a program in an isolated sandbox (no network unless policy allows, workspace at /workspace). Give argv as a list, e.g. [\"python3\", \"script.py\"]. Toolbox: python3 (pypdf, openpyxl, python-docx, reportlab, pandas, Pillow), pdftotext/pdftoppm, tesseract, node, bash, jq, sqlite3, file. Returns exit code, stdout and stderr.",
            json!({"type":"object","properties":{"argv":{"type":"array","items":{"type":"string"},"minItems":1},"stdin":{"type":"string"},"timeout_s":{"type":"integer","minimum":1,"maximum":3600}},"required":["argv"]})),
        spec(FINAL_ANSWER, "Finish the task: give the final answer or summary for the user.",
            json!({"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]})),
    ]
}
