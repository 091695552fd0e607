//! GenAI spans (OpenTelemetry semantic conventions for generative AI):
//!
//! - `invoke_agent stele` (INTERNAL): one per agent run in a session;
//! - `chat {model}` (CLIENT): one per model request, a child of the run;
//! - `execute_tool {tool}` (INTERNAL): one per tool call, a child of the run.
//!
//! Each carries `gen_ai.conversation.id` = the session id and the audit
//! entries it corresponds to: `stele.audit.intent_index`/`_leaf` (the
//! intent: `model.request`, `tool.intent`), `stele.audit.result_index`/`_leaf`
//! (its result), `stele.audit.decision_index` (a denial), and on
//! `invoke_agent` `stele.audit.start_index`/`_leaf` (`session.start`, or the
//! `policy.load` of a resumption). Leaf hashes are base64 as in the log's
//! `refs.intent_leaf`. When no exporter is installed, these are no-ops.

use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use stele_audit::leaf::hash_b64;
use stele_audit::merkle::Hash;
use stele_audit::Receipt;

const TRACER: &str = "stele";

/// `gen_ai.agent.name` of stele's agent.
pub const AGENT_NAME: &str = "stele";

/// A span in a context, so that children can be parented to it.
#[derive(Debug, Clone)]
pub struct GenAiSpan {
    cx: Context,
}

fn start(name: String, kind: SpanKind, parent: &Context, attrs: Vec<KeyValue>) -> GenAiSpan {
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attrs)
        .start_with_context(&tracer, parent);
    GenAiSpan {
        cx: parent.with_span(span),
    }
}

/// `server.address` and `server.port` of a provider's base URL.
fn server(base_url: &str) -> Vec<KeyValue> {
    let Ok(u) = reqwest::Url::parse(base_url) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    if let Some(h) = u.host_str() {
        v.push(KeyValue::new("server.address", h.to_string()));
    }
    if let Some(p) = u.port_or_known_default() {
        v.push(KeyValue::new("server.port", i64::from(p)));
    }
    v
}

impl GenAiSpan {
    /// The span of one agent run in session `conversation`, whose opening
    /// entry (`session.start` or the resumption's `policy.load`) is `start`.
    pub fn invoke_agent(
        conversation: &str,
        provider: &str,
        model: &str,
        start: (u64, Hash),
    ) -> Self {
        self::start(
            format!("invoke_agent {AGENT_NAME}"),
            SpanKind::Internal,
            &Context::new(),
            vec![
                KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                KeyValue::new("gen_ai.agent.name", AGENT_NAME),
                KeyValue::new("gen_ai.provider.name", provider.to_string()),
                KeyValue::new("gen_ai.request.model", model.to_string()),
                KeyValue::new("gen_ai.conversation.id", conversation.to_string()),
                KeyValue::new("stele.audit.start_index", start.0 as i64),
                KeyValue::new("stele.audit.start_leaf", hash_b64(&start.1)),
            ],
        )
    }

    /// A model request made during this run.
    pub fn chat(
        &self,
        conversation: &str,
        provider: &str,
        model: &str,
        max_tokens: u32,
        base_url: &str,
    ) -> Self {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider.to_string()),
            KeyValue::new("gen_ai.request.model", model.to_string()),
            KeyValue::new("gen_ai.request.max_tokens", i64::from(max_tokens)),
            KeyValue::new("gen_ai.conversation.id", conversation.to_string()),
        ];
        attrs.extend(server(base_url));
        start(format!("chat {model}"), SpanKind::Client, &self.cx, attrs)
    }

    /// A tool call made during this run.
    pub fn execute_tool(&self, conversation: &str, tool: &str, call_id: &str) -> Self {
        start(
            format!("execute_tool {tool}"),
            SpanKind::Internal,
            &self.cx,
            vec![
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", tool.to_string()),
                KeyValue::new("gen_ai.tool.call.id", call_id.to_string()),
                KeyValue::new("gen_ai.tool.type", "function"),
                KeyValue::new("gen_ai.conversation.id", conversation.to_string()),
            ],
        )
    }

    /// The context holding this span (attach it to make it the active span).
    pub fn context(&self) -> Context {
        self.cx.clone()
    }

    /// Set attributes.
    pub fn set(&self, attrs: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attrs);
    }

    /// The intent entry this span's action was recorded under.
    pub fn record_intent(&self, seq: u64, leaf: &Hash) {
        self.set(intent_attrs(seq, leaf));
    }

    /// The result entry of this span's action.
    pub fn record_result(&self, r: &Receipt) {
        self.set(result_attrs(r));
    }

    /// The operation failed with `error_type` (a low-cardinality class, no payload).
    pub fn fail(&self, error_type: &str) {
        fail_span(&self.cx.span(), error_type);
    }

    /// End the span now.
    pub fn end(self) {
        self.cx.span().end();
    }
}

fn intent_attrs(seq: u64, leaf: &Hash) -> [KeyValue; 2] {
    [
        KeyValue::new("stele.audit.intent_index", seq as i64),
        KeyValue::new("stele.audit.intent_leaf", hash_b64(leaf)),
    ]
}

fn result_attrs(r: &Receipt) -> [KeyValue; 2] {
    [
        KeyValue::new("stele.audit.result_index", r.seq as i64),
        KeyValue::new("stele.audit.result_leaf", hash_b64(&r.leaf_hash)),
    ]
}

fn fail_span(span: &opentelemetry::trace::SpanRef<'_>, error_type: &str) {
    span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
    span.set_status(Status::error(error_type.to_string()));
}

/// On the active span (a tool call's, attached by the agent loop): the intent entry.
pub fn note_intent(seq: u64, leaf: &Hash) {
    let attrs = intent_attrs(seq, leaf);
    Context::map_current(|cx| cx.span().set_attributes(attrs));
}

/// On the active span: the result entry.
pub fn note_result(r: &Receipt) {
    let attrs = result_attrs(r);
    Context::map_current(|cx| cx.span().set_attributes(attrs));
}

/// On the active span: policy refused the action, recorded at `seq`.
pub fn note_denied(seq: u64) {
    Context::map_current(|cx| {
        let span = cx.span();
        span.set_attribute(KeyValue::new("stele.audit.decision_index", seq as i64));
        fail_span(&span, "denied_by_policy");
    });
}

/// On the active span: the operation failed with `error_type`.
pub fn note_failure(error_type: &str) {
    Context::map_current(|cx| fail_span(&cx.span(), error_type));
}

/// On the active span: the action's recorded outcome (an `error.type` unless ok).
pub fn note_outcome(status: stele_audit::Status) {
    let error_type = match status {
        stele_audit::Status::Ok => return,
        stele_audit::Status::Error => "tool_error",
        stele_audit::Status::Denied => "denied_by_policy",
        stele_audit::Status::Interrupted => "interrupted",
        stele_audit::Status::Timeout => "timeout",
    };
    note_failure(error_type);
}

/// The spans of one agent run: the `invoke_agent` span and what its
/// children need, plus the run's token totals.
#[derive(Debug)]
pub struct RunTrace {
    span: GenAiSpan,
    conversation: String,
    provider: String,
    base_url: String,
    input_tokens: std::sync::atomic::AtomicU64,
    output_tokens: std::sync::atomic::AtomicU64,
}

impl RunTrace {
    /// Start the `invoke_agent` span of a run in session `conversation`.
    pub fn start(
        conversation: &str,
        provider: &str,
        model: &str,
        base_url: &str,
        start: (u64, Hash),
    ) -> Self {
        Self {
            span: GenAiSpan::invoke_agent(conversation, provider, model, start),
            conversation: conversation.to_string(),
            provider: provider.to_string(),
            base_url: base_url.to_string(),
            input_tokens: 0.into(),
            output_tokens: 0.into(),
        }
    }

    /// A `chat` span for one model request.
    pub fn chat(&self, model: &str, max_tokens: u32) -> GenAiSpan {
        self.span.chat(
            &self.conversation,
            &self.provider,
            model,
            max_tokens,
            &self.base_url,
        )
    }

    /// An `execute_tool` span for one tool call.
    pub fn tool(&self, tool: &str, call_id: &str) -> GenAiSpan {
        self.span.execute_tool(&self.conversation, tool, call_id)
    }

    /// Record a model response on its `chat` span and in the run's totals.
    pub fn response(&self, chat: &GenAiSpan, model: &str, finish: &str, tokens: (u64, u64)) {
        use std::sync::atomic::Ordering::Relaxed;
        self.input_tokens.fetch_add(tokens.0, Relaxed);
        self.output_tokens.fetch_add(tokens.1, Relaxed);
        chat.set([
            KeyValue::new("gen_ai.response.model", model.to_string()),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(opentelemetry::Array::String(vec![finish
                    .to_string()
                    .into()])),
            ),
            KeyValue::new("gen_ai.usage.input_tokens", tokens.0 as i64),
            KeyValue::new("gen_ai.usage.output_tokens", tokens.1 as i64),
        ]);
    }

    /// End the run's span: totals, how it ended, and `error.type` unless it succeeded.
    pub fn finish(self, end: &str, error_type: Option<&str>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.span.set([
            KeyValue::new(
                "gen_ai.usage.input_tokens",
                self.input_tokens.load(Relaxed) as i64,
            ),
            KeyValue::new(
                "gen_ai.usage.output_tokens",
                self.output_tokens.load(Relaxed) as i64,
            ),
            KeyValue::new("stele.run.end", end.to_string()),
        ]);
        if let Some(t) = error_type {
            self.span.fail(t);
        }
        self.span.end();
    }
}
