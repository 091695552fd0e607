//! A mock model server for tests: speaks the real Anthropic Messages and OpenAI Chat Completions
//! wire formats (streamed as SSE, or whole JSON bodies), answers from a queue of scripted
//! [`Reply`]s, records every request it receives, and injects faults on demand.
//!
//! It listens on 127.0.0.1 only, on its own thread and tokio runtime, so both async tests and
//! plain tests that run the `stele` binary can use it. Dropping it stops it.
//!
//! ```no_run
//! use stele_tests::mock_model::{MockModel, Reply, Turn};
//! let mock = MockModel::start()?;
//! mock.push(Reply::rate_limited("1"));
//! mock.push(Turn::new().text("Reading.").tool_use("t1", "read_file", serde_json::json!({"path": "a"})).into());
//! // point a provider at mock.base_url(), then inspect mock.requests()
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

mod wire;
use wire::{
    data, error_response, event, full_body, plain, sse_response, sse_steps, stream_response, Step,
};

/// Which wire format a request used (from its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

/// One content block of a scripted turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text(String),
    /// A tool call.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Tool input.
        input: Value,
    },
}

/// A scripted assistant turn. Streamed, text is sent in small pieces and tool input JSON in
/// fragments, as real servers do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Turn {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// Reported prompt tokens.
    pub input_tokens: u64,
    /// Reported generated tokens.
    pub output_tokens: u64,
}

impl Turn {
    /// An empty turn with usage 10 in / 5 out.
    pub fn new() -> Self {
        Self {
            blocks: Vec::new(),
            input_tokens: 10,
            output_tokens: 5,
        }
    }
    /// Add a text block.
    pub fn text(mut self, t: &str) -> Self {
        self.blocks.push(Block::Text(t.to_string()));
        self
    }
    /// Add a tool call.
    pub fn tool_use(mut self, id: &str, name: &str, input: Value) -> Self {
        self.blocks.push(Block::ToolUse {
            id: id.into(),
            name: name.into(),
            input,
        });
        self
    }
    /// Set the reported usage.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }
    fn has_tools(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
    }
}

/// What the server does with the next request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer with this turn (streamed if the request asked for it).
    Turn(Turn),
    /// Answer with an HTTP error in the wire's error format.
    Status {
        /// HTTP status.
        status: u16,
        /// A `Retry-After` header value to send.
        retry_after: Option<String>,
        /// The error type (`rate_limit_error`, `api_error`, …) for the body.
        kind: String,
        /// The error message for the body.
        message: String,
        /// OpenAI's `error.code` (e.g. `context_length_exceeded`).
        code: Option<String>,
    },
    /// 200 with a body (or first SSE event) that is not valid JSON.
    Malformed,
    /// Stream the turn but drop the connection after `after_events` SSE events (non-streamed: after
    /// half the body).
    Cut {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the cut.
        after_events: usize,
    },
    /// Stream the turn's first `after_events` events, then an in-stream error event (Anthropic
    /// `event: error`, OpenAI `data: {"error": …}`) and end the stream.
    StreamError {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the error.
        after_events: usize,
        /// The error type (`overloaded_error`, `api_error`, …).
        kind: String,
        /// The error message.
        message: String,
    },
    /// Stream the turn but stop sending after `after_events` events for `hold` (non-streamed: send
    /// the headers, then nothing for `hold`).
    Stall {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the stall.
        after_events: usize,
        /// How long nothing is sent.
        hold: Duration,
    },
}

impl From<Turn> for Reply {
    fn from(t: Turn) -> Self {
        Reply::Turn(t)
    }
}

impl Reply {
    fn status(status: u16, kind: &str, message: &str) -> Self {
        Reply::Status {
            status,
            retry_after: None,
            kind: kind.into(),
            message: message.into(),
            code: None,
        }
    }
    /// 429 with `Retry-After: <retry_after>`.
    pub fn rate_limited(retry_after: &str) -> Self {
        Reply::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
            kind: "rate_limit_error".into(),
            message: "mock: rate limited".into(),
            code: None,
        }
    }
    /// 503 with `Retry-After: <retry_after>` (servers send it on overload too).
    pub fn unavailable(retry_after: &str) -> Self {
        Reply::Status {
            status: 503,
            retry_after: Some(retry_after.into()),
            kind: "overloaded_error".into(),
            message: "mock: temporarily unavailable".into(),
            code: None,
        }
    }
    /// 500 internal server error.
    pub fn server_error() -> Self {
        Self::status(500, "api_error", "mock: internal server error")
    }
    /// 401 invalid key.
    pub fn unauthorized() -> Self {
        Self::status(401, "authentication_error", "mock: invalid x-api-key")
    }
    /// 400 because the prompt is too long, as each API words it.
    pub fn context_overflow() -> Self {
        Reply::Status {
            status: 400,
            retry_after: None,
            kind: "invalid_request_error".into(),
            message: "prompt is too long: 210000 tokens > 200000 maximum".into(),
            code: Some("context_length_exceeded".into()),
        }
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The wire format (from the path); `None` for unknown paths (answered 404).
    pub wire: Option<Wire>,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running mock server.
pub struct MockModel {
    addr: SocketAddr,
    state: SharedState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MockModel {
    /// Start a server on 127.0.0.1 with an OS-chosen port.
    pub fn start() -> std::io::Result<Self> {
        let state = SharedState::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-model".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    let app = axum::Router::new().fallback(handle).with_state(shared);
                    // Stop abruptly: a stalled response must not keep the test waiting.
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })?;
        let addr = addr_rx
            .recv()
            .map_err(|_| std::io::Error::other("mock model thread ended before listening"))??;
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, the base URL to give a provider.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue a reply for the next request.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).replies.push_back(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many queued replies have not been used.
    pub fn pending(&self) -> usize {
        lock(&self.state).replies.len()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
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
        s.requests.push(request);
        s.replies.pop_front()
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
    }
}
