//! Running the tool calls of one reply, each under its stele id: a call whose input is not a
//! complete JSON object (cut by the output limit, or not JSON) is refused and logged, never
//! run as given; an unknown tool is refused and logged; the others go to the tools.

use super::{blocking, progress, Agent, AgentError, Progress};
use crate::provider::{block_size, Content, LARGE_BLOCK};
use crate::telemetry::spans::RunTrace;
use crate::tools::{CallRef, Refusal, ToolOutcome};

/// What running a reply's calls gave.
pub(super) enum Ran {
    /// `final_answer` was called.
    Final(String),
    /// The results to send back (empty: the reply had no calls).
    Results(Vec<Content>),
}

impl Agent {
    /// Run the calls in `content`, in order. `cut` is `(limit, next limit)` when the reply was
    /// cut by the output limit.
    pub(super) async fn run_calls(
        &self,
        content: &[Content],
        cut: Option<(u32, u32)>,
        on: &mut (dyn FnMut(Progress<'_>) + Send),
        trace: &RunTrace,
    ) -> Result<Ran, AgentError> {
        let mut results = Vec::new();
        for c in content {
            let (id, wire_id, name, input) = match c {
                Content::Text(t) => {
                    on(Progress::Text(t));
                    continue;
                }
                Content::ToolResult { .. } => continue,
                Content::ToolUse {
                    id,
                    wire_id,
                    name,
                    input,
                } => (id, wire_id, name, input),
            };
            on(Progress::ToolCall { id, name, input });
            // A large input was stored once with the reply: the call's arguments refer to it.
            let args = (block_size(c) >= LARGE_BLOCK).then(|| {
                self.large_values().store(
                    "args",
                    "application/json",
                    input.to_string().into_bytes(),
                )
            });
            let call = CallRef {
                call_id: id.clone(),
                tool_use_id: wire_id.clone(),
                args,
            };
            let refusal = match (input.is_object(), cut) {
                (true, _) => None,
                (false, Some((limit, next))) => Some(Refusal::InputCut { limit, next }),
                (false, None) => Some(Refusal::InputNotObject),
            };
            let tools = self.tools.clone();
            let (name2, input2) = (name.clone(), input.clone());
            // final_answer is not an effect (no entry): the run's end is its record.
            let span = (name.as_str() != crate::tools::specs::FINAL_ANSWER && refusal.is_none())
                .then(|| trace.tool(name, wire_id.as_deref().unwrap_or(id)));
            let cx = span.as_ref().map(|s| s.context());
            let called = blocking(move || {
                // The tool records its audit entries on the active span.
                let _active = cx.map(|c| c.attach());
                match refusal {
                    Some(r) => tools.refuse(&call, &name2, r),
                    None => tools.call(&call, &name2, &input2),
                }
            })
            .await;
            if let Some(s) = span {
                s.end();
            }
            match called?? {
                ToolOutcome::Final(answer) => return Ok(Ran::Final(answer)),
                ToolOutcome::Output { text, status } => {
                    if let Some(detail) = progress::denial_in(&text) {
                        on(Progress::Decision(progress::Decision::Denied {
                            subject: name,
                            detail: &detail,
                        }));
                    }
                    on(Progress::ToolResult {
                        name,
                        status,
                        text: &text,
                    });
                    results.push(Content::ToolResult {
                        tool_use_id: id.clone(),
                        content: text,
                        status,
                    });
                }
            }
        }
        Ok(Ran::Results(results))
    }
}
