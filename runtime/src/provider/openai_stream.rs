//! OpenAI-compatible Chat Completions, streamed: chunks of deltas assembled into a reply.
//! Tool calls arrive as fragments keyed by `index` (servers that leave the index out continue
//! the last call unless a fragment names a new id or function).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::error::ProviderError;
use super::http::{Assembled, Step, StreamAssembler};
use super::openai::{arguments, embedded_error, malformed, stop_of, usage_of};
use super::sse::SseEvent;
use super::types::{Content, Usage};
use super::StreamEvent;

/// The block key of the text in [`Step::Bulk`] (calls are keyed by their index).
const TEXT_KEY: u64 = u64::MAX;

#[derive(Default)]
struct Call {
    wire_id: Option<String>,
    name: String,
    args: String,
    announced: bool,
}

/// Assembles a streamed reply.
#[derive(Default)]
pub(super) struct Assembler {
    text: String,
    calls: BTreeMap<u64, Call>,
    usage: Usage,
    model: String,
    finish: Option<String>,
    saw_content: bool,
    started: bool,
}

impl Assembler {
    /// One tool-call delta; returns its call's index and whether it carried progress.
    fn on_tool_delta(
        &mut self,
        d: &Value,
        out: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> (u64, bool) {
        let f = d.get("function").unwrap_or(&Value::Null);
        let starts = d.get("id").is_some() || f.get("name").is_some();
        // Without an index, a delta naming an id or a function starts the next call, and one
        // that carries only arguments continues the last.
        let index = d.get("index").and_then(Value::as_u64).unwrap_or_else(|| {
            let last = self.calls.keys().next_back().copied();
            match (starts, last) {
                (false, Some(l)) => l,
                (_, Some(l)) => l + 1,
                (_, None) => 0,
            }
        });
        let call = self.calls.entry(index).or_default();
        if let Some(id) = d
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty())
        {
            call.wire_id = Some(id.to_string());
        }
        if let Some(name) = f.get("name").and_then(Value::as_str) {
            call.name.push_str(name);
        }
        let label = call.wire_id.clone().unwrap_or_else(|| format!("#{index}"));
        let mut progress = false;
        if !call.announced && !call.name.is_empty() {
            call.announced = true;
            self.saw_content = true;
            progress = true;
            out(StreamEvent::ToolUseStart {
                id: label.clone(),
                name: call.name.clone(),
            });
        }
        if let Some(piece) = f.get("arguments").and_then(Value::as_str) {
            call.args.push_str(piece);
            if !piece.is_empty() {
                progress = true;
                out(StreamEvent::ToolInputDelta {
                    id: label,
                    partial_json: piece.to_string(),
                });
            }
        }
        (index, progress)
    }
}

impl StreamAssembler for Assembler {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Step, ProviderError> {
        if ev.data.trim() == "[DONE]" {
            return Ok(Step::Done);
        }
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| malformed(format!("stream chunk is not JSON: {e}")))?;
        if let Some(e) = embedded_error(&v) {
            return Err(e);
        }
        let first = !self.started;
        self.started = true;
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            self.model = m.to_string();
        }
        let mut step = if first { Step::Progress } else { Step::Idle };
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage_of(u);
            step = Step::Progress;
        }
        for choice in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                if !t.is_empty() {
                    self.text.push_str(t);
                    self.saw_content = true;
                    out(StreamEvent::TextDelta(t.to_string()));
                    step = Step::Bulk(TEXT_KEY);
                }
            }
            for d in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (index, progress) = self.on_tool_delta(d, out);
                if progress && step != Step::Bulk(TEXT_KEY) {
                    step = Step::Bulk(index);
                }
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(r.to_string());
                step = Step::Progress;
            }
        }
        Ok(step)
    }

    fn saw_content(&self) -> bool {
        self.saw_content
    }

    fn stop_seen(&self) -> bool {
        self.finish.is_some()
    }

    fn finish(self: Box<Self>) -> Result<Assembled, ProviderError> {
        let mut content = Vec::new();
        let mut positions = HashMap::new();
        if !self.text.is_empty() {
            positions.insert(TEXT_KEY, 0);
            content.push(Content::Text(self.text));
        }
        let cut = self.finish.as_deref() == Some("length");
        let last = self.calls.keys().next_back().copied();
        for (index, call) in self.calls {
            if call.name.is_empty() {
                return Err(malformed(format!(
                    "tool call {} has no function name",
                    call.wire_id.unwrap_or_else(|| format!("#{index}"))
                )));
            }
            positions.insert(index, content.len());
            let truncated_empty = cut && Some(index) == last && call.args.trim().is_empty();
            content.push(Content::ToolUse {
                id: String::new(),
                wire_id: call.wire_id,
                name: call.name,
                input: arguments(&call.args, truncated_empty),
            });
        }
        let stop = stop_of(self.finish.as_deref(), &content);
        Ok(Assembled {
            content,
            stop,
            usage: self.usage,
            model: self.model,
            positions,
        })
    }
}
