//! The PKCS#11 signer: `stele_attest::Signer` over a key in a token.
//!
//! PKCS#11 sessions must not be used by two threads at once, and opening
//! one (with its login) costs far more than a signature. The signer keeps
//! a pool of idle logged-in sessions: a signing thread takes one, signs and
//! puts it back, so concurrent signers each get their own session and the
//! log's sequencer reuses the same one commit after commit.
//!
//! A signature that fails because the session, login or token went away
//! (a token pulled and put back, an HSM connection reset) is retried once
//! on a new session after the pool is emptied; if that fails too the error
//! is returned, and the log's commit — whose checkpoint could not be
//! signed — fails with it: fail closed, never an unsigned entry. Every
//! signature is checked against the public key before it is returned, so a
//! token that answers with a wrong key or garbage stops the log instead of
//! poisoning it with checkpoints no one can verify.

use std::sync::{Mutex, PoisonError};

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use ed25519_dalek::{Signature, VerifyingKey};
use stele_attest::{AttestError, Signer};

use crate::config::Pkcs11Config;
use crate::error::HsmError;
use crate::token::{ed25519_point, is_connection_error, Access, Token};

/// An idle session with the private key's handle in it.
struct Pooled {
    session: Session,
    key: ObjectHandle,
}

/// An Ed25519 key in a PKCS#11 token.
pub struct Pkcs11Signer {
    name: String,
    public: [u8; 32],
    verifying: VerifyingKey,
    token: Mutex<Token>,
    idle: Mutex<Vec<Pooled>>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration names where the PIN is, never the PIN.
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Pkcs11Signer")
            .field("name", &self.name)
            .field("module", &token.cfg.module)
            .field("token", &token.cfg.token)
            .field("label", &token.cfg.label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Open the key `cfg` names: load the module, find the token, log in,
    /// read the public key and its name (`CKA_ID`), and make one signature
    /// to check that the private key matches.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, HsmError> {
        let token = Token::find(cfg)?;
        let s = token.session(Access::ReadOnly)?;
        let key = token.private_key(&s)?;
        let public_obj = token.object(&s, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
            token.key_error(
                "no public key object with this label (stele needs it to name the verifier key)",
            )
        })?;
        let attrs = s
            .get_attributes(public_obj, &[AttributeType::EcPoint, AttributeType::Id])
            .map_err(|e| token.call_error("reading the public key", &e))?;
        let mut point = None;
        let mut id = None;
        for a in attrs {
            match a {
                Attribute::EcPoint(p) => point = ed25519_point(&p),
                Attribute::Id(i) => id = Some(i),
                _ => {}
            }
        }
        let public = point
            .ok_or_else(|| token.key_error("the public key is not a 32-byte Ed25519 point"))?;
        let name = id
            .and_then(|i| String::from_utf8(i).ok())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                token.key_error(
                    "the key's CKA_ID does not hold its name (the log origin); create keys with `stele keys init --pkcs11`",
                )
            })?;
        // The name must be one the signed-note format accepts.
        if !stele_attest::note::valid_key_name(&name) {
            return Err(token.key_error(format!("its name {name:?} is not a valid key name")));
        }
        let verifying = VerifyingKey::from_bytes(&public)
            .map_err(|_| token.key_error("the public key is not a valid Ed25519 point"))?;
        let signer = Self {
            name,
            public,
            verifying,
            token: Mutex::new(token),
            idle: Mutex::new(vec![Pooled { session: s, key }]),
        };
        // Proves the private key belongs to the public key read above.
        signer.sign_checked(b"stele: PKCS#11 key check")?;
        Ok(signer)
    }

    /// Where the key is (module, token, label), for messages and `doctor`.
    pub fn location(&self) -> String {
        let t = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        format!(
            "PKCS#11 token {:?}, key {:?} (module {})",
            t.cfg.token,
            t.cfg.label,
            t.cfg.module.display()
        )
    }

    /// How many idle sessions the pool holds (for tests and diagnostics).
    pub fn idle_sessions(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Drop every idle session (as a token error does); the next
    /// signature opens a new one. For tests of reconnection and for
    /// operators who replaced the token.
    pub fn reset_sessions(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn take(&self) -> Result<Pooled, HsmError> {
        if let Some(p) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        {
            return Ok(p);
        }
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        let session = token.session(Access::ReadOnly)?;
        let key = token.private_key(&session)?;
        Ok(Pooled { session, key })
    }

    /// After a connection error: find the token again (its slot may have
    /// changed when it was re-inserted) and forget every idle session.
    fn reconnect(&self) -> Result<(), HsmError> {
        self.reset_sessions();
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        *token = Token::find(&token.cfg)?;
        Ok(())
    }

    fn sign_once(&self, msg: &[u8]) -> Result<Result<Vec<u8>, cryptoki::error::Error>, HsmError> {
        let p = self.take()?;
        let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let r = p.session.sign(&mech, p.key, msg);
        if r.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(p);
        }
        // A failed session is dropped (closed), never reused.
        Ok(r)
    }

    fn sign_checked(&self, msg: &[u8]) -> Result<[u8; 64], HsmError> {
        let raw = match self.sign_once(msg)? {
            Ok(sig) => sig,
            Err(e) if is_connection_error(&e) => {
                tracing::warn!(
                    "{}: signing failed ({}); reconnecting once",
                    self.location(),
                    crate::token::rv_text(&e)
                );
                self.reconnect()?;
                self.sign_once(msg)?.map_err(|e| {
                    self.token
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .call_error("sign (after reconnecting)", &e)
                })?
            }
            Err(e) => {
                return Err(self
                    .token
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .call_error("sign", &e))
            }
        };
        let bytes: [u8; 64] = raw.as_slice().try_into().map_err(|_| {
            self.token
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .key_error(format!(
                    "the token returned a {}-byte signature, not 64",
                    raw.len()
                ))
        })?;
        self.verifying
            .verify_strict(msg, &Signature::from_bytes(&bytes))
            .map_err(|_| {
                self.token
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .key_error("the token's signature does not verify with the key's public key")
            })?;
        Ok(bytes)
    }
}

impl Signer for Pkcs11Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], AttestError> {
        self.sign_checked(msg)
            .map_err(|e| AttestError::Signing(e.to_string()))
    }

    fn describe(&self) -> String {
        self.location()
    }
}
