//! Classifying error responses and in-stream error events into [`ProviderError`]s.

use super::error::{clip, ProviderError};
use super::secret::Secret;

/// The HTTP status an error type names, for errors that arrive inside a stream.
pub(crate) fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "authentication_error" | "invalid_api_key" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "rate_limit_exceeded" => 429,
        "overloaded_error" => 529,
        "invalid_request_error" => 400,
        _ => 500,
    }
}

/// Classify an error response from its status and body. Both wire formats put a JSON object
/// under `error` with `message` and `type` (OpenAI also `code`); some servers put a string there.
pub(crate) fn classify(
    status: u16,
    body: &[u8],
    retry_after: Option<std::time::Duration>,
    key: Option<&Secret>,
) -> ProviderError {
    let text = String::from_utf8_lossy(body);
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        err.and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut message = match err {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => field("message"),
        None => String::new(),
    };
    if message.is_empty() {
        message = if text.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            text.to_string()
        };
    }
    let message = match key {
        Some(k) => k.redact(&clip(&message, 500)),
        None => clip(&message, 500),
    };
    classify_parts(status, &field("type"), &field("code"), message, retry_after)
}

/// Classify from parts already extracted (HTTP responses and in-stream error events).
pub(crate) fn classify_parts(
    status: u16,
    kind: &str,
    code: &str,
    message: String,
    retry_after: Option<std::time::Duration>,
) -> ProviderError {
    if matches!(status, 400 | 413) && is_context_overflow(kind, code, &message) {
        return ProviderError::ContextOverflow { message };
    }
    match status {
        401 | 403 => ProviderError::Auth { status, message },
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        // 408 request timeout and 409 conflict are transient by definition.
        408 | 409 | 500..=599 => ProviderError::Server { status, message },
        _ => ProviderError::Rejected { status, message },
    }
}

fn is_context_overflow(kind: &str, code: &str, message: &str) -> bool {
    if code == "context_length_exceeded" || kind == "context_length_exceeded" {
        return true;
    }
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context length",
        "context_length",
        "context window",
        "maximum context",
        "too many tokens",
        "input is too long",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn classification() {
        let c = |status, body: &str| classify(status, body.as_bytes(), None, None);
        assert!(matches!(
            c(
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 201000 tokens > 200000 maximum"}}"#
            ),
            ProviderError::ContextOverflow { .. }
        ));
        assert!(matches!(
            c(
                400,
                r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#
            ),
            ProviderError::ContextOverflow { .. }
        ));
        assert!(matches!(
            c(
                400,
                r#"{"error":{"message":"tools[0]: bad name","type":"invalid_request_error"}}"#
            ),
            ProviderError::Rejected { status: 400, .. }
        ));
        // Ollama puts a plain string under `error`.
        match c(404, r#"{"error":"model \"llama9\" not found"}"#) {
            ProviderError::Rejected {
                status: 404,
                message,
            } => assert_eq!(message, "model \"llama9\" not found"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c(403, ""),
            ProviderError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            c(529, "<html>overloaded</html>"),
            ProviderError::Server { status: 529, .. }
        ));
        let key = Secret::new("sk-abcdefghijklmnop");
        match classify(
            401,
            br#"{"error":{"message":"bad key sk-abcdefghijklmnop"}}"#,
            None,
            Some(&key),
        ) {
            ProviderError::Auth { message, .. } => assert_eq!(message, "bad key ***"),
            other => panic!("{other:?}"),
        }
    }
}
