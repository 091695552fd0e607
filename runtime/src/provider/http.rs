//! The HTTP side shared by the wire providers: one attempt (send, read with idle timeouts,
//! decode SSE or a whole JSON body), error classification, and the retry loop around it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::HeaderMap;

use super::classify::classify;
use super::error::{ProviderError, Retry, TimeoutPhase};
use super::retry::{retry_after_from, RetryPolicy, Timeouts};
use super::secret::Secret;
use super::sse::{SseEvent, SseParser};
use super::types::{ChatResponse, Content, StopReason, Usage};
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
}

/// Whether a stream has delivered its final event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    Done,
}

/// Turns a wire's SSE events into an [`Assembled`] reply.
pub(crate) trait StreamAssembler: Send {
    /// Handle one event, reporting progress to `out`.
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Step, ProviderError>;
    /// Whether content has already been reported to the caller (a retry would then repeat it).
    fn saw_content(&self) -> bool;
    /// The reply, once `on_event` returned [`Step::Done`].
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
        let url = reqwest::Url::parse(base_url).map_err(|e| ProviderError::Config {
            detail: format!("base URL {base_url:?} is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProviderError::Config {
                detail: format!("base URL {base_url:?} must be http or https"),
            });
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
        if loopback {
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
    pub async fn send(
        &self,
        wire: &dyn Wire,
        out: &Outgoing<'_>,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = self.retry.deadline.saturating_sub(started.elapsed());
            let result = tokio::time::timeout(remaining, self.attempt(wire, out, events)).await;
            let failure = match result {
                Err(_) => {
                    return Err(ProviderError::Timeout {
                        phase: TimeoutPhase::Deadline,
                        after: self.retry.deadline,
                    })
                }
                Ok(Ok((assembled, response_body))) => {
                    return Ok(ChatResponse {
                        content: assembled.content,
                        stop: assembled.stop,
                        usage: assembled.usage,
                        model: assembled.model,
                        request_body: out.body.clone(),
                        response_body,
                        attempts: attempt,
                    })
                }
                Ok(Err(f)) => f,
            };
            // Content already shown to the user would be shown twice by a retry.
            let retryable = failure.error.retry() == Retry::Retryable && !failure.saw_content;
            if !retryable || attempt >= self.retry.max_attempts {
                return Err(failure.error);
            }
            let wait = self.retry.wait_before_next(attempt, failure.retry_after);
            if started.elapsed() + wait >= self.retry.deadline {
                return Err(failure.error);
            }
            tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %failure.error, "model request failed; retrying");
            events(StreamEvent::Retrying {
                attempt,
                wait,
                reason: failure.error.to_string(),
            });
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        wire: &dyn Wire,
        out: &Outgoing<'_>,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<(Assembled, Vec<u8>), Failure> {
        let request = self
            .client
            .post(&out.url)
            .headers(out.headers.clone())
            .body(out.body.clone());
        let wait_headers = self.timeouts.connect + self.timeouts.read;
        let response = match tokio::time::timeout(wait_headers, request.send()).await {
            Err(_) => {
                return Err(ProviderError::Timeout {
                    phase: TimeoutPhase::Read,
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
        let read = self.timeouts.read;

        if !(200..300).contains(&status) {
            let mut raw = Vec::new();
            // A failure to read the error body still leaves the status to classify by.
            while raw.len() < MAX_ERROR_BODY {
                match tokio::time::timeout(read, body.next()).await {
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
            // A server may ignore `stream: true` and answer with one JSON body; decode it as such.
            loop {
                match tokio::time::timeout(read, body.next()).await {
                    Err(_) => {
                        return Err(ProviderError::Timeout {
                            phase: TimeoutPhase::Read,
                            after: read,
                        }
                        .into())
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(cut(&e, raw.len(), out.key).into()),
                    Ok(Some(Ok(chunk))) => raw.extend_from_slice(&chunk),
                }
            }
            let assembled = wire.parse_full(&raw)?;
            return Ok((assembled, raw));
        }

        let mut parser = SseParser::default();
        let mut asm = wire.assembler();
        let fail = |error: ProviderError, asm: &dyn StreamAssembler| Failure {
            error,
            retry_after: None,
            saw_content: asm.saw_content(),
        };
        loop {
            let chunk = match tokio::time::timeout(read, body.next()).await {
                Err(_) => {
                    let e = ProviderError::Timeout {
                        phase: TimeoutPhase::Read,
                        after: read,
                    };
                    return Err(fail(e, asm.as_ref()));
                }
                Ok(None) => {
                    if let Some(ev) = parser.finish() {
                        match asm.on_event(ev, events) {
                            Ok(Step::Done) => break,
                            Ok(Step::Continue) => {}
                            Err(e) => return Err(fail(e, asm.as_ref())),
                        }
                    }
                    let e = ProviderError::StreamCut {
                        detail: format!(
                            "the stream ended after {} bytes without its final event",
                            raw.len()
                        ),
                    };
                    return Err(fail(e, asm.as_ref()));
                }
                Ok(Some(Err(e))) => return Err(fail(cut(&e, raw.len(), out.key), asm.as_ref())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            raw.extend_from_slice(&chunk);
            let mut done = false;
            for ev in parser.feed(&chunk) {
                match asm.on_event(ev, events) {
                    Ok(Step::Done) => {
                        done = true;
                        break;
                    }
                    Ok(Step::Continue) => {}
                    Err(e) => return Err(fail(e, asm.as_ref())),
                }
            }
            if done {
                break;
            }
        }
        let assembled = asm.finish()?;
        Ok((assembled, raw))
    }
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
            phase: TimeoutPhase::Read,
            after: timeouts.read,
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
