//! Large values stored once.
//!
//! A long tool input (a 50 MB file the model writes) or a long text would otherwise be stored
//! in every body that carries it: the model's answer, the raw response, the tool call's
//! arguments, and every later conversation and request body. Instead, a value of at least
//! [`LARGE_BLOCK`](crate::provider::LARGE_BLOCK) bytes is sealed once, as a payload of the
//! `model.response` entry that brought it; every other body that contains it is stored
//! *spliced* — its other bytes kept, the value replaced by a reference to that commitment —
//! and its entry lists the commitment again as a shared payload (stored once, redacted once).
//!
//! A spliced body has media type [`SPLICED_MEDIA`]:
//!
//! ```json
//! {"stele_spliced": 1, "media": "application/json",
//!  "parts": ["{\"path\":\"big.csv\",\"content\":", {"payload": "sha256s:…", "form": "json-string"}, "}"]}
//! ```
//!
//! Its bytes are the parts in order: a string part as its UTF-8 bytes, a reference as the
//! referenced payload's body, either as is (`raw`) or as the inside of a JSON string
//! (`json-string`: escaped as JSON, without the quotes). [`resolve`] rebuilds the exact bytes.

use std::sync::Arc;

use memchr::memmem;
use ring::rand::SystemRandom;
use serde_json::{json, Value};
use stele_audit::payload::{seal, SealedPayload};
use stele_audit::{AuditError, Disclosure, PayloadInput, PayloadRef};

/// Media type of a spliced body.
pub const SPLICED_MEDIA: &str = "application/vnd.stele.spliced+json";

/// How a referenced value appears inside a spliced body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Its bytes as they are.
    Raw,
    /// Escaped as the inside of a JSON string.
    JsonString,
}

impl Form {
    fn as_str(self) -> &'static str {
        match self {
            Form::Raw => "raw",
            Form::JsonString => "json-string",
        }
    }
}

/// `bytes` as the inside of a JSON string, if it is UTF-8.
fn json_escaped(bytes: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(bytes).ok()?;
    let quoted = serde_json::to_string(s).ok()?;
    Some(quoted.as_bytes()[1..quoted.len() - 1].to_vec())
}

struct Known {
    /// Only UTF-8 values are spliced: a match then always falls on character boundaries.
    utf8: bool,
    raw: Arc<Vec<u8>>,
    escaped: Option<Vec<u8>>,
    reference: PayloadRef,
}

/// The large values of a session already in the log, and how to store bodies that hold them.
pub struct LargeValues {
    known: Vec<Known>,
    rng: SystemRandom,
}

impl Default for LargeValues {
    fn default() -> Self {
        Self {
            known: Vec::new(),
            rng: SystemRandom::new(),
        }
    }
}

impl std::fmt::Debug for LargeValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeValues")
            .field("known", &self.known.len())
            .finish()
    }
}

/// A body as it is to be stored: a payload (spliced or whole), or nothing when the body *is*
/// a known value, plus the earlier commitments it refers to.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The payload to commit, if any.
    pub payload: Option<PayloadInput>,
    /// Commitments of earlier entries it refers to (list them as shared payloads).
    pub refers: Vec<PayloadRef>,
}

impl LargeValues {
    /// Seal `body` as a new large value (to be committed by the entry being written) and
    /// remember it.
    pub fn seal(
        &mut self,
        role: &str,
        media: &str,
        body: Vec<u8>,
    ) -> Result<SealedPayload, AuditError> {
        let sealed = seal(
            &self.rng,
            PayloadInput {
                role: role.into(),
                media: media.into(),
                body,
                disclosure: Disclosure::CommitmentOnly,
            },
        )?;
        self.remember(sealed.body.clone(), sealed.reference.clone());
        Ok(sealed)
    }

    /// Remember a value an earlier entry committed (a resumed session's).
    pub fn remember(&mut self, body: Vec<u8>, reference: PayloadRef) {
        if self
            .known
            .iter()
            .any(|k| k.reference.commit == reference.commit)
        {
            return;
        }
        let escaped = json_escaped(&body).filter(|e| *e != body);
        self.known.push(Known {
            utf8: std::str::from_utf8(&body).is_ok(),
            raw: Arc::new(body),
            escaped,
            reference,
        });
    }

    /// Whether any value is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// How to store `body` (role and media as for a [`PayloadInput`]): whole when it holds no
    /// known value; as a reference alone when it is one; else spliced.
    pub fn store(&self, role: &str, media: &str, body: Vec<u8>) -> Stored {
        let whole = |body: Vec<u8>| Stored {
            payload: Some(PayloadInput {
                role: role.into(),
                media: media.into(),
                body,
                disclosure: Disclosure::CommitmentOnly,
            }),
            refers: Vec::new(),
        };
        if self.known.is_empty() {
            return whole(body);
        }
        if let Some(k) = self.known.iter().find(|k| *k.raw == body) {
            let mut r = k.reference.clone();
            r.role = role.into();
            return Stored {
                payload: None,
                refers: vec![r],
            };
        }
        let hits = self.find(&body);
        if hits.is_empty() || std::str::from_utf8(&body).is_err() {
            return whole(body);
        }
        let mut parts = Vec::new();
        let mut refers: Vec<PayloadRef> = Vec::new();
        let mut at = 0;
        for (start, end, k, form) in hits {
            if start > at {
                parts.push(Value::String(
                    String::from_utf8_lossy(&body[at..start]).into_owned(),
                ));
            }
            let r = &self.known[k].reference;
            parts.push(json!({"payload": r.commit, "form": form.as_str()}));
            if !refers.iter().any(|x| x.commit == r.commit) {
                refers.push(r.clone());
            }
            at = end;
        }
        if at < body.len() {
            parts.push(Value::String(
                String::from_utf8_lossy(&body[at..]).into_owned(),
            ));
        }
        let doc = json!({"stele_spliced": 1, "media": media, "parts": parts});
        let Ok(bytes) = serde_json::to_vec(&doc) else {
            return whole(body);
        };
        Stored {
            payload: Some(PayloadInput {
                role: role.into(),
                media: SPLICED_MEDIA.into(),
                body: bytes,
                disclosure: Disclosure::CommitmentOnly,
            }),
            refers,
        }
    }

    /// Non-overlapping occurrences of known values in `body`, leftmost first (the longest
    /// where two start together): `(start, end, value index, form)`.
    fn find(&self, body: &[u8]) -> Vec<(usize, usize, usize, Form)> {
        let mut all = Vec::new();
        for (i, k) in self.known.iter().enumerate().filter(|(_, k)| k.utf8) {
            let forms = std::iter::once((k.raw.as_slice(), Form::Raw))
                .chain(k.escaped.as_deref().map(|e| (e, Form::JsonString)));
            for (needle, form) in forms {
                if needle.is_empty() || needle.len() > body.len() {
                    continue;
                }
                let finder = memmem::Finder::new(needle);
                let mut from = 0;
                while let Some(p) = finder.find(&body[from..]) {
                    let start = from + p;
                    all.push((start, start + needle.len(), i, form));
                    from = start + needle.len();
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out: Vec<(usize, usize, usize, Form)> = Vec::new();
        for h in all {
            if out.last().is_none_or(|l| h.0 >= l.1) {
                out.push(h);
            }
        }
        out
    }
}

/// Why a spliced body could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The body is not a spliced document.
    #[error("spliced body: {0}")]
    Format(String),
    /// A payload it refers to is missing or redacted.
    #[error("spliced body refers to payload {0}, which is not available")]
    Missing(String),
    /// Reading a payload failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Reads a payload's body by its commitment text (`None`: missing or redacted).
pub type Fetch<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, AuditError> + 'a;

/// The bytes of a stored body: `body` itself, or for a [`SPLICED_MEDIA`] body the bytes it
/// stands for, with referenced payloads read by `fetch` (commitment text → body). `seen` is
/// told each referenced value (to remember it when a session resumes).
pub fn resolve(
    media: &str,
    body: Vec<u8>,
    fetch: &mut Fetch<'_>,
    seen: &mut dyn FnMut(&str, &[u8]),
) -> Result<Vec<u8>, ResolveError> {
    if media != SPLICED_MEDIA {
        return Ok(body);
    }
    let bad = |why: &str| ResolveError::Format(why.to_string());
    let doc: Value = serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))?;
    if doc.get("stele_spliced").and_then(Value::as_u64) != Some(1) {
        return Err(bad("not version 1"));
    }
    let parts = doc
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no parts"))?;
    let mut out = Vec::new();
    for p in parts {
        match p {
            Value::String(s) => out.extend_from_slice(s.as_bytes()),
            Value::Object(o) => {
                let commit = o
                    .get("payload")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a reference without payload"))?;
                let value = fetch(commit)?.ok_or_else(|| ResolveError::Missing(commit.into()))?;
                seen(commit, &value);
                match o.get("form").and_then(Value::as_str) {
                    Some("raw") => out.extend_from_slice(&value),
                    Some("json-string") => out.extend_from_slice(
                        &json_escaped(&value)
                            .ok_or_else(|| bad("a json-string value is not UTF-8"))?,
                    ),
                    _ => return Err(bad("unknown form")),
                }
            }
            _ => return Err(bad("a part is neither text nor a reference")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(values: &LargeValues, sealed: &[SealedPayload], body: &[u8]) -> Stored {
        let stored = values.store("conversation", "application/json", body.to_vec());
        let Some(p) = &stored.payload else {
            return stored;
        };
        let mut fetch = |c: &str| {
            Ok(sealed
                .iter()
                .find(|s| s.reference.commit == c)
                .map(|s| s.body.clone()))
        };
        let back = resolve(&p.media, p.body.clone(), &mut fetch, &mut |_, _| {}).unwrap();
        assert_eq!(back, body, "rebuilt byte for byte");
        stored
    }

    #[test]
    fn a_large_value_is_stored_once_and_rebuilt_exactly() {
        let mut v = LargeValues::default();
        let input = json!({"path": "big.csv", "content": "a,\"b\"\n".repeat(20_000)});
        let raw = input.to_string().into_bytes();
        let sealed = v
            .seal("tool_input", "application/json", raw.clone())
            .unwrap();
        // Anthropic-style body (the input as an object) and OpenAI-style (as a JSON string).
        let anthropic = json!({"messages": [{"content": [{"type": "tool_use", "input": input}]}]});
        let openai =
            json!({"messages": [{"tool_calls": [{"function": {"arguments": input.to_string()}}]}]});
        for body in [anthropic.to_string(), openai.to_string()] {
            let s = round_trip(&v, std::slice::from_ref(&sealed), body.as_bytes());
            let p = s.payload.unwrap();
            assert_eq!(p.media, SPLICED_MEDIA);
            assert!(p.body.len() < 300, "{} bytes", p.body.len());
            assert_eq!(s.refers.len(), 1);
            assert_eq!(s.refers[0].commit, sealed.reference.commit);
        }
        // The arguments payload is the value itself: only a reference, renamed.
        let s = v.store("args", "application/json", raw.clone());
        assert!(s.payload.is_none());
        assert_eq!(s.refers[0].role, "args");
        // A body without it is stored whole.
        let s = round_trip(&v, std::slice::from_ref(&sealed), b"{\"small\":1}");
        assert_eq!(s.payload.unwrap().media, "application/json");
        assert!(s.refers.is_empty());
        // Twice in one body: two references, one shared payload.
        let twice = format!("[{},{}]", input, input);
        let s = round_trip(&v, &[sealed], twice.as_bytes());
        assert_eq!(s.refers.len(), 1);
    }

    #[test]
    fn a_missing_reference_is_an_error() {
        let doc = json!({"stele_spliced": 1, "media": "x", "parts": ["a", {"payload": "sha256s:AAAA", "form": "raw"}]});
        let e = resolve(
            SPLICED_MEDIA,
            doc.to_string().into_bytes(),
            &mut |_| Ok(None),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e, ResolveError::Missing(_)), "{e}");
    }
}
