//! The `scripted` provider: replays fixed assistant turns from a JSON file, for demos and tests.
//! It is not a model, and says so in [`ProviderInfo`] so the audit log marks its turns.
//!
//! The file is a JSON list of turns:
//!
//! ```json
//! [
//!   {"content": [{"type": "text", "text": "Reading the receipts."},
//!                {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a.txt"}}]},
//!   {"expect_tool_result_contains": "total",
//!    "content": [{"type": "text", "text": "Done."}]}
//! ]
//! ```
//!
//! Turn `n` answers the request whose conversation holds `n` assistant messages, so a resumed
//! session continues where it stopped. Optional expectations check the request a turn answers
//! (its last message): `expect_tool_result_contains`, `expect_tool_result_status` (`ok`/`error`),
//! `expect_user_contains`. An unmet expectation is an error, so a demo cannot drift silently.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ProviderError;
use super::types::{ChatRequest, ChatResponse, Content, Role, StopReason, ToolResultStatus, Usage};
use super::{ModelProvider, ProviderInfo, ProviderKind, StreamEvent};

/// One block of a scripted turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScriptBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call; `id` defaults to `scripted-<turn>-<n>`.
    ToolUse {
        /// The call id.
        #[serde(default)]
        id: Option<String>,
        /// The tool.
        name: String,
        /// Its input.
        #[serde(default = "empty_object")]
        input: Value,
    },
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// One scripted assistant turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTurn {
    /// The blocks to return.
    pub content: Vec<ScriptBlock>,
    /// Stop reason; defaults to `tool_use` when the turn has tool calls, else `end_turn`.
    #[serde(default)]
    pub stop: Option<StopReason>,
    /// Usage to report (zero by default: nothing was generated).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The request's last message must hold a tool result containing this text.
    #[serde(default)]
    pub expect_tool_result_contains: Option<String>,
    /// The request's last message must hold a tool result with this status.
    #[serde(default)]
    pub expect_tool_result_status: Option<ToolResultStatus>,
    /// The request's last message must hold user text containing this.
    #[serde(default)]
    pub expect_user_contains: Option<String>,
}

/// Replays a script.
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    source: String,
    turns: Vec<ScriptTurn>,
}

impl ScriptedProvider {
    /// Load a script file. Errors name the file, and for bad JSON the line and column.
    pub fn from_file(path: &Path) -> Result<Self, ProviderError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Script {
            detail: format!("cannot read script {}: {e}", path.display()),
        })?;
        Self::from_str_named(&text, &path.display().to_string())
    }

    /// Parse a script held in memory; `name` is used in messages and in [`ProviderInfo`].
    pub fn from_str_named(text: &str, name: &str) -> Result<Self, ProviderError> {
        let turns: Vec<ScriptTurn> =
            serde_json::from_str(text).map_err(|e| ProviderError::Script {
                detail: format!("{name}: line {}, column {}: {e}", e.line(), e.column()),
            })?;
        if turns.is_empty() {
            return Err(ProviderError::Script {
                detail: format!("{name}: the script has no turns"),
            });
        }
        Ok(Self {
            source: name.to_string(),
            turns,
        })
    }

    /// A provider over turns built in code.
    pub fn from_turns(name: &str, turns: Vec<ScriptTurn>) -> Self {
        Self {
            source: name.to_string(),
            turns,
        }
    }

    /// The script's path or name.
    pub fn source(&self) -> &Path {
        Path::new(&self.source)
    }

    fn check(&self, n: usize, turn: &ScriptTurn, req: &ChatRequest) -> Result<(), ProviderError> {
        let last = req.messages.last().filter(|m| m.role == Role::User);
        let results = || {
            last.into_iter()
                .flat_map(|m| &m.content)
                .filter_map(|c| match c {
                    Content::ToolResult {
                        content, status, ..
                    } => Some((content, *status)),
                    _ => None,
                })
        };
        let fail = |what: String| {
            Err(ProviderError::Script {
                detail: format!(
                    "{}: turn {}: expectation not met: {what}",
                    self.source,
                    n + 1
                ),
            })
        };
        if let Some(want) = &turn.expect_tool_result_contains {
            if !results().any(|(c, _)| c.contains(want.as_str())) {
                return fail(format!(
                    "no tool result in the last message contains {want:?}"
                ));
            }
        }
        if let Some(want) = turn.expect_tool_result_status {
            if !results().any(|(_, s)| s == want) {
                return fail(format!(
                    "no tool result in the last message has status {want:?}"
                ));
            }
        }
        if let Some(want) = &turn.expect_user_contains {
            let found = last
                .into_iter()
                .flat_map(|m| &m.content)
                .any(|c| matches!(c, Content::Text(t) if t.contains(want.as_str())));
            if !found {
                return fail(format!(
                    "no user text in the last message contains {want:?}"
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ModelProvider for ScriptedProvider {
    async fn chat(
        &self,
        req: &ChatRequest,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError> {
        let n = req
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        let turn = self.turns.get(n).ok_or_else(|| ProviderError::Script {
            detail: format!(
                "{}: script exhausted: it has {} turns and turn {} was asked for",
                self.source,
                self.turns.len(),
                n + 1
            ),
        })?;
        self.check(n, turn, req)?;
        let mut content = Vec::new();
        for (i, block) in turn.content.iter().enumerate() {
            match block {
                ScriptBlock::Text { text } => {
                    events(StreamEvent::TextDelta(text.clone()));
                    content.push(Content::Text(text.clone()));
                }
                ScriptBlock::ToolUse { id, name, input } => {
                    let id = id
                        .clone()
                        .unwrap_or_else(|| format!("scripted-{}-{}", n + 1, i + 1));
                    events(StreamEvent::ToolUseStart {
                        id: id.clone(),
                        name: name.clone(),
                    });
                    events(StreamEvent::ToolInputDelta {
                        id: id.clone(),
                        partial_json: input.to_string(),
                    });
                    content.push(Content::ToolUse {
                        id: String::new(),
                        wire_id: Some(id),
                        name: name.clone(),
                        input: input.clone(),
                    });
                }
            }
        }
        let has_calls = content.iter().any(|c| matches!(c, Content::ToolUse { .. }));
        let stop = turn.stop.clone().unwrap_or(if has_calls {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        });
        Ok(ChatResponse {
            content,
            stop,
            usage: turn.usage.unwrap_or_default(),
            model: "scripted".to_string(),
            // Serialising plain data cannot fail; an empty body would show if it did.
            request_body: serde_json::to_vec(req).unwrap_or_default(),
            response_body: serde_json::to_vec(turn).unwrap_or_default(),
            attempts: 1,
            stream_end: super::StreamEnd::Whole,
            elided: Vec::new(),
        })
    }

    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: ProviderKind::Scripted,
            base_url: self.source.clone(),
            model: "scripted".to_string(),
        }
    }
}
