//! What a person (or a machine, with `--json`) sees while the agent works.

use crate::provider::ToolResultStatus;

/// One progress event.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A model turn starts.
    Step(u32),
    /// The model said something.
    Text(&'a str),
    /// The model calls a tool.
    ToolCall {
        /// Tool name.
        name: &'a str,
        /// Arguments.
        input: &'a serde_json::Value,
    },
    /// A tool returned.
    ToolResult {
        /// Tool name.
        name: &'a str,
        /// Ok or error (denials are errors).
        status: ToolResultStatus,
        /// What the model sees.
        text: &'a str,
    },
}

/// How progress is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Short human lines on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

fn short(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ⏎ ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

/// Print one event.
pub fn print(style: ProgressStyle, p: Progress<'_>) {
    match style {
        ProgressStyle::Json => {
            let v = match p {
                Progress::Step(n) => serde_json::json!({"event": "step", "n": n}),
                Progress::Text(t) => serde_json::json!({"event": "text", "text": t}),
                Progress::ToolCall { name, input } => {
                    serde_json::json!({"event": "tool_call", "tool": name, "input": input})
                }
                Progress::ToolResult { name, status, text } => {
                    serde_json::json!({"event": "tool_result", "tool": name, "status": status, "text": text})
                }
            };
            println!("{v}");
        }
        ProgressStyle::Human => match p {
            Progress::Step(n) => eprintln!("── step {n}"),
            Progress::Text(t) => eprintln!("   model: {}", short(t, 160)),
            Progress::ToolCall { name, input } => {
                eprintln!("   → {name} {}", short(&input.to_string(), 120))
            }
            Progress::ToolResult { name, status, text } => {
                let mark = match status {
                    ToolResultStatus::Ok => "✓",
                    ToolResultStatus::Error if text.contains("denied_by_policy") => "✗ denied",
                    ToolResultStatus::Error => "✗",
                };
                eprintln!("   {mark} {name}: {}", short(text, 120));
            }
        },
    }
}
