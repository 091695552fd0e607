//! The agent loop: ask the model (a gated, logged `model.request`), run the
//! tools it calls (each gated and logged), feed results back, until it gives
//! a final answer or a step/token/time budget is reached.
//!
//! Every reply's stop reason is acted on (see [`StopAction`] and docs/providers.md); every
//! tool call carries a stele-assigned id (`call-<model.request index>-<n>`), recorded in the
//! log and used to pair results with calls on resume, whatever ids the provider sent.

mod calls;
pub mod progress;
mod turn;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gate::{Gate, GateError};
use crate::payloads::LargeValues;
use crate::provider::{Content, Message, ModelProvider, ProviderKind, Role, StopReason};
use crate::telemetry::spans::RunTrace;
use crate::tools::ToolBox;
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
    /// The model or its provider declined to answer: a `refusal` or `content_filter` stop.
    Refused {
        /// The stop reason (`refusal`, `content_filter`).
        reason: String,
        /// What the model said, if anything.
        text: String,
    },
}

impl RunEnd {
    /// A stable name for `--json` events and traces.
    pub fn name(&self) -> &'static str {
        match self {
            RunEnd::Answered(_) => "answered",
            RunEnd::Stopped(_) => "stopped",
            RunEnd::BudgetExhausted(_) => "budget_exhausted",
            RunEnd::Paused(_) => "paused",
            RunEnd::ModelDenied(_) => "model_denied",
            RunEnd::Refused { .. } => "refused",
        }
    }

    /// The text that goes with it (answer, reason).
    pub fn detail(&self) -> String {
        match self {
            RunEnd::Answered(t)
            | RunEnd::Stopped(t)
            | RunEnd::BudgetExhausted(t)
            | RunEnd::Paused(t)
            | RunEnd::ModelDenied(t) => t.clone(),
            RunEnd::Refused { reason, text } if text.is_empty() => {
                format!("the model stopped with {reason} and gave no answer")
            }
            RunEnd::Refused { reason, text } => format!("the model stopped with {reason}: {text}"),
        }
    }
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
    /// The most a turn may be given after a reply was cut by the limit.
    pub max_tokens_limit: u32,
    /// Large values already in the log (stored once, referred to after).
    pub large: Arc<Mutex<LargeValues>>,
    /// Asked from outside (a server shutting down) to pause at the next safe point.
    pub pause: PauseSignal,
}

/// A request, from outside the run, to pause at the next safe point: after a
/// step's tool results are recorded and before the next model request. The run
/// then ends [`RunEnd::Paused`] with the reason given; nothing is left half-recorded
/// and the session resumes from the log.
#[derive(Debug, Clone, Default)]
pub struct PauseSignal(Arc<Mutex<Option<String>>>);

impl PauseSignal {
    /// Ask the run to pause, saying why (the first reason given stays).
    pub fn request(&self, why: &str) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.is_none() {
            *g = Some(why.to_string());
        }
    }

    /// Why a pause was asked for, if it was.
    pub fn requested(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The system prompt used unless configured otherwise.
pub const DEFAULT_SYSTEM: &str = "You are stele, a careful assistant working in a sandboxed workspace for a regulated \
organisation. Use the tools to read and write workspace files and to run programs in the sandbox. The sandbox's \
toolbox (the same in every backend): python3 with pypdf, openpyxl, python-docx, reportlab, pandas and Pillow; \
pdftotext/pdftoppm/pdfinfo (poppler); tesseract OCR (English) for scanned pages; node and npm; bash, coreutils, file, jq, \
sqlite3; C.UTF-8 locale. Anything else installs into the workspace (python3 -m venv .venv, npm install into node_modules/) \
only if policy allows the package registry. Every action is checked against policy and recorded in an audit log; if a tool result says an action was \
denied by policy, do not try to work around it — explain it in your answer. When the task is done, call \
final_answer with a short summary.";

pub(crate) fn provider_name(k: ProviderKind) -> &'static str {
    match k {
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::OpenAi => "openai",
        ProviderKind::Scripted => "scripted",
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Join(e.to_string()))
}

/// What the loop does with a reply, by its stop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAction {
    /// Run its tool calls (if none, the run stops with the model's text).
    RunCalls,
    /// The reply was cut by the output limit: run the calls whose input is complete, refuse
    /// the cut one, raise the limit, and ask the model to go on.
    Continue,
    /// The provider paused the turn: send the conversation again for the model to go on.
    Resume,
    /// The model or provider declined: end the run ([`RunEnd::Refused`]), running nothing.
    Refuse,
}

/// The action for a stop reason.
pub fn stop_action(stop: &StopReason) -> StopAction {
    match stop {
        StopReason::EndTurn | StopReason::ToolUse | StopReason::StopSequence => {
            StopAction::RunCalls
        }
        StopReason::MaxTokens => StopAction::Continue,
        StopReason::PauseTurn => StopAction::Resume,
        StopReason::Refusal | StopReason::ContentFilter => StopAction::Refuse,
        // An unknown reason: what the reply holds decides (calls run, text ends the run).
        StopReason::Other(_) => StopAction::RunCalls,
    }
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
            Ok(e @ RunEnd::Answered(_)) | Ok(e @ RunEnd::Stopped(_)) => (e.name(), None),
            Ok(e @ RunEnd::BudgetExhausted(_)) => (e.name(), Some("budget_exhausted")),
            Ok(e @ RunEnd::Paused(_)) => (e.name(), Some("provider_unavailable")),
            Ok(e @ RunEnd::ModelDenied(_)) => (e.name(), Some("denied_by_policy")),
            Ok(e @ RunEnd::Refused { .. }) => (e.name(), Some("model_refused")),
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
        let mut tokens = 0u64;
        let mut max_tokens = self.max_tokens_per_turn;
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
            let resp = match self.ask(step, messages, max_tokens, on, trace).await? {
                turn::Asked::Reply(r) => r,
                turn::Asked::End(end) => return Ok(end),
            };
            tokens += resp.usage.input_tokens + resp.usage.output_tokens;
            let action = stop_action(&resp.stop);
            let text: String = resp
                .content
                .iter()
                .filter_map(|c| match c {
                    Content::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            if action != StopAction::RunCalls {
                on(Progress::Stop {
                    reason: resp.stop.as_str(),
                    action: match action {
                        StopAction::Continue => "continue",
                        StopAction::Resume => "resume",
                        StopAction::Refuse => "end",
                        StopAction::RunCalls => "run_calls",
                    },
                    max_tokens,
                });
            }
            messages.push(Message::assistant(resp.content.clone()));
            match action {
                StopAction::Refuse => {
                    for c in &resp.content {
                        if let Content::Text(t) = c {
                            on(Progress::Text(t));
                        }
                    }
                    return Ok(RunEnd::Refused {
                        reason: resp.stop.as_str().to_string(),
                        text,
                    });
                }
                StopAction::Resume => {
                    for c in &resp.content {
                        if let Content::Text(t) = c {
                            on(Progress::Text(t));
                        }
                    }
                    continue;
                }
                StopAction::RunCalls | StopAction::Continue => {}
            }
            let cut = action == StopAction::Continue;
            let next_max = if cut {
                max_tokens
                    .saturating_mul(2)
                    .min(self.max_tokens_limit)
                    .max(max_tokens)
            } else {
                max_tokens
            };
            let outcome = self
                .run_calls(
                    &resp.content,
                    cut.then_some((max_tokens, next_max)),
                    on,
                    trace,
                )
                .await?;
            let limit_was = std::mem::replace(&mut max_tokens, next_max);
            let mut results = match outcome {
                calls::Ran::Final(answer) => return Ok(RunEnd::Answered(answer)),
                calls::Ran::Results(r) => r,
            };
            if cut && results.is_empty() {
                // A text answer cut short: ask for the rest.
                results.push(Content::Text(format!(
                    "[stele] Your reply was cut off at the output limit ({limit_was} tokens) and is incomplete. \
                     Continue exactly where it stopped; the next reply may use up to {next_max} tokens."
                )));
            }
            if results.is_empty() {
                return Ok(RunEnd::Stopped(text));
            }
            messages.push(Message {
                role: Role::User,
                content: results,
            });
            // A safe point: this step's results are in the log, the next request is not.
            if let Some(why) = self.pause.requested() {
                return Ok(RunEnd::Paused(why));
            }
        }
        Ok(RunEnd::BudgetExhausted(format!(
            "step budget of {} reached",
            budget.max_steps
        )))
    }
}

#[cfg(test)]
mod pause_tests {
    use super::PauseSignal;

    #[test]
    fn a_pause_is_seen_by_every_clone_and_keeps_its_first_reason() {
        let p = PauseSignal::default();
        let seen = p.clone();
        assert_eq!(seen.requested(), None);
        p.request("server shutdown");
        p.request("stopped by alice");
        assert_eq!(seen.requested().as_deref(), Some("server shutdown"));
    }
}
