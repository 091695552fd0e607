#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fault handling of both wire providers against the mock server: rate limits with Retry-After,
//! server errors, malformed bodies, cut and stalled streams, auth and context overflow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stele_runtime::provider::{
    ChatRequest, ChatResponse, Message, ModelProvider, ProviderConfig, ProviderError, RetryPolicy,
    Secret, StreamEvent, Streaming, TimeoutPhase, Timeouts,
};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};

const KEY: &str = "sk-test-fault-0123456789abcdef";
const WIRES: [Wire; 2] = [Wire::Anthropic, Wire::OpenAi];

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        patience: Duration::from_secs(60),
    }
}

fn build(
    base: &str,
    wire: Wire,
    streaming: Streaming,
    retry: RetryPolicy,
    timeouts: Timeouts,
) -> Arc<dyn ModelProvider> {
    let spec = match wire {
        Wire::Anthropic => "anthropic:claude-test",
        Wire::OpenAi => "openai:gpt-test",
    };
    let mut cfg = ProviderConfig::from_spec(spec).unwrap();
    cfg.base_url = base.to_string();
    cfg.api_key = Some(Secret::new(KEY));
    cfg.streaming = streaming;
    cfg.retry = retry;
    cfg.timeouts = timeouts;
    cfg.build().unwrap()
}

fn provider(mock: &MockModel, wire: Wire, retry: RetryPolicy) -> Arc<dyn ModelProvider> {
    build(
        &mock.base_url(),
        wire,
        Streaming::On,
        retry,
        Timeouts::default(),
    )
}

fn req() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        system: String::new(),
        messages: vec![Message::user_text("hello")],
        tools: vec![],
        max_tokens: 100,
    }
}

fn answer() -> Turn {
    Turn::new().text("Hello there, how can I help?")
}

/// Run one turn, collecting progress events.
async fn chat(p: &dyn ModelProvider) -> (Result<ChatResponse, ProviderError>, Vec<StreamEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let r = p
        .chat(&req(), &mut move |e| sink.lock().unwrap().push(e))
        .await;
    if let Err(e) = &r {
        assert!(!e.to_string().contains(KEY), "key in error message: {e}");
        assert!(!format!("{e:?}").contains(KEY), "key in error debug: {e:?}");
    }
    let events = events.lock().unwrap().clone();
    (r, events)
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::rate_limited("1"));
        mock.push(answer().into());
        let (r, events) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        let r = r.unwrap();
        assert_eq!(r.attempts, 2);
        assert_eq!(r.text(), "Hello there, how can I help?");
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2);
        // The retry came no earlier than the server asked (lower bound only; a little slack for
        // clock granularity), although the policy's own backoff is 10 ms.
        let gap = reqs[1].at.duration_since(reqs[0].at);
        assert!(
            gap >= Duration::from_millis(950),
            "{wire:?}: retried after {gap:?}"
        );
        let retrying: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Retrying { .. }))
            .collect();
        assert_eq!(retrying.len(), 1);
        match retrying[0] {
            StreamEvent::Retrying {
                attempt,
                wait,
                reason,
                ..
            } => {
                assert_eq!(*attempt, 1);
                assert_eq!(*wait, Duration::from_secs(1));
                assert!(reason.contains("rate limited"), "{reason}");
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test]
async fn retry_after_beyond_patience_gives_up_at_once() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::rate_limited("30"));
        mock.push(answer().into());
        let mut policy = retry(5);
        policy.patience = Duration::from_secs(5);
        let (r, _) = chat(provider(&mock, wire, policy).as_ref()).await;
        match r {
            Err(ProviderError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(30)))
            }
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn server_error_then_success() {
    for wire in WIRES {
        for streaming in [Streaming::On, Streaming::Off] {
            let mock = MockModel::start().unwrap();
            mock.push(Reply::server_error());
            mock.push(answer().into());
            let p = build(
                &mock.base_url(),
                wire,
                streaming,
                retry(3),
                Timeouts::default(),
            );
            let (r, _) = chat(p.as_ref()).await;
            assert_eq!(r.unwrap().attempts, 2, "{wire:?} {streaming:?}");
            assert_eq!(mock.requests().len(), 2);
        }
    }
}

#[tokio::test]
async fn persistent_server_error_is_bounded() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        for _ in 0..5 {
            mock.push(Reply::server_error());
        }
        let (r, events) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        match r {
            Err(ProviderError::Server {
                status: 500,
                message,
            }) => assert!(message.contains("internal server error"), "{message}"),
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(mock.requests().len(), 3, "max_attempts bounds the requests");
        assert_eq!(mock.pending(), 2);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Retrying { .. }))
                .count(),
            2
        );
    }
}

#[tokio::test]
async fn malformed_json_is_not_retried() {
    for wire in WIRES {
        for streaming in [Streaming::On, Streaming::Off] {
            let mock = MockModel::start().unwrap();
            mock.push(Reply::Malformed);
            mock.push(answer().into());
            let p = build(
                &mock.base_url(),
                wire,
                streaming,
                retry(3),
                Timeouts::default(),
            );
            let (r, _) = chat(p.as_ref()).await;
            assert!(
                matches!(r, Err(ProviderError::Malformed { .. })),
                "{wire:?} {streaming:?}: {r:?}"
            );
            assert_eq!(mock.requests().len(), 1);
        }
    }
}

#[tokio::test]
async fn stream_cut_before_content_is_retried() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        // Only the opening event (message_start / the role chunk) gets through.
        mock.push(Reply::Cut {
            turn: answer(),
            after_events: 1,
        });
        mock.push(answer().into());
        let (r, events) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        let r = r.unwrap();
        assert_eq!(r.attempts, 2, "{wire:?}");
        assert_eq!(r.text(), "Hello there, how can I help?");
        assert!(
            matches!(&events[0], StreamEvent::Retrying { reason, .. } if reason.contains("stream cut")),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn stream_cut_after_content_fails_without_repeating() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Cut {
            turn: answer(),
            after_events: 5,
        });
        mock.push(answer().into());
        let (r, events) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        assert!(
            matches!(r, Err(ProviderError::StreamCut { .. })),
            "{wire:?}: {r:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, StreamEvent::TextDelta(_))),
            "content had been shown"
        );
        assert_eq!(
            mock.requests().len(),
            1,
            "a retry would show the text twice"
        );
    }
}

#[tokio::test]
async fn non_streamed_cut_is_retried() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Cut {
            turn: answer(),
            after_events: 0,
        });
        mock.push(answer().into());
        let p = build(
            &mock.base_url(),
            wire,
            Streaming::Off,
            retry(3),
            Timeouts::default(),
        );
        let (r, _) = chat(p.as_ref()).await;
        assert_eq!(r.unwrap().attempts, 2, "{wire:?}");
    }
}

#[tokio::test]
async fn unauthorized_is_final() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::unauthorized());
        mock.push(answer().into());
        let (r, _) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        match r {
            Err(e @ ProviderError::Auth { status: 401, .. }) => {
                assert!(e.to_string().contains("API key"), "{e}")
            }
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn context_overflow_is_recognised() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::context_overflow());
        let (r, _) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        assert!(
            matches!(r, Err(ProviderError::ContextOverflow { .. })),
            "{wire:?}: {r:?}"
        );
        assert_eq!(mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn other_client_errors_are_rejected_not_retried() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Status {
            status: 400,
            retry_after: None,
            kind: "invalid_request_error".into(),
            message: "tools.0.name: String should match pattern".into(),
            code: None,
        });
        let (r, _) = chat(provider(&mock, wire, retry(3)).as_ref()).await;
        match r {
            Err(ProviderError::Rejected {
                status: 400,
                message,
            }) => assert!(message.contains("should match pattern")),
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn stalled_stream_times_out() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        stall: Duration::from_millis(300),
        request: Duration::from_secs(60),
    };
    for wire in WIRES {
        for streaming in [Streaming::On, Streaming::Off] {
            let mock = MockModel::start().unwrap();
            mock.push(Reply::Stall {
                turn: answer(),
                after_events: 4,
                hold: Duration::from_secs(60),
            });
            let p = build(&mock.base_url(), wire, streaming, retry(1), timeouts);
            let (r, _) = chat(p.as_ref()).await;
            match r {
                Err(ProviderError::Timeout {
                    phase: TimeoutPhase::Stall,
                    after,
                }) => assert_eq!(after, Duration::from_millis(300)),
                other => panic!("{wire:?} {streaming:?}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn stall_before_content_is_retried() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        stall: Duration::from_millis(300),
        request: Duration::from_secs(60),
    };
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Stall {
            turn: answer(),
            after_events: 1,
            hold: Duration::from_secs(60),
        });
        mock.push(answer().into());
        let p = build(&mock.base_url(), wire, Streaming::On, retry(2), timeouts);
        let (r, _) = chat(p.as_ref()).await;
        assert_eq!(r.unwrap().attempts, 2, "{wire:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    // A port that was just free on loopback; nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for wire in WIRES {
        let p = build(
            &format!("http://127.0.0.1:{port}"),
            wire,
            Streaming::On,
            retry(2),
            Timeouts::default(),
        );
        let (r, events) = chat(p.as_ref()).await;
        assert!(
            matches!(r, Err(ProviderError::Network { .. })),
            "{wire:?}: {r:?}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Retrying { .. }))
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn missing_key_is_a_config_error_naming_the_variable() {
    let mut cfg = ProviderConfig::from_spec("anthropic:claude-test").unwrap();
    cfg.api_key_env = Some("STELE_TEST_SURELY_UNSET_KEY_VAR".into());
    match cfg.build() {
        Err(ProviderError::Config { detail }) => assert!(
            detail.contains("STELE_TEST_SURELY_UNSET_KEY_VAR"),
            "{detail}"
        ),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("built without a key"),
    }
    // A local OpenAI-compatible server needs none, and sends no Authorization header.
    let mock = MockModel::start().unwrap();
    mock.push(answer().into());
    let mut cfg = ProviderConfig::from_spec("ollama:llama3.1:8b").unwrap();
    assert_eq!(cfg.model, "llama3.1:8b");
    cfg.base_url = format!("{}/v1", mock.base_url());
    let p = cfg.build().unwrap();
    p.chat(&req(), &mut |_| {}).await.unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("authorization"), None);
    assert_eq!(
        reqs[0].json()["max_tokens"],
        100,
        "local servers get max_tokens"
    );
    assert_eq!(reqs[0].json().get("max_completion_tokens"), None);
}

#[tokio::test]
async fn error_event_in_stream() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        // Overloaded before any content: retried.
        mock.push(Reply::StreamError {
            turn: answer(),
            after_events: 1,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
        });
        mock.push(answer().into());
        // An error after content was shown: final.
        mock.push(Reply::StreamError {
            turn: answer(),
            after_events: 5,
            kind: "api_error".into(),
            message: "boom".into(),
        });
        let p = provider(&mock, wire, retry(3));
        let (r, _) = chat(p.as_ref()).await;
        assert_eq!(r.unwrap().attempts, 2, "{wire:?}");
        let (r, _) = chat(p.as_ref()).await;
        match r {
            Err(ProviderError::Server { message, .. }) => assert_eq!(message, "boom"),
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(mock.requests().len(), 3);
    }
}

#[tokio::test]
async fn unavailable_with_http_date_retry_after() {
    let mock = MockModel::start().unwrap();
    // An HTTP date two seconds ahead: HTTP dates have one-second resolution, so the wait is
    // somewhere above one second.
    let when = std::time::SystemTime::now() + Duration::from_secs(2);
    mock.push(Reply::unavailable(&httpdate::fmt_http_date(when)));
    mock.push(answer().into());
    let (r, _) = chat(provider(&mock, Wire::Anthropic, retry(3)).as_ref()).await;
    assert_eq!(r.unwrap().attempts, 2);
    let reqs = mock.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
}
