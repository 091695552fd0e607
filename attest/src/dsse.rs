//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>, protocol v1)
//! signed with Ed25519.
//!
//! The signature covers the pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`
//! (lengths in ASCII decimal), never the JSON around it, so the envelope can be
//! re-serialized freely without breaking the signature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::AttestError;
use crate::note::NoteVerifier;
use crate::signer::Signer;

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    /// Hint naming the key: the hex signed-note key id of the signing key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope (JSON field names as in the DSSE specification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the signed body.
    pub payload: String,
    /// Media type of the body.
    pub payload_type: String,
    /// Signatures over `PAE(payloadType, payload)`.
    pub signatures: Vec<DsseSignature>,
}

/// The pre-authentication encoding of `payload_type` and `payload`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Sign `payload` of media type `payload_type` with one key.
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        signer: &dyn Signer,
    ) -> Result<Self, AttestError> {
        let sig = signer.sign(&pae(payload_type, payload))?;
        Ok(Self {
            payload: B64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![DsseSignature {
                keyid: hex::encode(signer.key_id()),
                sig: B64.encode(sig),
            }],
        })
    }

    /// Parse the JSON form.
    pub fn from_json(text: &[u8]) -> Result<Self, AttestError> {
        serde_json::from_slice(text)
            .map_err(|e| AttestError::Envelope(format!("not a DSSE envelope: {e}")))
    }

    /// The compact JSON form (one line, as used in `.intoto.jsonl` files).
    pub fn to_json(&self) -> Result<String, AttestError> {
        serde_json::to_string(self).map_err(|e| AttestError::Envelope(e.to_string()))
    }

    /// Check that `verifier` signed this envelope, that the payload type is
    /// `want_type`, and return the decoded payload.
    ///
    /// A signature carrying the verifier's key id that fails is an error (not
    /// skipped), so a damaged signature is reported as such.
    pub fn verify(&self, want_type: &str, verifier: &NoteVerifier) -> Result<Vec<u8>, AttestError> {
        if self.payload_type != want_type {
            return Err(AttestError::Envelope(format!(
                "payload type is {:?}, expected {want_type:?}",
                self.payload_type
            )));
        }
        let payload = B64
            .decode(&self.payload)
            .map_err(|_| AttestError::Envelope("payload is not base64".into()))?;
        let msg = pae(&self.payload_type, &payload);
        let want_id = hex::encode(verifier.key_id());
        for s in &self.signatures {
            if !s.keyid.is_empty() && s.keyid != want_id {
                continue;
            }
            let raw = B64
                .decode(&s.sig)
                .map_err(|_| AttestError::Envelope("signature is not base64".into()))?;
            let sig: [u8; 64] = raw
                .as_slice()
                .try_into()
                .map_err(|_| AttestError::Envelope("signature is not 64 bytes".into()))?;
            if verifier.verify(&msg, &sig) {
                return Ok(payload);
            }
            if s.keyid == want_id {
                return Err(AttestError::BadSignature(verifier.to_string()));
            }
        }
        Err(AttestError::NoteUnverified(verifier.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Ed25519Signer;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // The worked example of the DSSE v1 protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn sign_verify_and_reject() {
        let k = Ed25519Signer::from_seed("export.test", &[3; 32]).unwrap();
        let other = Ed25519Signer::from_seed("export.test", &[4; 32]).unwrap();
        let env = Envelope::sign("application/x", b"{}", &k).unwrap();
        let back = Envelope::from_json(env.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(back.verify("application/x", &k.verifier()).unwrap(), b"{}");
        assert!(back.verify("application/y", &k.verifier()).is_err());
        assert!(back.verify("application/x", &other.verifier()).is_err());
        let mut bad = back.clone();
        bad.payload = B64.encode(b"{ }");
        assert!(matches!(
            bad.verify("application/x", &k.verifier()),
            Err(AttestError::BadSignature(_))
        ));
    }
}
