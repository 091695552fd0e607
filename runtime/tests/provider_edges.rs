#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What real endpoints do that the happy path does not: ids left out or repeated, streams
//! without their terminator, replies cut by the output limit, every stop reason, keep-alives
//! during a stall, `stream: true` ignored, outages with the port closed, large inputs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stele_runtime::provider::{
    assign_call_ids, ChatRequest, ChatResponse, Content, Message, ModelProvider, ProviderConfig,
    ProviderError, RetryPolicy, Role, Secret, StopReason, StreamEnd, StreamEvent, Streaming,
    TimeoutPhase, Timeouts, ToolResultStatus, LARGE_BLOCK,
};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};

const KEY: &str = "sk-test-edges-0123456789";
const WIRES: [Wire; 2] = [Wire::Anthropic, Wire::OpenAi];
const BOTH: [Streaming; 2] = [Streaming::On, Streaming::Off];

fn build(
    mock: &MockModel,
    wire: Wire,
    streaming: Streaming,
    retry: RetryPolicy,
    t: Timeouts,
) -> Arc<dyn ModelProvider> {
    let spec = match wire {
        Wire::Anthropic => "anthropic:claude-test",
        Wire::OpenAi => "openai-compat:llama-test",
    };
    let mut cfg = ProviderConfig::from_spec(spec).unwrap();
    cfg.base_url = mock.base_url();
    cfg.api_key = Some(Secret::new(KEY));
    cfg.streaming = streaming;
    cfg.retry = retry;
    cfg.timeouts = t;
    cfg.build().unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        patience: Duration::from_secs(20),
    }
}

fn provider(mock: &MockModel, wire: Wire, streaming: Streaming) -> Arc<dyn ModelProvider> {
    build(mock, wire, streaming, quick(), Timeouts::default())
}

fn req(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        system: String::new(),
        messages,
        tools: vec![],
        max_tokens: 100,
    }
}

async fn chat(
    p: &dyn ModelProvider,
    messages: Vec<Message>,
) -> (Result<ChatResponse, ProviderError>, Vec<StreamEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let r = p
        .chat(&req(messages), &mut move |e| sink.lock().unwrap().push(e))
        .await;
    let ev = events.lock().unwrap().clone();
    (r, ev)
}

fn wire_ids(c: &[Content]) -> Vec<Option<String>> {
    c.iter()
        .filter_map(|b| match b {
            Content::ToolUse { wire_id, .. } => Some(wire_id.clone()),
            _ => None,
        })
        .collect()
}

/// The ids the request carries for its calls and results, per wire.
fn sent_ids(wire: Wire, body: &Value) -> (Vec<String>, Vec<String>) {
    let msgs = body["messages"].as_array().unwrap();
    let (mut calls, mut results) = (Vec::new(), Vec::new());
    for m in msgs {
        match wire {
            Wire::Anthropic => {
                for c in m["content"].as_array().into_iter().flatten() {
                    match c["type"].as_str() {
                        Some("tool_use") => calls.push(c["id"].as_str().unwrap().to_string()),
                        Some("tool_result") => {
                            results.push(c["tool_use_id"].as_str().unwrap().to_string())
                        }
                        _ => {}
                    }
                }
            }
            Wire::OpenAi => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    calls.push(c["id"].as_str().unwrap().to_string());
                }
                if m["role"] == "tool" {
                    results.push(m["tool_call_id"].as_str().unwrap().to_string());
                }
            }
        }
    }
    (calls, results)
}

/// Servers that leave ids out, or send the same id twice in one reply and again in the next:
/// each call gets stele's id, and every result on the wire names its own call.
#[tokio::test]
async fn missing_and_repeated_ids_pair_results_with_their_calls() {
    for wire in WIRES {
        for streaming in BOTH {
            let mock = MockModel::start().unwrap();
            let a = json!({"argv": ["python3", "append.py", "1"]});
            let b = json!({"argv": ["python3", "append.py", "2"]});
            mock.push(
                Turn::new()
                    .tool_use("x", "exec", a.clone())
                    .tool_use("x", "exec", b.clone())
                    .without_ids()
                    .into(),
            );
            mock.push(
                Turn::new()
                    .tool_use("call_0", "exec", a.clone())
                    .tool_use("call_0", "exec", b.clone())
                    .into(),
            );
            mock.push(Turn::new().tool_use("call_0", "exec", a.clone()).into());
            mock.push(Turn::new().text("done").into());
            let p = provider(&mock, wire, streaming);
            let mut conv = vec![Message::user_text("go")];
            for turn in 0..3 {
                let (r, _) = chat(p.as_ref(), conv.clone()).await;
                let mut content = r.unwrap().content;
                let ids = wire_ids(&content);
                if turn == 0 {
                    assert!(
                        ids.iter().all(Option::is_none),
                        "{wire:?} {streaming:?}: {ids:?}"
                    );
                } else {
                    assert!(
                        ids.iter().all(|i| i.as_deref() == Some("call_0")),
                        "{ids:?}"
                    );
                }
                assign_call_ids(&mut content, &format!("call-{turn}"));
                let results: Vec<Content> = content
                    .iter()
                    .filter_map(|c| match c {
                        Content::ToolUse { id, input, .. } => Some(Content::ToolResult {
                            tool_use_id: id.clone(),
                            content: format!("ran {}", input["argv"][2]),
                            status: ToolResultStatus::Ok,
                        }),
                        _ => None,
                    })
                    .collect();
                conv.push(Message::assistant(content));
                conv.push(Message {
                    role: Role::User,
                    content: results,
                });
            }
            let (r, _) = chat(p.as_ref(), conv.clone()).await;
            r.unwrap();
            let last = mock.requests().last().unwrap().json();
            let (calls, results) = sent_ids(wire, &last);
            assert_eq!(calls.len(), 5, "{wire:?} {streaming:?}: {last}");
            // Five distinct ids on the wire, results in the same order as their calls.
            let mut distinct = calls.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 5, "{calls:?}");
            assert_eq!(calls, results, "{wire:?} {streaming:?}");
            assert_eq!(calls[0], "call-0-1");
            // Each result's text follows its own call's input.
            let text = last.to_string();
            for n in ["call-0-1", "call-0-2", "call-1-1", "call-1-2", "call-2-1"] {
                assert!(text.contains(n), "{n} missing");
            }
        }
    }
}

/// A provider's unique ids are sent back as they came (the API checks them).
#[tokio::test]
async fn unique_provider_ids_are_echoed() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(
            Turn::new()
                .tool_use("toolu_01A", "exec", json!({"argv": ["true"]}))
                .into(),
        );
        mock.push(Turn::new().text("ok").into());
        let p = provider(&mock, wire, Streaming::On);
        let mut content = chat(p.as_ref(), vec![Message::user_text("go")])
            .await
            .0
            .unwrap()
            .content;
        assign_call_ids(&mut content, "call-9");
        let conv = vec![
            Message::user_text("go"),
            Message::assistant(content),
            Message {
                role: Role::User,
                content: vec![Content::ToolResult {
                    tool_use_id: "call-9-1".into(),
                    content: "ok".into(),
                    status: ToolResultStatus::Ok,
                }],
            },
        ];
        chat(p.as_ref(), conv).await.0.unwrap();
        let (calls, results) = sent_ids(wire, &mock.requests()[1].json());
        assert_eq!(
            (calls, results),
            (vec!["toolu_01A".to_string()], vec!["toolu_01A".to_string()])
        );
    }
}

/// OpenAI documents `data: [DONE]` as the stream's end and the chunk with `finish_reason` as
/// the last that carries content (only the usage chunk may follow). A stream that ends after
/// the finish reason is complete; one that ends before it is cut. The same for Anthropic's
/// `message_delta` (stop reason) and `message_stop`.
#[tokio::test]
async fn stream_without_terminator_is_complete_after_the_stop_reason() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(
            Turn::new()
                .text("All done here.")
                .without_terminator()
                .into(),
        );
        let p = build(
            &mock,
            wire,
            Streaming::On,
            RetryPolicy {
                max_attempts: 1,
                ..quick()
            },
            Timeouts::default(),
        );
        let (r, _) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        let r = r.unwrap();
        assert_eq!(r.text(), "All done here.");
        assert_eq!(r.stream_end, StreamEnd::AfterStopReason, "{wire:?}");
        assert_eq!(r.stop, StopReason::EndTurn);
        assert_eq!(mock.requests().len(), 1, "not retried");

        // With the terminator: recorded as such.
        mock.push(Turn::new().text("ok").into());
        let (r, _) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        assert_eq!(r.unwrap().stream_end, StreamEnd::Terminator);

        // Ended before the stop reason: a cut.
        let before = match wire {
            Wire::Anthropic => 5,
            Wire::OpenAi => 3,
        };
        mock.push(Reply::Cut {
            turn: Turn::new().text("All done here."),
            after_events: before,
        });
        let (r, _) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        assert!(
            matches!(r, Err(ProviderError::StreamCut { .. })),
            "{wire:?}: {r:?}"
        );
    }
}

/// Every stop reason of both APIs maps to its own outcome.
#[tokio::test]
async fn stop_reasons_are_recognised() {
    let cases = [
        (Wire::Anthropic, "end_turn", StopReason::EndTurn),
        (Wire::Anthropic, "max_tokens", StopReason::MaxTokens),
        (Wire::Anthropic, "stop_sequence", StopReason::StopSequence),
        (Wire::Anthropic, "pause_turn", StopReason::PauseTurn),
        (Wire::Anthropic, "refusal", StopReason::Refusal),
        (
            Wire::Anthropic,
            "model_context_window_exceeded",
            StopReason::Other("model_context_window_exceeded".into()),
        ),
        (Wire::OpenAi, "stop", StopReason::EndTurn),
        (Wire::OpenAi, "length", StopReason::MaxTokens),
        (Wire::OpenAi, "content_filter", StopReason::ContentFilter),
    ];
    for (wire, word, want) in cases {
        for streaming in BOTH {
            let mock = MockModel::start().unwrap();
            mock.push(Turn::new().text("Some text").stop(word).into());
            let p = provider(&mock, wire, streaming);
            let r = chat(p.as_ref(), vec![Message::user_text("go")])
                .await
                .0
                .unwrap();
            assert_eq!(r.stop, want, "{wire:?} {word} {streaming:?}");
            // The log's name for it is the Anthropic word, or the provider's own for others.
            if let StopReason::Other(s) = &want {
                assert_eq!(r.stop.as_str(), s);
            }
        }
    }
}

/// A reply cut by the output limit inside a tool call's input: the input is kept as raw
/// text (never an object, so never run); a call cut before any input is not an empty object.
#[tokio::test]
async fn a_tool_input_cut_by_the_limit_is_not_an_object() {
    for wire in WIRES {
        let limit = match wire {
            Wire::Anthropic => "max_tokens",
            Wire::OpenAi => "length",
        };
        for cut in [12usize, 0] {
            let mock = MockModel::start().unwrap();
            let input = json!({"path": "reports/long.csv", "content": "a,b\n".repeat(50)});
            mock.push(
                Turn::new()
                    .text("Writing.")
                    .tool_use("t1", "file_write", input.clone())
                    .stop(limit)
                    .cut_input_at(cut)
                    .into(),
            );
            let p = provider(&mock, wire, Streaming::On);
            let r = chat(p.as_ref(), vec![Message::user_text("go")])
                .await
                .0
                .unwrap();
            assert_eq!(r.stop, StopReason::MaxTokens);
            let (_, _, got) = r.tool_uses()[0];
            assert!(got.is_string(), "{wire:?} cut at {cut}: {got}");
            assert_eq!(got.as_str().unwrap(), &input.to_string()[..cut]);
        }
        // Not streamed: Anthropic's whole body cannot show a cut, so its last call is held
        // back too; OpenAI's arguments string shows it.
        let mock = MockModel::start().unwrap();
        let input = json!({"path": "a"});
        mock.push(
            Turn::new()
                .tool_use("t1", "file_write", input.clone())
                .stop(limit)
                .cut_input_at(5)
                .into(),
        );
        let p = provider(&mock, wire, Streaming::Off);
        let r = chat(p.as_ref(), vec![Message::user_text("go")])
            .await
            .0
            .unwrap();
        assert!(r.tool_uses()[0].2.is_string(), "{wire:?}: {:?}", r.content);
    }
}

/// Keep-alives are not progress: a server that pings while nothing comes is stalled, and the
/// attempt is retried after the stall timeout, not held until a deadline.
#[tokio::test]
async fn pings_do_not_hold_a_stalled_call() {
    let t = Timeouts {
        connect: Duration::from_secs(5),
        stall: Duration::from_millis(600),
        request: Duration::from_secs(60),
    };
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        let after = match wire {
            Wire::Anthropic => 1,
            Wire::OpenAi => 1,
        };
        mock.push(Reply::PingStall {
            turn: Turn::new().text("late"),
            after_events: after,
            hold: Duration::from_secs(30),
            every: Duration::from_millis(100),
        });
        mock.push(Turn::new().text("on time").into());
        let p = build(&mock, wire, Streaming::On, quick(), t);
        let started = Instant::now();
        let (r, events) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        assert_eq!(r.unwrap().text(), "on time");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "held for {:?}",
            started.elapsed()
        );
        let reasons: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Retrying { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, vec!["timeout"], "{wire:?}");
        // Progress that keeps coming is not a stall, however long in all.
        let mock = MockModel::start().unwrap();
        mock.push(Turn::new().text(&"slow but steady ".repeat(40)).into());
        let p = build(
            &mock,
            wire,
            Streaming::On,
            RetryPolicy {
                max_attempts: 1,
                ..quick()
            },
            t,
        );
        assert!(chat(p.as_ref(), vec![Message::user_text("go")])
            .await
            .0
            .is_ok());
    }
    // The timeout names the phase.
    let mock = MockModel::start().unwrap();
    mock.push(Reply::PingStall {
        turn: Turn::new().text("late"),
        after_events: 1,
        hold: Duration::from_secs(30),
        every: Duration::from_millis(100),
    });
    let p = build(
        &mock,
        Wire::Anthropic,
        Streaming::On,
        RetryPolicy {
            max_attempts: 1,
            ..quick()
        },
        t,
    );
    match chat(p.as_ref(), vec![Message::user_text("go")]).await.0 {
        Err(ProviderError::Timeout {
            phase: TimeoutPhase::Stall,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// A server that answers `stream: true` with one JSON body is understood.
#[tokio::test]
async fn ignored_stream_flag_is_understood() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Whole(
            Turn::new()
                .text("whole")
                .tool_use("c", "exec", json!({"argv": ["true"]}))
                .without_ids(),
        ));
        let p = provider(&mock, wire, Streaming::On);
        let r = chat(p.as_ref(), vec![Message::user_text("go")])
            .await
            .0
            .unwrap();
        assert_eq!(r.text(), "whole");
        assert_eq!(r.stream_end, StreamEnd::Whole);
        assert_eq!(wire_ids(&r.content), vec![None]);
        assert_eq!(mock.requests()[0].json()["stream"], true);
    }
}

/// The port closed for a while (connections refused), then open again: ridden out within
/// the patience, each failed attempt reported with the time waited so far.
#[tokio::test]
async fn an_outage_is_ridden_out_within_patience() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Outage {
            refused_for: Duration::from_secs(3),
        });
        mock.push(Turn::new().text("back").into());
        let p = provider(&mock, wire, Streaming::On);
        let (r, events) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        let r = r.unwrap();
        assert_eq!(r.text(), "back");
        let retries: Vec<(u32, &str, Duration)> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Retrying {
                    attempt,
                    kind,
                    elapsed,
                    ..
                } => Some((*attempt, *kind, *elapsed)),
                _ => None,
            })
            .collect();
        assert!(retries.len() >= 4, "{wire:?}: {retries:?}");
        assert_eq!(r.attempts as usize, retries.len() + 1);
        assert!(
            retries.iter().skip(1).any(|(_, k, _)| *k == "network"),
            "connection refused: {retries:?}"
        );
        assert!(
            retries.last().unwrap().2 >= Duration::from_millis(2500),
            "{retries:?}"
        );
        assert!(
            retries.windows(2).all(|w| w[1].2 >= w[0].2),
            "elapsed grows"
        );
        // Past the patience, the last error is returned.
        let mock = MockModel::start().unwrap();
        mock.push(Reply::Outage {
            refused_for: Duration::from_secs(30),
        });
        let p = build(
            &mock,
            wire,
            Streaming::On,
            RetryPolicy {
                patience: Duration::from_secs(2),
                ..quick()
            },
            Timeouts::default(),
        );
        let started = Instant::now();
        let (r, _) = chat(p.as_ref(), vec![Message::user_text("go")]).await;
        assert!(matches!(r, Err(ProviderError::Network { .. })), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
}

/// A large tool input is not kept twice in the response record: its delta events are left
/// out (said so in the record), the rest of the stream is byte for byte.
#[tokio::test]
async fn large_blocks_are_left_out_of_the_response_record() {
    for wire in WIRES {
        let mock = MockModel::start().unwrap();
        let big =
            json!({"path": "reports/big.csv", "content": "north,12.50\n".repeat(LARGE_BLOCK / 6)});
        mock.push(
            Turn::new()
                .text("Writing it.")
                .tool_use("t1", "file_write", big.clone())
                .into(),
        );
        let p = provider(&mock, wire, Streaming::On);
        let r = chat(p.as_ref(), vec![Message::user_text("go")])
            .await
            .0
            .unwrap();
        assert_eq!(r.tool_uses()[0].2, &big);
        assert_eq!(r.elided.len(), 1, "{wire:?}");
        assert_eq!(r.elided[0].block, 1);
        let record = String::from_utf8(r.response_body.clone()).unwrap();
        assert!(record.len() < 8 * 1024, "{} bytes", record.len());
        assert!(
            record.contains(": stele: the delta events of content block 1"),
            "{record}"
        );
        assert!(record.contains("\"Writ\""), "small blocks kept: {record}");
    }
}
