//! The HTTP side shared by the wire providers: one attempt (send, read with idle timeouts,
//! decode SSE or a whole JSON body), error classification, and the retry loop around it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::HeaderMap;

use super::classify::classify;
use super::error::{ProviderError, Retry, TimeoutPhase};
use super::retry::{retry_after_from, RetryPolicy, Timeouts};
use super::secret::Secret;
use super::sse::{SseEvent, SseParser};
use super::types::{ChatResponse, Content, Elided, StopReason, StreamEnd, Usage};
use super::StreamEvent;

/// Whether to ask the server for a streamed (SSE) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// `stream: true`: progress is reported while the model generates.
    On,
    /// One JSON body at the end (some local servers handle tool calls better this way).
    Off,
}

/// A decoded reply, before the bodies and attempt count are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assembled {
    pub content: Vec<Content>,
    pub stop: StopReason,
    pub usage: Usage,
    pub model: String,
    /// Streamed replies: the content position of each block key the assembler gave
    /// [`Step::Bulk`] events (for leaving a large block's deltas out of the record).
    pub positions: HashMap<u64, usize>,
}

/// What one stream event was, for the stall timer, the record and the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Progress: the reply advanced (a block started or ended, the stop reason, usage…).
    Progress,
    /// Progress that is content of the block with this key (a text or input delta).
    Bulk(u64),
    /// Not progress: a keep-alive (`ping`), an empty delta, an event this client ignores.
    /// It does not reset the stall timer: a server that only pings is stalled.
    Idle,
    /// The wire's terminator: the reply is complete.
    Done,
}

/// Turns a wire's SSE events into an [`Assembled`] reply.
pub(crate) trait StreamAssembler: Send {
    /// Handle one event, reporting progress to `out`.
    fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Step, ProviderError>;
    /// Whether content has already been reported to the caller (a retry would then repeat it).
    fn saw_content(&self) -> bool;
    /// Whether the event that carries the stop reason has arrived: after it only trailing
    /// events (usage, the terminator) may follow, so a stream that ends there is complete.
    fn stop_seen(&self) -> bool;
    /// The reply, once the stream is complete.
    fn finish(self: Box<Self>) -> Result<Assembled, ProviderError>;
}

/// A wire format: how to decode its replies.
pub(crate) trait Wire: Send + Sync {
    /// A fresh assembler for one streamed attempt.
    fn assembler(&self) -> Box<dyn StreamAssembler>;
    /// Decode a non-streamed JSON reply.
    fn parse_full(&self, body: &[u8]) -> Result<Assembled, ProviderError>;
}

/// One request, ready to send (body without any secret; the key only in `headers`).
pub(crate) struct Outgoing<'a> {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub streaming: Streaming,
    pub key: Option<&'a Secret>,
}

/// Why one attempt failed, with what the retry loop needs to decide.
struct Failure {
    error: ProviderError,
    retry_after: Option<Duration>,
    saw_content: bool,
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Failure {
            error,
            retry_after: None,
            saw_content: false,
        }
    }
}

/// A successful attempt: the reply, the body as received, and how it ended.
struct Received {
    assembled: Assembled,
    raw: Vec<u8>,
    end: StreamEnd,
    /// Bulk events by block key, as spans of `raw` (streamed replies only).
    bulk: Vec<(u64, (u64, u64))>,
}

/// An HTTP client with its timeouts and retry policy.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    timeouts: Timeouts,
    retry: RetryPolicy,
}

/// Error bodies are read for their message only; a huge HTML error page is cut.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Transport {
    /// A client for `base_url`. Loopback servers (Ollama, vLLM, llama.cpp, the test mock) are
    /// reached directly, never through a proxy from the environment.
    pub fn new(
        base_url: &str,
        timeouts: Timeouts,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let mut builder = reqwest::Client::builder().connect_timeout(timeouts.connect);
        if super::config::is_loopback_url(base_url)? {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| ProviderError::Config {
            detail: format!("HTTP client: {e}"),
        })?;
        Ok(Self {
            client,
            timeouts,
            retry,
        })
    }

    /// Send `out`, retrying as the policy allows, and decode the reply with `wire`.
    ///
    /// Retryable failures (see [`ProviderError::retry`]) are retried with capped exponential
    /// backoff until the policy's patience, counted from the first failure, runs out; each is
    /// reported to `events` first (attempt, wait, elapsed), so the caller can show and record it.
    pub async fn send(
        &self,
        wire: &dyn Wire,
        out: &Outgoing<'_>,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError> {
        let mut first_failure: Option<Instant> = None;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let limit = self.timeouts.request;
            let result = tokio::time::timeout(limit, self.attempt(wire, out, events)).await;
            let failure = match result {
                Err(_) => Failure {
                    error: ProviderError::Timeout {
                        phase: TimeoutPhase::Request,
                        after: limit,
                    },
                    retry_after: None,
                    // A whole attempt that outlived its limit may have shown content; a retry
                    // would show it again.
                    saw_content: true,
                },
                Ok(Ok(r)) => {
                    let (response_body, elided) = record_body(&r);
                    return Ok(ChatResponse {
                        content: r.assembled.content,
                        stop: r.assembled.stop,
                        usage: r.assembled.usage,
                        model: r.assembled.model,
                        request_body: out.body.clone(),
                        response_body,
                        attempts: attempt,
                        stream_end: r.end,
                        elided,
                    });
                }
                Ok(Err(f)) => f,
            };
            let since = *first_failure.get_or_insert_with(Instant::now);
            // Content already shown to the user would be shown twice by a retry.
            let retryable = failure.error.retry() == Retry::Retryable && !failure.saw_content;
            if !retryable || attempt >= self.retry.max_attempts {
                return Err(failure.error);
            }
            let wait = self.retry.wait_before_next(attempt, failure.retry_after);
            let elapsed = since.elapsed();
            if elapsed + wait > self.retry.patience {
                return Err(failure.error);
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %failure.error, "model request failed; retrying");
            events(StreamEvent::Retrying {
                attempt,
                wait,
                reason: failure.error.to_string(),
                kind: failure.error.kind(),
                elapsed,
                patience: self.retry.patience,
            });
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        wire: &dyn Wire,
        out: &Outgoing<'_>,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Received, Failure> {
        let request = self
            .client
            .post(&out.url)
            .headers(out.headers.clone())
            .body(out.body.clone());
        // The headers must come within the connect and stall times (the server may think
        // before answering, but not for ever).
        let wait_headers = self.timeouts.connect + self.timeouts.stall;
        let response = match tokio::time::timeout(wait_headers, request.send()).await {
            Err(_) => {
                return Err(ProviderError::Timeout {
                    phase: TimeoutPhase::Stall,
                    after: wait_headers,
                }
                .into())
            }
            Ok(Err(e)) => return Err(send_error(&e, self.timeouts, out.key).into()),
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = response.bytes_stream();
        let stall = self.timeouts.stall;

        if !(200..300).contains(&status) {
            let mut raw = Vec::new();
            // A failure to read the error body still leaves the status to classify by.
            while raw.len() < MAX_ERROR_BODY {
                match tokio::time::timeout(stall, body.next()).await {
                    Ok(Some(Ok(chunk))) => raw.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            let retry_after = retry_after_from(&headers);
            let error = classify(status, &raw, retry_after, out.key);
            return Err(Failure {
                error,
                retry_after,
                saw_content: false,
            });
        }

        let is_sse = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut raw = Vec::new();
        if out.streaming == Streaming::Off || !is_sse {
            // A server may ignore `stream: true` and answer with one JSON body; decode it as
            // such. Every piece of a whole body is progress.
            loop {
                match tokio::time::timeout(stall, body.next()).await {
                    Err(_) => {
                        return Err(ProviderError::Timeout {
                            phase: TimeoutPhase::Stall,
                            after: stall,
                        }
                        .into())
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(cut(&e, raw.len(), out.key).into()),
                    Ok(Some(Ok(chunk))) => raw.extend_from_slice(&chunk),
                }
            }
            let assembled = wire.parse_full(&raw)?;
            return Ok(Received {
                assembled,
                raw,
                end: StreamEnd::Whole,
                bulk: Vec::new(),
            });
        }

        let mut parser = SseParser::default();
        let mut asm = wire.assembler();
        let mut bulk = Vec::new();
        let fail = |error: ProviderError, asm: &dyn StreamAssembler| Failure {
            error,
            retry_after: None,
            saw_content: asm.saw_content(),
        };
        // The stall timer runs from the last progress: pings and comments do not reset it.
        let mut progress_at = tokio::time::Instant::now();
        let end = loop {
            let chunk = match tokio::time::timeout_at(progress_at + stall, body.next()).await {
                Err(_) => {
                    let e = ProviderError::Timeout {
                        phase: TimeoutPhase::Stall,
                        after: stall,
                    };
                    return Err(fail(e, asm.as_ref()));
                }
                Ok(None) => {
                    if let Some(ev) = parser.finish() {
                        match asm.on_event(&ev, events) {
                            Ok(Step::Done) => break StreamEnd::Terminator,
                            Ok(Step::Bulk(k)) => bulk.push((k, ev.span)),
                            Ok(Step::Progress | Step::Idle) => {}
                            Err(e) => return Err(fail(e, asm.as_ref())),
                        }
                    }
                    if asm.stop_seen() {
                        break StreamEnd::AfterStopReason;
                    }
                    let e = ProviderError::StreamCut {
                        detail: format!(
                            "the stream ended after {} bytes without its final event",
                            raw.len()
                        ),
                    };
                    return Err(fail(e, asm.as_ref()));
                }
                Ok(Some(Err(e))) => {
                    // The stop reason had come: only trailing events were lost.
                    if asm.stop_seen() {
                        break StreamEnd::AfterStopReason;
                    }
                    return Err(fail(cut(&e, raw.len(), out.key), asm.as_ref()));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            raw.extend_from_slice(&chunk);
            let mut done = false;
            for ev in parser.feed(&chunk) {
                match asm.on_event(&ev, events) {
                    Ok(Step::Done) => {
                        done = true;
                        break;
                    }
                    Ok(Step::Progress) => progress_at = tokio::time::Instant::now(),
                    Ok(Step::Bulk(k)) => {
                        progress_at = tokio::time::Instant::now();
                        bulk.push((k, ev.span));
                    }
                    Ok(Step::Idle) => {}
                    Err(e) => return Err(fail(e, asm.as_ref())),
                }
            }
            if done {
                break StreamEnd::Terminator;
            }
        };
        let assembled = asm.finish()?;
        Ok(Received {
            assembled,
            raw,
            end,
            bulk,
        })
    }
}

/// Blocks at least this large (text bytes, or tool input as compact JSON) are recorded once:
/// the agent stores their value as a payload of its own, and a streamed reply's record leaves
/// their delta events out.
pub const LARGE_BLOCK: usize = 64 * 1024;

/// The size [`LARGE_BLOCK`] is compared with.
pub fn block_size(c: &Content) -> usize {
    match c {
        Content::Text(t) => t.len(),
        Content::ToolUse { input, .. } => json_len(input),
        Content::ToolResult { content, .. } => content.len(),
    }
}

/// Length of a value's compact JSON, without building it.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The response body to record: as received, except that the delta events of large blocks are
/// left out (each block's assembled value is recorded on its own) and replaced by one SSE
/// comment saying what was left out.
fn record_body(r: &Received) -> (Vec<u8>, Vec<Elided>) {
    let large: HashMap<u64, usize> = r
        .assembled
        .positions
        .iter()
        .filter(|(_, pos)| {
            r.assembled
                .content
                .get(**pos)
                .is_some_and(|c| block_size(c) >= LARGE_BLOCK)
        })
        .map(|(k, p)| (*k, *p))
        .collect();
    if large.is_empty() {
        return (r.raw.clone(), Vec::new());
    }
    let mut out = Vec::with_capacity(r.raw.len() / 4);
    let mut elided: Vec<Elided> = Vec::new();
    let mut at = 0usize;
    for (key, (start, end)) in &r.bulk {
        let Some(pos) = large.get(key) else { continue };
        let (start, end) = (*start as usize, *end as usize);
        if start < at || end > r.raw.len() {
            continue;
        }
        out.extend_from_slice(&r.raw[at..start]);
        at = end;
        match elided.iter_mut().find(|e| e.block == *pos) {
            Some(e) => {
                e.events += 1;
                e.bytes += (end - start) as u64;
            }
            None => {
                out.extend_from_slice(
                    format!(": stele: the delta events of content block {pos} are left out of this record; its value is recorded whole in the same entry\n\n").as_bytes(),
                );
                elided.push(Elided {
                    block: *pos,
                    events: 1,
                    bytes: (end - start) as u64,
                });
            }
        }
    }
    out.extend_from_slice(&r.raw[at..]);
    (out, elided)
}

fn redact(key: Option<&Secret>, text: &str) -> String {
    match key {
        Some(k) => k.redact(text),
        None => text.to_string(),
    }
}

/// A failure before any response arrived.
fn send_error(e: &reqwest::Error, timeouts: Timeouts, key: Option<&Secret>) -> ProviderError {
    if e.is_timeout() && e.is_connect() {
        return ProviderError::Timeout {
            phase: TimeoutPhase::Connect,
            after: timeouts.connect,
        };
    }
    if e.is_timeout() {
        return ProviderError::Timeout {
            phase: TimeoutPhase::Stall,
            after: timeouts.stall,
        };
    }
    // reqwest's Display omits the cause ("error sending request for url"); name it too.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ProviderError::Network {
        detail: redact(key, &detail),
    }
}

/// A failure while reading a response body whose headers had arrived.
fn cut(e: &reqwest::Error, received: usize, key: Option<&Secret>) -> ProviderError {
    ProviderError::StreamCut {
        detail: redact(
            key,
            &format!("connection failed after {received} bytes of the response: {e}"),
        ),
    }
}
