#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Both wire providers against the mock server: tool-use round trips, streaming assembly,
//! non-streamed replies, usage, and what is (not) in the request body.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stele_runtime::provider::{
    assign_call_ids, ChatRequest, Content, Message, ModelProvider, ProviderConfig, ProviderKind,
    RetryPolicy, Role, Secret, StopReason, StreamEvent, Streaming, ToolResultStatus, ToolSpec,
    Usage,
};
use stele_tests::mock_model::{MockModel, Turn, Wire};

const KEY: &str = "sk-test-0123456789-very-secret";

fn provider(mock: &MockModel, wire: Wire, streaming: Streaming) -> Arc<dyn ModelProvider> {
    let spec = match wire {
        Wire::Anthropic => "anthropic:claude-test",
        Wire::OpenAi => "openai:gpt-test",
    };
    let mut cfg = ProviderConfig::from_spec(spec).unwrap();
    cfg.base_url = mock.base_url();
    cfg.api_key = Some(Secret::new(KEY));
    cfg.streaming = streaming;
    cfg.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        patience: Duration::from_secs(30),
    };
    cfg.build().unwrap()
}

fn request(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        system: "You are a careful assistant.".into(),
        messages,
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a workspace file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }],
        max_tokens: 1024,
    }
}

fn both() -> [(Wire, Streaming); 4] {
    [
        (Wire::Anthropic, Streaming::On),
        (Wire::Anthropic, Streaming::Off),
        (Wire::OpenAi, Streaming::On),
        (Wire::OpenAi, Streaming::Off),
    ]
}

#[tokio::test]
async fn tool_use_round_trip() {
    for (wire, streaming) in both() {
        let mock = MockModel::start().unwrap();
        let input = json!({"path": "receipts/2024-03 \"café\".txt", "lines": [1, 2, 3]});
        mock.push(
            Turn::new()
                .text("Let me read it.")
                .tool_use("call_1", "read_file", input.clone())
                .usage(120, 30)
                .into(),
        );
        mock.push(
            Turn::new()
                .text("The total is 42.50 EUR.")
                .usage(200, 12)
                .into(),
        );
        let p = provider(&mock, wire, streaming);

        let mut conv = vec![Message::user_text("Sum the receipts")];
        let mut events = Vec::new();
        let r1 = p
            .chat(&request(conv.clone()), &mut |e| events.push(e))
            .await
            .unwrap();
        assert_eq!(r1.stop, StopReason::ToolUse, "{wire:?} {streaming:?}");
        assert_eq!(r1.text(), "Let me read it.");
        // stele names the call; the provider's id is kept for the wire.
        let mut content = r1.content.clone();
        assign_call_ids(&mut content, "call-7");
        assert!(
            matches!(&content[1], Content::ToolUse { id, wire_id: Some(w), .. } if id == "call-7-1" && w == "call_1")
        );
        assert_eq!(
            r1.usage,
            Usage {
                input_tokens: 120,
                output_tokens: 30
            }
        );
        assert_eq!(r1.model, "test-model");
        assert_eq!(r1.attempts, 1);
        if streaming == Streaming::On {
            let text: String = events
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::TextDelta(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(text, "Let me read it.");
            assert!(
                events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
                    .count()
                    > 1,
                "text came in pieces"
            );
            assert!(events.contains(&StreamEvent::ToolUseStart {
                id: "call_1".into(),
                name: "read_file".into()
            }));
            let json_parts: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::ToolInputDelta { partial_json, .. } => Some(partial_json.as_str()),
                    _ => None,
                })
                .collect();
            assert!(json_parts.len() > 1, "tool input came in fragments");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&json_parts.concat()).unwrap(),
                input
            );
            assert!(
                String::from_utf8_lossy(&r1.response_body).contains("data: "),
                "raw SSE kept"
            );
        } else {
            serde_json::from_slice::<serde_json::Value>(&r1.response_body).unwrap();
        }

        conv.push(Message::assistant(content));
        conv.push(Message {
            role: Role::User,
            content: vec![Content::ToolResult {
                tool_use_id: "call-7-1".into(),
                content: "total: 42.50".into(),
                status: ToolResultStatus::Ok,
            }],
        });
        let r2 = p.chat(&request(conv), &mut |_| {}).await.unwrap();
        assert_eq!(r2.stop, StopReason::EndTurn);
        assert_eq!(r2.text(), "The total is 42.50 EUR.");
        assert_eq!(
            r2.usage,
            Usage {
                input_tokens: 200,
                output_tokens: 12
            }
        );

        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2);
        for (i, req) in reqs.iter().enumerate() {
            assert_eq!(req.wire, Some(wire));
            assert!(!req.text().contains(KEY), "key in body of request {i}");
            let body = req.json();
            assert_eq!(body["model"], "test-model");
            let limit = match wire {
                Wire::Anthropic => "max_tokens",
                Wire::OpenAi => "max_completion_tokens", // `openai:` speaks to OpenAI's newer models
            };
            assert_eq!(body[limit], 1024);
            assert_eq!(
                body.get("stream").and_then(|v| v.as_bool()) == Some(true),
                streaming == Streaming::On
            );
        }
        assert_eq!(
            reqs[1].body, r2.request_body,
            "request_body is what was sent"
        );
        let second = reqs[1].json();
        match wire {
            Wire::Anthropic => {
                assert_eq!(reqs[0].header("x-api-key"), Some(KEY));
                assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(reqs[0].header("authorization"), None);
                assert_eq!(second["system"], "You are a careful assistant.");
                assert_eq!(second["tools"][0]["input_schema"]["required"][0], "path");
                let msgs = second["messages"].as_array().unwrap();
                assert_eq!(msgs.len(), 3);
                assert_eq!(msgs[1]["role"], "assistant");
                assert_eq!(
                    msgs[1]["content"][1],
                    json!({"type": "tool_use", "id": "call_1", "name": "read_file", "input": input})
                );
                assert_eq!(
                    msgs[2]["content"][0],
                    json!({"type": "tool_result", "tool_use_id": "call_1", "content": "total: 42.50", "is_error": false})
                );
            }
            Wire::OpenAi => {
                assert_eq!(
                    reqs[0].header("authorization"),
                    Some(format!("Bearer {KEY}").as_str())
                );
                assert_eq!(reqs[0].header("x-api-key"), None);
                if streaming == Streaming::On {
                    assert_eq!(second["stream_options"]["include_usage"], true);
                }
                assert_eq!(second["tools"][0]["type"], "function");
                assert_eq!(second["tools"][0]["function"]["name"], "read_file");
                let msgs = second["messages"].as_array().unwrap();
                assert_eq!(
                    msgs[0],
                    json!({"role": "system", "content": "You are a careful assistant."})
                );
                assert_eq!(msgs[2]["role"], "assistant");
                let call = &msgs[2]["tool_calls"][0];
                assert_eq!(call["id"], "call_1");
                let args: serde_json::Value =
                    serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
                assert_eq!(args, input, "arguments are a JSON string");
                assert_eq!(
                    msgs[3],
                    json!({"role": "tool", "tool_call_id": "call_1", "content": "total: 42.50"})
                );
            }
        }
        assert_eq!(mock.pending(), 0);
    }
}

#[tokio::test]
async fn tool_errors_are_marked() {
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        let mock = MockModel::start().unwrap();
        mock.push(Turn::new().text("ok").into());
        let p = provider(&mock, wire, Streaming::On);
        let conv = vec![
            Message::user_text("go"),
            Message::assistant(vec![Content::ToolUse {
                id: "t9".into(),
                wire_id: None,
                name: "exec".into(),
                input: json!({"cmd": "cat ~/.ssh/id_rsa"}),
            }]),
            Message {
                role: Role::User,
                content: vec![
                    Content::ToolResult {
                        tool_use_id: "t9".into(),
                        content: "denied by rule org/no-ssh".into(),
                        status: ToolResultStatus::Error,
                    },
                    Content::Text("Please continue.".into()),
                ],
            },
        ];
        p.chat(&request(conv), &mut |_| {}).await.unwrap();
        let body = mock.requests()[0].json();
        let msgs = body["messages"].as_array().unwrap().clone();
        match wire {
            Wire::Anthropic => {
                assert_eq!(msgs[2]["content"][0]["is_error"], true);
                assert_eq!(
                    msgs[2]["content"][1],
                    json!({"type": "text", "text": "Please continue."})
                );
            }
            Wire::OpenAi => {
                // tool message directly after the assistant's call, user text after it
                assert_eq!(msgs[3]["role"], "tool");
                assert!(msgs[3]["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("ERROR: denied by rule org/no-ssh"));
                assert_eq!(
                    msgs[4],
                    json!({"role": "user", "content": "Please continue."})
                );
            }
        }
    }
}

#[tokio::test]
async fn describe_and_conversation_json_round_trip() {
    let mock = MockModel::start().unwrap();
    let p = provider(&mock, Wire::OpenAi, Streaming::On);
    let info = p.describe();
    assert_eq!(info.kind, ProviderKind::OpenAi);
    assert_eq!(info.model, "gpt-test");
    assert_eq!(info.base_url, mock.base_url());

    let conv = vec![
        Message::user_text("hi"),
        Message::assistant(vec![
            Content::Text("x".into()),
            Content::ToolUse {
                id: "a".into(),
                wire_id: Some("toolu_1".into()),
                name: "b".into(),
                input: json!({"k": [1]}),
            },
        ]),
        Message {
            role: Role::User,
            content: vec![Content::ToolResult {
                tool_use_id: "a".into(),
                content: "r".into(),
                status: ToolResultStatus::Error,
            }],
        },
    ];
    let text = serde_json::to_string(&conv).unwrap();
    assert!(text.contains(r#"{"type":"text","text":"x"}"#), "{text}");
    let back: Vec<Message> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, conv);
}

#[tokio::test]
async fn secrets_do_not_print() {
    let s = Secret::new(KEY);
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    let mut cfg = ProviderConfig::from_spec("anthropic:m").unwrap();
    cfg.api_key = Some(s);
    assert!(!format!("{cfg:?}").contains(KEY));
}

#[tokio::test]
async fn parallel_tool_calls_keep_their_order() {
    for (wire, streaming) in both() {
        let mock = MockModel::start().unwrap();
        let a = json!({"path": "a.txt"});
        let b = json!({"path": "b/ü.txt", "limit": 20});
        mock.push(
            Turn::new()
                .text("Reading both.")
                .tool_use("call_a", "read_file", a.clone())
                .tool_use("call_b", "read_file", b.clone())
                .into(),
        );
        let p = provider(&mock, wire, streaming);
        let r = p
            .chat(&request(vec![Message::user_text("go")]), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(r.stop, StopReason::ToolUse);
        assert_eq!(
            r.content,
            vec![
                Content::Text("Reading both.".into()),
                Content::ToolUse {
                    id: String::new(),
                    wire_id: Some("call_a".into()),
                    name: "read_file".into(),
                    input: a.clone()
                },
                Content::ToolUse {
                    id: String::new(),
                    wire_id: Some("call_b".into()),
                    name: "read_file".into(),
                    input: b.clone()
                },
            ],
            "{wire:?} {streaming:?}"
        );
    }
}

/// The end-to-end tests run `stele` as a child process against the mock, from plain (non-async)
/// tests: the mock must serve without the caller running any async runtime.
#[test]
fn mock_serves_plain_http_clients() {
    use std::io::{Read, Write};
    let mock = MockModel::start().unwrap();
    mock.push(Turn::new().text("hi").into());
    let body =
        r#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let addr = mock.base_url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("text/event-stream"));
    assert!(out.contains("event: message_stop"));
    assert_eq!(mock.requests()[0].text(), body);
}
