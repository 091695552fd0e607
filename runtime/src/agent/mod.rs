//! The agent loop: ask the model (a gated, logged `model.request`), run the
//! tools it calls (each gated and logged), feed results back, until it gives
//! a final answer or a step/token/time budget is reached.

pub mod progress;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_audit::{Disclosure, Outcome, PayloadInput, Status};
use stele_policy::{Action, Resource};

use crate::gate::{ActionRequest, Authorization, Gate, GateError};
use crate::provider::{
    ChatRequest, Content, Message, ModelProvider, ProviderKind, Role, StopReason, StreamEvent,
};
use crate::telemetry::spans::RunTrace;
use crate::tools::{ToolBox, ToolOutcome};
pub use progress::Progress;

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Model turns.
    pub max_steps: u32,
    /// Input + output tokens over the run.
    pub max_tokens: u64,
    /// Wall-clock time.
    pub max_time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_steps: 40,
            max_tokens: 2_000_000,
            max_time: Duration::from_secs(3600),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The model called `final_answer`.
    Answered(String),
    /// The model stopped without calling a tool; its last text.
    Stopped(String),
    /// A budget ran out.
    BudgetExhausted(String),
    /// The model could not be reached or refused; the session can be resumed.
    Paused(String),
    /// Policy refused the model request itself.
    ModelDenied(String),
}

/// Why the loop stopped abnormally: the log or a task failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The gate failed (the audit log cannot be written): nothing more happens.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Join(String),
}

/// Everything a run needs.
pub struct Agent {
    /// The session's gate.
    pub gate: Arc<Gate>,
    /// The model.
    pub provider: Arc<dyn ModelProvider>,
    /// The tools.
    pub tools: Arc<ToolBox>,
    /// System prompt.
    pub system: String,
    /// Max tokens per model turn.
    pub max_tokens_per_turn: u32,
}

/// The system prompt used unless configured otherwise.
pub const DEFAULT_SYSTEM: &str = "You are stele, a careful assistant working in a sandboxed workspace for a regulated \
organisation. Use the tools to read and write workspace files and to run programs (python3, node, bash) in the \
sandbox. Every action is checked against policy and recorded in an audit log; if a tool result says an action was \
denied by policy, do not try to work around it — explain it in your answer. When the task is done, call \
final_answer with a short summary.";

fn provider_name(k: ProviderKind) -> &'static str {
    match k {
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::OpenAi => "openai",
        ProviderKind::Scripted => "scripted",
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Join(e.to_string()))
}

impl Agent {
    /// Run from `messages` (a new task, or a resumed conversation) until
    /// done, traced as one `invoke_agent` span (see [`crate::telemetry`]).
    pub async fn run(
        &self,
        messages: &mut Vec<Message>,
        budget: Budget,
        on: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<RunEnd, AgentError> {
        let info = self.provider.describe();
        let trace = RunTrace::start(
            self.gate.session_id(),
            provider_name(info.kind),
            &info.model,
            &info.base_url,
            self.gate.start_entry(),
        );
        let end = self.run_traced(messages, budget, on, &trace).await;
        let (name, error_type) = match &end {
            Ok(RunEnd::Answered(_)) => ("answered", None),
            Ok(RunEnd::Stopped(_)) => ("stopped", None),
            Ok(RunEnd::BudgetExhausted(_)) => ("budget_exhausted", Some("budget_exhausted")),
            Ok(RunEnd::Paused(_)) => ("paused", Some("provider_unavailable")),
            Ok(RunEnd::ModelDenied(_)) => ("model_denied", Some("denied_by_policy")),
            Err(AgentError::Gate(_)) => ("audit_failure", Some("audit_log")),
            Err(AgentError::Join(_)) => ("internal_error", Some("_OTHER")),
        };
        trace.finish(name, error_type);
        end
    }

    async fn run_traced(
        &self,
        messages: &mut Vec<Message>,
        budget: Budget,
        on: &mut (dyn FnMut(Progress<'_>) + Send),
        trace: &RunTrace,
    ) -> Result<RunEnd, AgentError> {
        let started = Instant::now();
        let info = self.provider.describe();
        let mut tokens = 0u64;
        for step in 1..=budget.max_steps {
            if started.elapsed() > budget.max_time {
                return Ok(RunEnd::BudgetExhausted(format!(
                    "time budget of {:?} reached",
                    budget.max_time
                )));
            }
            if tokens > budget.max_tokens {
                return Ok(RunEnd::BudgetExhausted(format!(
                    "token budget of {} reached",
                    budget.max_tokens
                )));
            }
            on(Progress::Step(step));
            // Built-in tools plus the MCP tools policy offers (blocking: may start servers).
            let toolbox = self.tools.clone();
            let tools = blocking(move || toolbox.specs()).await??;
            let req = ChatRequest {
                model: info.model.clone(),
                system: self.system.clone(),
                messages: messages.clone(),
                tools,
                max_tokens: self.max_tokens_per_turn,
            };
            let conversation = serde_json::to_vec(&req).unwrap_or_default();
            let mut ar = ActionRequest::new(
                Action::ModelRequest,
                Resource::Model {
                    provider: provider_name(info.kind).into(),
                    name: info.model.clone(),
                },
            );
            ar.payloads.push(PayloadInput {
                role: "conversation".into(),
                media: "application/json".into(),
                body: conversation,
                disclosure: Disclosure::CommitmentOnly,
            });
            ar.data = Some(serde_json::json!({
                "step": step,
                "provider": provider_name(info.kind),
                "endpoint": info.base_url,
                "scripted": info.kind == ProviderKind::Scripted,
            }));
            let chat = trace.chat(&info.model, self.max_tokens_per_turn);
            let gate = self.gate.clone();
            let permit = match blocking(move || gate.authorize(ar)).await?? {
                Authorization::Permitted(p) => p,
                Authorization::Denied(d) => {
                    let _active = chat.context().attach();
                    crate::telemetry::spans::note_denied(d.seq);
                    let detail = serde_json::json!({
                        "reason": d.reason, "policies": d.policies,
                        "layer": d.layer, "audit_entry": d.seq,
                    });
                    on(Progress::Decision(progress::Decision::Denied {
                        subject: "model.request",
                        detail: &detail,
                    }));
                    return Ok(RunEnd::ModelDenied(d.reason));
                }
            };
            chat.record_intent(permit.intent_seq(), &permit.intent_leaf());
            let mut show = |ev: StreamEvent| on_stream(ev, &mut *on);
            let reply = self.provider.chat(&req, &mut show).await;
            let gate = self.gate.clone();
            let resp = match reply {
                Err(e) => {
                    let mut o = Outcome::status(Status::Error);
                    o.detail = Some(e.to_string());
                    let msg = e.to_string();
                    chat.fail(e.kind());
                    let receipt = blocking(move || {
                        gate.complete(
                            permit,
                            o,
                            Vec::new(),
                            Some(serde_json::json!({"error": e.kind()})),
                        )
                    })
                    .await??;
                    if let Some(r) = &receipt {
                        chat.record_result(r);
                    }
                    chat.end();
                    return Ok(RunEnd::Paused(msg));
                }
                Ok(r) => r,
            };
            tokens += resp.usage.input_tokens + resp.usage.output_tokens;
            let mut o = Outcome::status(Status::Ok);
            o.tokens_in = Some(resp.usage.input_tokens);
            o.tokens_out = Some(resp.usage.output_tokens);
            let payloads = vec![
                body("request", &resp.request_body),
                body("response", &resp.response_body),
                PayloadInput {
                    role: "assistant".into(),
                    media: "application/json".into(),
                    body: serde_json::to_vec(&resp.content).unwrap_or_default(),
                    disclosure: Disclosure::CommitmentOnly,
                },
            ];
            let data =
                serde_json::json!({ "model": resp.model, "stop": format!("{:?}", resp.stop) });
            trace.response(
                &chat,
                &resp.model,
                finish_reason(&resp.stop),
                (resp.usage.input_tokens, resp.usage.output_tokens),
            );
            let receipt =
                blocking(move || gate.complete(permit, o, payloads, Some(data))).await??;
            if let Some(r) = &receipt {
                chat.record_result(r);
            }
            chat.end();

            messages.push(Message::assistant(resp.content.clone()));
            let mut results = Vec::new();
            let mut last_text = String::new();
            for c in &resp.content {
                match c {
                    Content::Text(t) => {
                        on(Progress::Text(t));
                        last_text = t.clone();
                    }
                    Content::ToolUse { id, name, input } => {
                        on(Progress::ToolCall { name, input });
                        let (tools, id2, name2, input2) =
                            (self.tools.clone(), id.clone(), name.clone(), input.clone());
                        // final_answer is not an effect (no entry): the run's end is its record.
                        let span = (name.as_str() != crate::tools::specs::FINAL_ANSWER)
                            .then(|| trace.tool(name, id));
                        let cx = span.as_ref().map(|s| s.context());
                        let called = blocking(move || {
                            // The tool records its audit entries on the active span.
                            let _active = cx.map(|c| c.attach());
                            tools.call(&id2, &name2, &input2)
                        })
                        .await;
                        if let Some(s) = span {
                            s.end();
                        }
                        match called?? {
                            ToolOutcome::Final(answer) => return Ok(RunEnd::Answered(answer)),
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
                    Content::ToolResult { .. } => {}
                }
            }
            if results.is_empty() {
                return Ok(RunEnd::Stopped(last_text));
            }
            messages.push(Message {
                role: Role::User,
                content: results,
            });
        }
        Ok(RunEnd::BudgetExhausted(format!(
            "step budget of {} reached",
            budget.max_steps
        )))
    }
}

/// `gen_ai.response.finish_reasons` value of a stop reason.
fn finish_reason(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn => "stop",
        StopReason::ToolUse => "tool_call",
        StopReason::MaxTokens => "length",
        StopReason::Other(s) => s,
    }
}

/// Streaming deltas are not shown one by one: the terminal view prints whole
/// texts and tool calls (progress without a flood). Retries are shown.
fn on_stream(ev: StreamEvent, on: &mut (dyn FnMut(Progress<'_>) + Send)) {
    if let StreamEvent::Retrying {
        attempt,
        wait,
        reason,
    } = ev
    {
        on(Progress::Retry {
            attempt,
            wait,
            reason: &reason,
        });
    }
}

fn body(role: &str, b: &[u8]) -> PayloadInput {
    PayloadInput {
        role: role.into(),
        media: "application/json".into(),
        body: b.to_vec(),
        disclosure: Disclosure::CommitmentOnly,
    }
}
