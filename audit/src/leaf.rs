//! The leaf: one event as RFC 8785 (JCS) canonical JSON, at most 65,535 bytes.
//!
//! Fields are declared in sorted key order and hold only strings, integers
//! (< 2^53), booleans, arrays and objects with ASCII keys, so compact serde
//! JSON of [`Leaf`] is byte-identical to its JCS form (a property test checks
//! this against `serde_jcs`). Verification parses the stored bytes, writes
//! them back and compares: anything not canonical is rejected.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::event::{Actor, DecisionRecord, EventKind, Outcome, PayloadRef, Refs, Target};
use crate::merkle::Hash;

/// Leaf format version.
pub const LEAF_VERSION: u32 = 1;
/// Largest leaf in bytes (tlog-tiles entry bundles use 16-bit lengths).
pub const MAX_LEAF_BYTES: usize = 65_535;
/// Largest integer allowed anywhere in a leaf (I-JSON safe integers).
pub const MAX_SAFE_INT: u64 = (1 << 53) - 1;

/// A leaf's place in its session's sub-chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLink {
    /// Session id.
    pub id: String,
    /// Position in the session, from 0 (the `session.start`).
    pub n: u64,
    /// Base64 leaf hash of the session's previous entry (absent for n = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// One log entry, exactly as hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaf {
    /// Who.
    pub actor: Actor,
    /// Random id of the writer instance (time is non-decreasing within one boot).
    pub boot: String,
    /// Kind-specific fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// Event kind.
    pub kind: EventKind,
    /// Log origin (equals the checkpoint origin).
    pub log: String,
    /// Outcome of an action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Payload commitments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<PayloadRef>,
    /// Base64 leaf hash of entry `seq - 1` (absent only in genesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// Reference to an intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Refs>,
    /// Index of this leaf in the log.
    pub seq: u64,
    /// Session sub-chain link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionLink>,
    /// What was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// UTC time, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub ts: String,
    /// Format version.
    pub v: u32,
}

/// Why bytes are not an acceptable leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// Not valid JSON of the leaf schema.
    #[error("not a valid leaf: {0}")]
    Schema(String),
    /// Valid, but not in canonical form.
    #[error("leaf is not in RFC 8785 canonical form")]
    NotCanonical,
    /// Too large.
    #[error("leaf is {0} bytes; the limit is 65535")]
    TooLarge(usize),
    /// Contains a float, an unsafe integer or a non-ASCII object key.
    #[error("leaf data not allowed: {0}")]
    Data(String),
    /// Valid JSON of the schema, but not the one spelling the format
    /// allows (`null` for an absent field, `[]` for an empty list that is
    /// written by leaving the field out, a missing `decision.policies`).
    #[error("leaf is not in the format's spelling: {0}")]
    Spelling(String),
}

impl Leaf {
    /// Encode canonically, checking size and data restrictions.
    pub fn encode(&self) -> Result<Vec<u8>, LeafError> {
        self.check_types()?;
        let mut sorted;
        let leaf = match &self.data {
            // Most data is built with its keys in order already: encode it
            // as it is, without copying the whole leaf to sort it.
            Some(d) if keys_sorted(d) => {
                check_data(d)?;
                self
            }
            Some(d) => {
                check_data(d)?;
                sorted = self.clone();
                if let Some(d) = sorted.data.as_mut() {
                    sort_keys(d);
                }
                &sorted
            }
            None => self,
        };
        let bytes = serde_json::to_vec(leaf).map_err(|e| LeafError::Schema(e.to_string()))?;
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(LeafError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Parse stored bytes and check they are exactly the canonical
    /// encoding, in the one spelling the format allows: what
    /// [`Leaf::encode`] writes for the parsed value, byte for byte.
    pub fn parse_canonical(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(LeafError::TooLarge(bytes.len()));
        }
        crate::canonical::check_safe(bytes).map_err(|e| match e.what {
            crate::canonical::UNSAFE_INTEGER => LeafError::Data(e.to_string()),
            _ => LeafError::NotCanonical,
        })?;
        let leaf: Leaf =
            serde_json::from_slice(bytes).map_err(|e| LeafError::Schema(e.to_string()))?;
        // The scanner accepts only the format's one spelling (a property
        // test holds it to that); what it declines is checked by encoding
        // the value again, which costs several times more.
        if crate::leaf_view::LeafView::scan(bytes).is_some() {
            return Ok(leaf);
        }
        if leaf.encode()? != bytes {
            return Err(LeafError::Spelling(
                "a field is null or an empty list where the format leaves it out, or decision.policies is missing"
                    .into(),
            ));
        }
        Ok(leaf)
    }

    /// The type rules serde's types do not express: `data` is an object,
    /// a payload's plain digest is 64 lowercase hex digits, integers stay
    /// below 2^53.
    fn check_types(&self) -> Result<(), LeafError> {
        if self.data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(LeafError::Data("data must be an object".into()));
        }
        for p in &self.payload {
            if p.sha256
                .as_deref()
                .is_some_and(|h| !crate::leaf_view::is_sha256_hex(h))
            {
                return Err(LeafError::Data(
                    "payload sha256 must be 64 lowercase hex digits".into(),
                ));
            }
        }
        let mut ints = vec![self.seq];
        ints.extend(self.session.as_ref().map(|s| s.n));
        ints.extend(self.refs.as_ref().map(|r| r.intent_seq));
        ints.extend(self.payload.iter().map(|p| p.size));
        if let Some(o) = &self.outcome {
            ints.extend(
                [
                    o.bytes_in,
                    o.bytes_out,
                    o.duration_ms,
                    o.tokens_in,
                    o.tokens_out,
                ]
                .into_iter()
                .flatten(),
            );
            ints.extend(o.code.map(i64::unsigned_abs));
        }
        if let Some(n) = ints.into_iter().find(|n| *n > MAX_SAFE_INT) {
            return Err(LeafError::Data(format!(
                "integer {n} (only integers below 2^53)"
            )));
        }
        Ok(())
    }

    /// Same as [`Leaf::parse_canonical`]; `_scratch` is unused and the
    /// function will be removed once callers have moved.
    pub fn decode_canonical(bytes: &[u8], _scratch: &mut Vec<u8>) -> Result<Self, LeafError> {
        Self::parse_canonical(bytes)
    }
}

/// Base64 text of a hash, as used inside leaves.
pub fn hash_b64(h: &Hash) -> String {
    B64.encode(h)
}

/// Parse a base64 hash from a leaf field.
pub fn parse_hash_b64(s: &str) -> Option<Hash> {
    // Decoded on the stack: verification calls this for every leaf. A text
    // longer than 64 characters decodes to more than 32 bytes anyway.
    let mut buf = [0u8; 48];
    if s.len() > 64 {
        return None;
    }
    let n = B64.decode_slice(s, &mut buf).ok()?;
    buf.get(..n)?.try_into().ok()
}

/// Sort object keys recursively. Keys are ASCII (checked), so byte order is
/// the UTF-16 order RFC 8785 asks for.
/// Whether every object in `v` has its keys in the order [`sort_keys`]
/// would give them.
fn keys_sorted(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Array(a) => a.iter().all(keys_sorted),
        Value::Object(o) => {
            o.keys().zip(o.keys().skip(1)).all(|(a, b)| a < b) && o.values().all(keys_sorted)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
    }
}

fn sort_keys(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Array(a) => a.iter_mut().for_each(sort_keys),
        Value::Object(o) => {
            let mut items: Vec<(String, Value)> = std::mem::take(o).into_iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in items {
                sort_keys(&mut val);
                o.insert(k, val);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Reject floats, integers beyond 2^53 and non-ASCII keys: they have no single
/// canonical spelling that every JSON implementation agrees on.
fn check_data(v: &serde_json::Value) -> Result<(), LeafError> {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(n) => {
            let ok = n.as_u64().map(|u| u <= MAX_SAFE_INT).unwrap_or(false)
                || n.as_i64()
                    .map(|i| i.unsigned_abs() <= MAX_SAFE_INT)
                    .unwrap_or(false);
            if ok {
                Ok(())
            } else {
                Err(LeafError::Data(format!(
                    "number {n} (only integers below 2^53)"
                )))
            }
        }
        Value::Array(a) => a.iter().try_for_each(check_data),
        Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            if !k.is_ascii() {
                return Err(LeafError::Data(format!("object key {k:?} is not ASCII")));
            }
            check_data(v)
        }),
    }
}

/// Current UTC time in the leaf format.
pub fn now_ts() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}
