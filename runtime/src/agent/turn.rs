//! One model turn: the gated `model.request` (its conversation stored, large values once),
//! the provider call with its retries, and the `model.response` entry (bodies, stop reason,
//! every failed attempt), with stele's ids given to the reply's tool calls.

use std::time::Duration;

use serde_json::{json, Value};
use stele_audit::{Outcome, Status};
use stele_policy::{Action, Resource};

use super::{blocking, progress, provider_name, Agent, AgentError, Progress, RunEnd};
use crate::gate::{ActionRequest, Authorization, Bodies};
use crate::payloads::Stored;
use crate::provider::{
    assign_call_ids, block_size, model_endpoint, ChatRequest, ChatResponse, Content, Message,
    StopReason, StreamEvent, LARGE_BLOCK,
};
use crate::telemetry::spans::RunTrace;

/// What asking the model gave.
pub(super) enum Asked {
    /// A reply, recorded, its tool calls named.
    Reply(ChatResponse),
    /// The run ends here (the request was denied, or the provider failed for good).
    End(RunEnd),
}

/// Failed attempts kept in full in the log entry; beyond them, the first and last halves and
/// a count (a leaf is at most 64 KiB).
const FAILURES_KEPT: usize = 40;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The failures list for the log, capped.
fn failures_record(all: &[Value]) -> Value {
    if all.len() <= FAILURES_KEPT {
        return Value::Array(all.to_vec());
    }
    let half = FAILURES_KEPT / 2;
    let mut v: Vec<Value> = all[..half].to_vec();
    v.push(json!({"omitted": all.len() - FAILURES_KEPT}));
    v.extend_from_slice(&all[all.len() - half..]);
    Value::Array(v)
}

/// Add `stored` to bodies: its payload, and its references not already listed.
fn add(bodies: &mut Bodies, stored: Stored) {
    bodies.payloads.extend(stored.payload);
    for r in stored.refers {
        let own = bodies.sealed.iter().any(|s| s.reference.commit == r.commit);
        let listed = bodies.shared.iter().any(|s| s.commit == r.commit);
        if !own && !listed {
            bodies.shared.push(r);
        }
    }
}

impl Agent {
    /// Ask the model for the next reply to `messages`, allowing `max_tokens` output tokens.
    pub(super) async fn ask(
        &self,
        step: u32,
        messages: &[Message],
        max_tokens: u32,
        on: &mut (dyn FnMut(Progress<'_>) + Send),
        trace: &RunTrace,
    ) -> Result<Asked, AgentError> {
        let info = self.provider.describe();
        // Built-in tools plus the MCP tools policy offers (blocking: may start servers).
        let toolbox = self.tools.clone();
        let tools = blocking(move || toolbox.specs()).await??;
        let req = ChatRequest {
            model: info.model.clone(),
            system: self.system.clone(),
            messages: messages.to_vec(),
            tools,
            max_tokens,
        };
        let endpoint = match model_endpoint(&info) {
            Ok(e) => e,
            Err(e) => return Ok(Asked::End(RunEnd::ModelDenied(e.to_string()))),
        };
        let resource = Resource::Model {
            provider: provider_name(info.kind).into(),
            name: info.model.clone(),
            endpoint: endpoint.clone(),
        };
        let mut ar = ActionRequest::new(Action::ModelRequest, resource.clone());
        let conversation = serde_json::to_vec(&req).unwrap_or_default();
        let stored = self
            .large_values()
            .store("conversation", "application/json", conversation);
        ar.payloads.extend(stored.payload);
        ar.shared = stored.refers;
        ar.data = Some(json!({
            "step": step,
            "provider": provider_name(info.kind),
            "endpoint": info.base_url,
            "max_tokens": max_tokens,
            "scripted": info.kind == crate::provider::ProviderKind::Scripted,
        }));
        let chat = trace.chat(&info.model, max_tokens);
        let gate = self.gate.clone();
        let permit = match blocking(move || gate.authorize(ar)).await?? {
            Authorization::Permitted(p) => p,
            Authorization::Denied(d) => {
                let _active = chat.context().attach();
                crate::telemetry::spans::note_denied(d.seq);
                let detail = json!({
                    "reason": d.reason, "policies": d.policies,
                    "layer": d.layer, "audit_entry": d.seq,
                });
                on(Progress::Decision(progress::Decision::Denied {
                    subject: "model.request",
                    detail: &detail,
                }));
                return Ok(Asked::End(RunEnd::ModelDenied(format!(
                    "{}. {}",
                    d.reason,
                    what_to_allow(&resource, &endpoint)
                ))));
            }
        };
        chat.record_intent(permit.intent_seq(), &permit.intent_leaf());
        let mut failures: Vec<Value> = Vec::new();
        let mut show = |ev: StreamEvent| {
            if let StreamEvent::Retrying {
                attempt,
                wait,
                reason,
                kind,
                elapsed,
                patience,
            } = ev
            {
                failures.push(json!({
                    "attempt": attempt, "error": kind,
                    "detail": reason.chars().take(200).collect::<String>(),
                    "after_ms": ms(elapsed), "wait_ms": ms(wait),
                }));
                on(Progress::Retry {
                    attempt,
                    wait,
                    reason: &reason,
                    elapsed,
                    patience,
                });
            }
        };
        let reply = self.provider.chat(&req, &mut show).await;
        let gate = self.gate.clone();
        let attempts = failures.len() + 1;
        let mut resp = match reply {
            Err(e) => {
                let mut o = Outcome::status(Status::Error);
                o.detail = Some(e.to_string());
                let msg = if attempts > 1 {
                    let waited = failures
                        .last()
                        .and_then(|f| f["after_ms"].as_u64())
                        .unwrap_or(0);
                    format!("{e} (after {attempts} attempts over {}s)", waited / 1000)
                } else {
                    e.to_string()
                };
                chat.fail(e.kind());
                let data = json!({
                    "error": e.kind(),
                    "attempts": attempts,
                    "failures": failures_record(&failures),
                });
                let receipt =
                    blocking(move || gate.complete(permit, o, Vec::new(), Some(data))).await??;
                if let Some(r) = &receipt {
                    chat.record_result(r);
                }
                chat.end();
                return Ok(Asked::End(RunEnd::Paused(msg)));
            }
            Ok(r) => r,
        };
        assign_call_ids(&mut resp.content, &format!("call-{}", permit.intent_seq()));
        let mut o = Outcome::status(Status::Ok);
        o.tokens_in = Some(resp.usage.input_tokens);
        o.tokens_out = Some(resp.usage.output_tokens);
        let bodies = self.response_bodies(&resp)?;
        let call_ids: Vec<&str> = resp.tool_uses().iter().map(|(id, _, _)| *id).collect();
        let mut data = json!({
            "model": resp.model,
            "stop": resp.stop.as_str(),
            "attempts": resp.attempts,
            "max_tokens": max_tokens,
            "stream_end": resp.stream_end,
            "call_ids": call_ids,
        });
        if !failures.is_empty() {
            data["failures"] = failures_record(&failures);
        }
        if !resp.elided.is_empty() {
            data["elided"] = json!(resp.elided);
        }
        trace.response(
            &chat,
            &resp.model,
            finish_reason(&resp.stop),
            (resp.usage.input_tokens, resp.usage.output_tokens),
        );
        let receipt = blocking(move || gate.complete_with(permit, o, bodies, Some(data))).await??;
        if let Some(r) = &receipt {
            chat.record_result(r);
        }
        chat.end();
        Ok(Asked::Reply(resp))
    }

    /// The bodies of a `model.response` entry: each large value of the reply sealed once, and
    /// the request, response and assistant bodies stored with them referred to.
    fn response_bodies(&self, resp: &ChatResponse) -> Result<Bodies, AgentError> {
        let mut large = self.large_values();
        let mut bodies = Bodies::default();
        for c in &resp.content {
            if block_size(c) < LARGE_BLOCK {
                continue;
            }
            let (role, media, body) = match c {
                Content::ToolUse { input, .. } => (
                    "tool_input",
                    "application/json",
                    input.to_string().into_bytes(),
                ),
                Content::Text(t) => ("text", "text/plain", t.clone().into_bytes()),
                Content::ToolResult { .. } => continue,
            };
            let sealed = large
                .seal(role, media, body)
                .map_err(|e| AgentError::Gate(e.into()))?;
            bodies.sealed.push(sealed);
        }
        let stored = large.store("request", "application/json", resp.request_body.clone());
        add(&mut bodies, stored);
        let stored = large.store("response", "application/json", resp.response_body.clone());
        add(&mut bodies, stored);
        let assistant = serde_json::to_vec(&resp.content).unwrap_or_default();
        add(
            &mut bodies,
            large.store("assistant", "application/json", assistant),
        );
        Ok(bodies)
    }

    /// The session's large values (a poisoned lock still holds valid data: it is only added to).
    pub(super) fn large_values(&self) -> std::sync::MutexGuard<'_, crate::payloads::LargeValues> {
        self.large
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The rule that would allow a denied model request, for the person reading why it stopped.
fn what_to_allow(resource: &Resource, endpoint: &stele_policy::ModelEndpoint) -> String {
    format!(
        "To allow this model, add to the policy bundle (docs/policy-guide.md): \
         permit (principal, action == Action::\"model.request\", resource == Model::\"{}\") \
         when {{ resource.scheme == \"{}\" && resource.host == \"{}\" && resource.port == {} }};",
        resource.entity_id(),
        endpoint.scheme(),
        endpoint.host(),
        endpoint.port()
    )
}

/// `gen_ai.response.finish_reasons` value of a stop reason.
fn finish_reason(stop: &StopReason) -> &str {
    match stop {
        StopReason::EndTurn => "stop",
        StopReason::ToolUse => "tool_call",
        StopReason::MaxTokens => "length",
        StopReason::ContentFilter => "content_filter",
        other => other.as_str(),
    }
}
