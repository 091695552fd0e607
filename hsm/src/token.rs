//! The module and token: one initialised context per module for the whole
//! process (C_Initialize may be called only once), the slot holding the
//! labelled token, logged-in sessions and the key objects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::config::Pkcs11Config;
use crate::error::HsmError;

/// Initialised contexts by module path.
fn contexts() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static C: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The context of `module`, loaded and initialised once per process.
fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    let mut map = contexts().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let fail = |reason: String| HsmError::Module {
        module: module.to_path_buf(),
        reason,
    };
    if !module.is_file() {
        return Err(fail("no such file (is the module installed?)".into()));
    }
    let ctx = Pkcs11::new(module).map_err(|e| fail(format!("cannot be loaded: {e}")))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("C_Initialize failed: {}", rv_text(&e)))),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A PKCS#11 error in words (the return value's name and, for the usual
/// mistakes, what to do), never any secret.
pub(crate) fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => {
            let hint = match rv {
                RvError::PinIncorrect => ": the PIN is wrong",
                RvError::PinLocked => ": the PIN is locked (too many wrong attempts)",
                RvError::PinExpired => ": the PIN has expired",
                RvError::TokenNotPresent | RvError::DeviceRemoved => ": the token is not present",
                RvError::MechanismInvalid => ": the token does not offer this mechanism",
                _ => "",
            };
            format!("{rv:?} in {f:?}{hint}")
        }
        other => other.to_string(),
    }
}

/// Whether `e` means the session, login or token went away, so that a new
/// session (after a new login) may succeed where this one failed.
pub(crate) fn is_connection_error(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid
                | RvError::GeneralError
                | RvError::FunctionFailed,
            _
        )
    )
}

/// The token a configuration names, found in its module.
#[derive(Debug)]
pub(crate) struct Token {
    pub ctx: Pkcs11,
    pub slot: Slot,
    pub cfg: Pkcs11Config,
}

impl Token {
    /// Load the module and find the token by its label (exactly one).
    pub(crate) fn find(cfg: &Pkcs11Config) -> Result<Self, HsmError> {
        cfg.validate()?;
        let ctx = context(&cfg.module)?;
        let fail = |reason: String| HsmError::Token {
            module: cfg.module.clone(),
            reason,
        };
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| fail(format!("listing slots: {}", rv_text(&e))))?;
        let mut found = Vec::new();
        let mut labels = Vec::new();
        for s in slots {
            let Ok(info) = ctx.get_token_info(s) else {
                continue;
            };
            let label = info.label().trim_end().to_string();
            if label == cfg.token {
                found.push(s);
            }
            labels.push(label);
        }
        match found.as_slice() {
            [s] => Ok(Self {
                ctx,
                slot: *s,
                cfg: cfg.clone(),
            }),
            [] => Err(fail(format!(
                "no token labelled {:?} (tokens present: {})",
                cfg.token,
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels
                        .iter()
                        .map(|l| format!("{l:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
            _ => Err(fail(format!(
                "{} tokens are labelled {:?}; labels must be unique",
                found.len(),
                cfg.token
            ))),
        }
    }

    /// An error of `operation` on this token's key.
    pub(crate) fn call_error(&self, operation: &'static str, e: &CkError) -> HsmError {
        HsmError::Call {
            module: self.cfg.module.clone(),
            token: self.cfg.token.clone(),
            label: self.cfg.label.clone(),
            operation,
            reason: rv_text(e),
        }
    }

    /// A problem with the key itself.
    pub(crate) fn key_error(&self, reason: impl Into<String>) -> HsmError {
        HsmError::Key {
            module: self.cfg.module.clone(),
            token: self.cfg.token.clone(),
            label: self.cfg.label.clone(),
            reason: reason.into(),
        }
    }

    /// A new session, logged in as the user (a login already made by
    /// another session of this process counts).
    pub(crate) fn session(&self, write: Access) -> Result<Session, HsmError> {
        let s = match write {
            Access::ReadOnly => self.ctx.open_ro_session(self.slot),
            Access::ReadWrite => self.ctx.open_rw_session(self.slot),
        }
        .map_err(|e| self.call_error("opening a session", &e))?;
        let pin = self.cfg.pin()?;
        match s.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(s),
            Err(e) => Err(self.call_error("login", &e)),
        }
    }

    /// The one object of `class` with this key's label.
    pub(crate) fn object(
        &self,
        s: &Session,
        class: ObjectClass,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let found = s
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(self.cfg.label.as_bytes().to_vec()),
            ])
            .map_err(|e| self.call_error("finding the key", &e))?;
        match found.as_slice() {
            [] => Ok(None),
            [h] => Ok(Some(*h)),
            many => Err(self.key_error(format!(
                "{} {class} objects carry this label; labels must be unique",
                many.len()
            ))),
        }
    }

    /// The private key's handle; an error when it is missing or not an
    /// Ed25519 (EC Edwards) key.
    pub(crate) fn private_key(&self, s: &Session) -> Result<ObjectHandle, HsmError> {
        let h = self.object(s, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            self.key_error(
                "no private key with this label (create one with `stele keys init --pkcs11`)",
            )
        })?;
        let attrs = s
            .get_attributes(h, &[AttributeType::KeyType])
            .map_err(|e| self.call_error("reading the key type", &e))?;
        match attrs.first() {
            Some(Attribute::KeyType(k)) if *k == KeyType::EC_EDWARDS => Ok(h),
            Some(Attribute::KeyType(k)) => Err(self.key_error(format!(
                "is a {k} key; stele signs with Ed25519 (EC Edwards) keys"
            ))),
            _ => Err(self.key_error("the token does not say the key's type")),
        }
    }
}

/// Session access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Signing and reading.
    ReadOnly,
    /// Creating keys.
    ReadWrite,
}

/// The 32-byte Ed25519 public key from a `CKA_EC_POINT` value: DER
/// OCTET STRING (what PKCS#11 3.0 asks for) or the raw bytes.
pub(crate) fn ed25519_point(v: &[u8]) -> Option<[u8; 32]> {
    let raw = match v {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ if v.len() == 32 => v,
        _ => return None,
    };
    raw.try_into().ok()
}

/// DER of the Ed25519 curve OID (1.3.101.112), the `CKA_EC_PARAMS` of
/// Ed25519 keys.
pub(crate) const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_forms() {
        let k = [7u8; 32];
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&k);
        assert_eq!(ed25519_point(&der), Some(k));
        assert_eq!(ed25519_point(&k), Some(k));
        assert_eq!(ed25519_point(&der[..33]), None);
        let mut wrong = der.clone();
        wrong[1] = 0x21;
        wrong.push(0);
        assert_eq!(ed25519_point(&wrong), None);
    }
}
