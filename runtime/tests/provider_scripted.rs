#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The scripted provider: replay, expectations, resume, and errors that point into the file.

use serde_json::json;
use stele_runtime::provider::{
    ChatRequest, Content, Message, ProviderConfig, ProviderError, ProviderKind, Role, StopReason,
    StreamEvent, ToolResultStatus,
};

const SCRIPT: &str = r#"[
  {"expect_user_contains": "receipts",
   "content": [{"type": "text", "text": "Reading the receipts."},
               {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "receipts/a.txt"}}]},
  {"expect_tool_result_contains": "42.50",
   "content": [{"type": "tool_use", "name": "exec", "input": {"cmd": ["cat", "/root/.ssh/id_rsa"]}}]},
  {"expect_tool_result_status": "error",
   "usage": {"input_tokens": 7, "output_tokens": 3},
   "content": [{"type": "text", "text": "That was denied; the total is 42.50."}]}
]"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn req(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "x".into(),
        system: String::new(),
        messages,
        tools: vec![],
        max_tokens: 10,
    }
}

fn result(id: &str, content: &str, status: ToolResultStatus) -> Message {
    Message {
        role: Role::User,
        content: vec![Content::ToolResult {
            tool_use_id: id.into(),
            content: content.into(),
            status,
        }],
    }
}

#[tokio::test]
async fn replays_turns_in_order_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "demo.json", SCRIPT);
    let p = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .unwrap();
    let info = p.describe();
    assert_eq!(info.kind, ProviderKind::Scripted);
    assert_eq!(info.base_url, path.display().to_string());

    let mut conv = vec![Message::user_text("Summarise the receipts")];
    let mut events = Vec::new();
    let r1 = p
        .chat(&req(conv.clone()), &mut |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(r1.stop, StopReason::ToolUse);
    assert_eq!(r1.text(), "Reading the receipts.");
    assert_eq!(
        r1.content[1],
        Content::ToolUse {
            id: String::new(),
            wire_id: Some("t1".into()),
            name: "read_file".into(),
            input: json!({"path": "receipts/a.txt"})
        },
        "the script's id is the provider's id; stele assigns its own"
    );
    assert!(events.contains(&StreamEvent::TextDelta("Reading the receipts.".into())));
    assert!(events.contains(&StreamEvent::ToolUseStart {
        id: "t1".into(),
        name: "read_file".into()
    }));
    // The "bodies" are the neutral request and the scripted turn.
    let sent: ChatRequest = serde_json::from_slice(&r1.request_body).unwrap();
    assert_eq!(sent, req(conv.clone()));
    assert!(String::from_utf8_lossy(&r1.response_body).contains("receipts/a.txt"));

    conv.push(Message::assistant(r1.content));
    conv.push(result("t1", "total: 42.50 EUR", ToolResultStatus::Ok));
    let r2 = p.chat(&req(conv.clone()), &mut |_| {}).await.unwrap();
    let (id, name) = r2
        .content
        .iter()
        .find_map(|c| match c {
            Content::ToolUse { wire_id, name, .. } => Some((wire_id.as_deref().unwrap(), name)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (id, name.as_str()),
        ("scripted-2-1", "exec"),
        "default ids are stable"
    );

    conv.push(Message::assistant(r2.content.clone()));
    conv.push(result(
        id,
        "denied by org/no-secrets",
        ToolResultStatus::Error,
    ));
    // A fresh provider (as after a crash) continues from the conversation, not from memory.
    let resumed = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .unwrap();
    let r3 = resumed.chat(&req(conv.clone()), &mut |_| {}).await.unwrap();
    assert_eq!(r3.stop, StopReason::EndTurn);
    assert_eq!(r3.text(), "That was denied; the total is 42.50.");
    assert_eq!((r3.usage.input_tokens, r3.usage.output_tokens), (7, 3));

    conv.push(Message::assistant(r3.content));
    conv.push(Message::user_text("more?"));
    match p.chat(&req(conv), &mut |_| {}).await {
        Err(ProviderError::Script { detail }) => assert!(
            detail.contains("exhausted") && detail.contains("turn 4"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unmet_expectation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "demo.json", SCRIPT);
    let p = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .unwrap();
    let conv = vec![
        Message::user_text("Summarise the receipts"),
        Message::assistant(vec![Content::Text("x".into())]),
        result("t1", "file not found", ToolResultStatus::Error),
    ];
    match p.chat(&req(conv), &mut |_| {}).await {
        Err(ProviderError::Script { detail }) => {
            assert!(
                detail.contains("turn 2")
                    && detail.contains("42.50")
                    && detail.contains("demo.json"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    match p
        .chat(&req(vec![Message::user_text("hello")]), &mut |_| {})
        .await
    {
        Err(ProviderError::Script { detail }) => assert!(
            detail.contains("turn 1") && detail.contains("receipts"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_script_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // Line 3 has a missing comma after the text block.
    let bad = "[\n  {\"content\": [\n    {\"type\": \"text\", \"text\": \"hi\"} {\"type\": \"text\"}\n  ]}\n]\n";
    let path = write(&dir, "bad.json", bad);
    let err = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.json") && msg.contains("line 3") && msg.contains("column"),
        "{msg}"
    );

    // A misspelt field is caught, with its position.
    let typo = "[{\"content\": [], \"expect_tool_result_contain\": \"x\"}]";
    let path = write(&dir, "typo.json", typo);
    let msg = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("typo.json")
            && msg.contains("line 1")
            && msg.contains("expect_tool_result_contain"),
        "{msg}"
    );

    let path = write(&dir, "empty.json", "[]");
    let msg = ProviderConfig::from_spec(&format!("scripted:{}", path.display()))
        .unwrap()
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("no turns"), "{msg}");

    let missing = dir.path().join("missing.json");
    let msg = ProviderConfig::from_spec(&format!("scripted:{}", missing.display()))
        .unwrap()
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("missing.json"), "{msg}");
}

#[test]
fn specs() {
    for bad in ["claude", "anthropic:", "gemini:pro"] {
        assert!(
            matches!(
                ProviderConfig::from_spec(bad),
                Err(ProviderError::Config { .. })
            ),
            "{bad}"
        );
    }
    let c = ProviderConfig::from_spec("vllm:Qwen/Qwen2.5-7B").unwrap();
    assert_eq!(
        (c.kind, c.model.as_str(), c.base_url.as_str()),
        (
            ProviderKind::OpenAi,
            "Qwen/Qwen2.5-7B",
            "http://127.0.0.1:8000"
        )
    );
    let c = ProviderConfig::from_spec("anthropic:claude-sonnet-4-5").unwrap();
    assert_eq!(c.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
}
