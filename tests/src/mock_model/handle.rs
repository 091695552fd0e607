//! Answering one request: record it, take the next reply (or ask the responder), encode it
//! in the request's wire format.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::wire::{
    data, error_response, event, full_body, keep_alives, plain, sse_response, sse_steps,
    stream_response, Step,
};
use super::{lock, RecordedRequest, Reply, SharedState, Wire};

pub(super) async fn handle(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let wire = if path.ends_with("/v1/messages") {
        Some(Wire::Anthropic)
    } else if path.ends_with("/v1/chat/completions") {
        Some(Wire::OpenAi)
    } else {
        None
    };
    let request = RecordedRequest {
        wire,
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    };
    let parsed = request.json();
    let reply = {
        let mut s = lock(&state);
        let queued = s.replies.pop_front();
        let reply = queued.or_else(|| s.responder.as_ref().map(|f| f(&request)));
        s.requests.push(request);
        reply
    };
    let Some(wire) = wire else {
        return plain(404, "text/plain", Body::from("mock model: unknown path"));
    };
    let Some(reply) = reply else {
        // Not retryable on purpose: a test that forgot a reply fails at once.
        return error_response(
            wire,
            418,
            None,
            "mock_exhausted",
            "mock model: no scripted reply queued",
            None,
        );
    };
    let streaming = parsed.get("stream").and_then(Value::as_bool) == Some(true);
    let model = parsed
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let usage_chunk = parsed
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    match reply {
        Reply::Status {
            status,
            retry_after,
            kind,
            message,
            code,
        } => error_response(
            wire,
            status,
            retry_after.as_deref(),
            &kind,
            &message,
            code.as_deref(),
        ),
        Reply::Malformed if streaming => sse_response(vec![Step::Send(Bytes::from_static(
            b"data: {\"type\": \"message_start\", \"message\": {\n\n",
        ))]),
        Reply::Malformed => plain(
            200,
            "application/json",
            Body::from("{\"id\": \"msg_1\", \"content\": ["),
        ),
        Reply::Turn(turn) if streaming => sse_response(sse_steps(wire, &turn, &model, usage_chunk)),
        Reply::Turn(turn) => plain(
            200,
            "application/json",
            Body::from(full_body(wire, &turn, &model).to_string()),
        ),
        Reply::Cut { turn, after_events } if streaming => {
            let mut steps = sse_steps(wire, &turn, &model, usage_chunk);
            steps.truncate(after_events);
            // Let the server flush what was sent, so the client sees a cut body, not a failed request.
            steps.push(Step::Sleep(Duration::from_millis(100)));
            steps.push(Step::Fail);
            sse_response(steps)
        }
        Reply::Cut { turn, .. } => {
            let body = full_body(wire, &turn, &model).to_string().into_bytes();
            let half = Bytes::from(body[..body.len() / 2].to_vec());
            let steps = vec![
                Step::Send(half),
                Step::Sleep(Duration::from_millis(100)),
                Step::Fail,
            ];
            stream_response("application/json", steps)
        }
        Reply::StreamError {
            turn,
            after_events,
            kind,
            message,
        } if streaming => {
            let mut steps = sse_steps(wire, &turn, &model, usage_chunk);
            steps.truncate(after_events);
            steps.push(match wire {
                Wire::Anthropic => event(
                    "error",
                    &json!({"type": "error", "error": {"type": kind, "message": message}}),
                ),
                Wire::OpenAi => {
                    data(&json!({"error": {"message": message, "type": kind, "code": null}}))
                }
            });
            sse_response(steps)
        }
        Reply::StreamError { kind, message, .. } => {
            error_response(wire, 500, None, &kind, &message, None)
        }
        Reply::Stall {
            turn,
            after_events,
            hold,
        } if streaming => {
            let mut steps = sse_steps(wire, &turn, &model, usage_chunk);
            let at = after_events.min(steps.len());
            steps.insert(at, Step::Sleep(hold));
            sse_response(steps)
        }
        Reply::Stall { turn, hold, .. } => {
            let body = Bytes::from(full_body(wire, &turn, &model).to_string());
            stream_response(
                "application/json",
                vec![Step::Sleep(hold), Step::Send(body)],
            )
        }
        Reply::PingStall {
            turn,
            after_events,
            hold,
            every,
        } if streaming => {
            let mut steps = sse_steps(wire, &turn, &model, usage_chunk);
            let at = after_events.min(steps.len());
            let pings = keep_alives(wire, hold, every);
            steps.splice(at..at, pings);
            sse_response(steps)
        }
        Reply::PingStall { turn, hold, .. } => {
            let body = Bytes::from(full_body(wire, &turn, &model).to_string());
            stream_response(
                "application/json",
                vec![Step::Sleep(hold), Step::Send(body)],
            )
        }
        Reply::Whole(turn) => plain(
            200,
            "application/json",
            Body::from(full_body(wire, &turn, &model).to_string()),
        ),
        Reply::Outage { refused_for } => {
            let outage = lock(&state).outage.clone();
            if let Some(tx) = outage {
                let _ = tx.send(refused_for);
            }
            stream_response(
                "application/json",
                vec![Step::Sleep(Duration::from_millis(50)), Step::Fail],
            )
        }
    }
}
