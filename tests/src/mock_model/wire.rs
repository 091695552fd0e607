//! Encoding of the mock's replies in each wire format: SSE event sequences, whole JSON bodies
//! and error bodies.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{Block, Turn, Wire};

/// Pieces a value is streamed in: small ones (splits inside UTF-8 characters, escapes and
/// numbers are exercised), larger for large values so a multi-megabyte input streams quickly.
fn piece_size(len: usize, small: usize) -> usize {
    small.max(len / 256)
}

pub(super) fn plain(status: u16, content_type: &str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

pub(super) fn error_response(
    wire: Wire,
    status: u16,
    retry_after: Option<&str>,
    kind: &str,
    message: &str,
    code: Option<&str>,
) -> Response {
    let body = match wire {
        Wire::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Wire::OpenAi => {
            let message = if code == Some("context_length_exceeded") {
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
            } else {
                message
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    };
    let mut r = plain(status, "application/json", Body::from(body.to_string()));
    if let Some(Ok(v)) = retry_after.map(str::parse) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// One step of a streamed body.
pub(super) enum Step {
    Send(Bytes),
    Sleep(Duration),
    /// Abort the connection (the client sees a body error, not a clean end).
    Fail,
}

pub(super) fn sse_response(steps: Vec<Step>) -> Response {
    stream_response("text/event-stream", steps)
}

pub(super) fn stream_response(content_type: &str, steps: Vec<Step>) -> Response {
    let stream = futures_util::stream::unfold(VecDeque::from(steps), |mut q| async move {
        loop {
            match q.pop_front()? {
                Step::Send(b) => return Some((Ok::<Bytes, std::io::Error>(b), q)),
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Fail => {
                    q.clear();
                    return Some((Err(std::io::Error::other("mock: stream cut")), q));
                }
            }
        }
    });
    plain(200, content_type, Body::from_stream(stream))
}

/// Split `s` into pieces of at most `n` characters.
pub(super) fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// Keep-alives for `hold`, one every `every`: Anthropic `ping` events, OpenAI SSE comments.
pub(super) fn keep_alives(wire: Wire, hold: Duration, every: Duration) -> Vec<Step> {
    let mut out = Vec::new();
    let mut left = hold;
    let every = every.max(Duration::from_millis(1));
    while left > Duration::ZERO {
        let d = every.min(left);
        out.push(Step::Sleep(d));
        left -= d;
        out.push(match wire {
            Wire::Anthropic => event("ping", &json!({"type": "ping"})),
            Wire::OpenAi => Step::Send(Bytes::from_static(b": keep-alive\n\n")),
        });
    }
    out
}

pub(super) fn event(name: &str, data: &Value) -> Step {
    Step::Send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

pub(super) fn data(data: &Value) -> Step {
    Step::Send(Bytes::from(format!("data: {data}\n\n")))
}

pub(super) fn sse_steps(wire: Wire, turn: &Turn, model: &str, usage_chunk: bool) -> Vec<Step> {
    match wire {
        Wire::Anthropic => anthropic_sse(turn, model),
        Wire::OpenAi => openai_sse(turn, model, usage_chunk),
    }
}

pub(super) fn anthropic_sse(turn: &Turn, model: &str) -> Vec<Step> {
    let mut s = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": 1}}}),
    )];
    s.push(event("ping", &json!({"type": "ping"})));
    for (i, b) in turn.blocks.iter().enumerate() {
        let (start, deltas) = match b {
            Block::Text(t) => (
                json!({"type": "text", "text": ""}),
                pieces(t, piece_size(t.len(), 4))
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect::<Vec<_>>(),
            ),
            Block::ToolUse { id, name, input } => {
                let mut start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                if turn.omit_ids {
                    start.as_object_mut().map(|o| o.remove("id"));
                }
                let text = turn.input_text(i, input);
                let n = piece_size(text.len(), 5);
                (
                    start,
                    pieces(&text, n)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
        };
        s.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": start}),
        ));
        for d in deltas {
            s.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": d}),
            ));
        }
        s.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        ));
    }
    let stop = turn.stop_reason(Wire::Anthropic);
    s.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": turn.output_tokens}}),
    ));
    if !turn.no_terminator {
        s.push(event("message_stop", &json!({"type": "message_stop"})));
    }
    s
}

pub(super) fn openai_sse(turn: &Turn, model: &str, usage_chunk: bool) -> Vec<Step> {
    let chunk = |delta: Value, finish: Value| {
        data(
            &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut s = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut call = 0;
    for (i, b) in turn.blocks.iter().enumerate() {
        match b {
            Block::Text(t) => {
                for p in pieces(t, piece_size(t.len(), 4)) {
                    s.push(chunk(json!({"content": p}), Value::Null));
                }
            }
            Block::ToolUse { id, name, input } => {
                let mut start = json!({"index": call, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
                if turn.omit_ids {
                    start.as_object_mut().map(|o| o.remove("id"));
                }
                s.push(chunk(json!({ "tool_calls": [start] }), Value::Null));
                let text = turn.input_text(i, input);
                for p in pieces(&text, piece_size(text.len(), 5)) {
                    s.push(chunk(
                        json!({"tool_calls": [{"index": call, "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
                call += 1;
            }
        }
    }
    let finish = turn.stop_reason(Wire::OpenAi);
    s.push(chunk(json!({}), json!(finish)));
    if usage_chunk {
        let (i, o) = (turn.input_tokens, turn.output_tokens);
        s.push(data(&json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
            "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}})));
    }
    if !turn.no_terminator {
        s.push(Step::Send(Bytes::from_static(b"data: [DONE]\n\n")));
    }
    s
}

pub(super) fn full_body(wire: Wire, turn: &Turn, model: &str) -> Value {
    match wire {
        Wire::Anthropic => {
            let content: Vec<Value> = turn
                .blocks
                .iter()
                .map(|b| match b {
                    Block::Text(t) => json!({"type": "text", "text": t}),
                    Block::ToolUse { id, name, input } => {
                        let mut v =
                            json!({"type": "tool_use", "id": id, "name": name, "input": input});
                        if turn.omit_ids {
                            v.as_object_mut().map(|o| o.remove("id"));
                        }
                        v
                    }
                })
                .collect();
            json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": turn.stop_reason(Wire::Anthropic), "stop_sequence": null,
                "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens}})
        }
        Wire::OpenAi => {
            let text: String = turn
                .blocks
                .iter()
                .filter_map(|b| {
                    if let Block::Text(t) = b {
                        Some(t.as_str())
                    } else {
                        None
                    }
                })
                .collect();
            let calls: Vec<Value> = turn
                .blocks
                .iter()
                .enumerate()
                .filter_map(|(i, b)| match b {
                    Block::ToolUse { id, name, input } => {
                        let mut v = json!({"id": id, "type": "function", "function": {"name": name, "arguments": turn.input_text(i, input)}});
                        if turn.omit_ids {
                            v.as_object_mut().map(|o| o.remove("id"));
                        }
                        Some(v)
                    }
                    Block::Text(_) => None,
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            let (i, o) = (turn.input_tokens, turn.output_tokens);
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": turn.stop_reason(Wire::OpenAi)}],
                "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}})
        }
    }
}
