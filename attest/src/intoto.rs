//! in-toto Statement v1 (<https://github.com/in-toto/attestation>, spec v1):
//! subjects with SHA-256 digests, a predicate type and a predicate, carried
//! in a DSSE envelope of type `application/vnd.in-toto+json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dsse::Envelope;
use crate::error::AttestError;
use crate::note::NoteVerifier;
use crate::signer::Signer;

/// `_type` of a v1 statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A subject: a name and its digests (`sha256` → lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Name (for exports: the bundle-relative path).
    pub name: String,
    /// Digest algorithm → hex digest.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject with one SHA-256 digest.
    pub fn sha256(name: impl Into<String>, digest: &[u8; 32]) -> Self {
        Self {
            name: name.into(),
            digest: BTreeMap::from([("sha256".to_string(), hex::encode(digest))]),
        }
    }

    /// The SHA-256 digest, when present and well formed.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(self.digest.get("sha256")?)
            .ok()?
            .try_into()
            .ok()
    }
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// URI naming the predicate schema.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The claim.
    pub predicate: serde_json::Value,
}

impl Statement {
    /// A statement about `subject`.
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Self {
            type_: STATEMENT_TYPE.into(),
            subject,
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    /// Sign as a DSSE envelope.
    pub fn sign(&self, signer: &dyn Signer) -> Result<Envelope, AttestError> {
        let body = serde_json::to_vec(self).map_err(|e| AttestError::Envelope(e.to_string()))?;
        Envelope::sign(PAYLOAD_TYPE, &body, signer)
    }

    /// Verify an envelope with `verifier` and parse the statement it carries,
    /// requiring `predicate_type`.
    pub fn open(
        env: &Envelope,
        verifier: &NoteVerifier,
        predicate_type: &str,
    ) -> Result<Self, AttestError> {
        let body = env.verify(PAYLOAD_TYPE, verifier)?;
        let st: Statement = serde_json::from_slice(&body)
            .map_err(|e| AttestError::Envelope(format!("not an in-toto statement: {e}")))?;
        if st.type_ != STATEMENT_TYPE {
            return Err(AttestError::Envelope(format!(
                "statement _type is {:?}",
                st.type_
            )));
        }
        if st.predicate_type != predicate_type {
            return Err(AttestError::Envelope(format!(
                "predicateType is {:?}, expected {predicate_type:?}",
                st.predicate_type
            )));
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Ed25519Signer;

    #[test]
    fn round_trip_and_field_names() {
        let k = Ed25519Signer::from_seed("export.test", &[5; 32]).unwrap();
        let st = Statement::new(
            vec![Subject::sha256("a", &[1; 32])],
            "https://x/p",
            serde_json::json!({"k": 1}),
        );
        let env = st.sign(&k).unwrap();
        assert_eq!(env.payload_type, PAYLOAD_TYPE);
        let json: serde_json::Value = serde_json::from_str(&env.to_json().unwrap()).unwrap();
        assert!(json.get("payloadType").is_some() && json.get("signatures").is_some());
        let back = Statement::open(&env, &k.verifier(), "https://x/p").unwrap();
        assert_eq!(back, st);
        assert_eq!(back.subject[0].sha256_bytes(), Some([1; 32]));
        assert!(Statement::open(&env, &k.verifier(), "https://x/q").is_err());
    }
}
