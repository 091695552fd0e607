//! Where a PKCS#11 key is: module, token label, key label, PIN source.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use cryptoki::types::AuthPin;
use serde::Deserialize;

use crate::error::HsmError;

/// A key in a PKCS#11 token, as written in stele's configuration
/// (`[keys.log]` / `[keys.export]` with `kind = "pkcs11"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's label (`CKA_LABEL` of its private and public objects).
    pub label: String,
    /// A file holding the user PIN (mode 0600 or stricter).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
}

/// Where the PIN comes from (never the PIN itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl Pkcs11Config {
    /// The one PIN source configured (`pin_file` or `pin_env`, not both).
    pub fn pin_source(&self) -> Result<PinSource, HsmError> {
        match (&self.pin_file, &self.pin_env) {
            (Some(f), None) => Ok(PinSource::File(f.clone())),
            (None, Some(v)) if !v.is_empty() => Ok(PinSource::Env(v.clone())),
            (None, Some(_)) => Err(HsmError::Config("pin_env names no variable".into())),
            (None, None) => Err(HsmError::Config(format!(
                "key {:?} in token {:?}: give pin_file or pin_env",
                self.label, self.token
            ))),
            (Some(_), Some(_)) => Err(HsmError::Config(format!(
                "key {:?} in token {:?}: give pin_file or pin_env, not both",
                self.label, self.token
            ))),
        }
    }

    /// Check what can be checked without the token.
    pub fn validate(&self) -> Result<(), HsmError> {
        if !self.module.is_absolute() {
            return Err(HsmError::Config(format!(
                "module {} must be an absolute path",
                self.module.display()
            )));
        }
        if self.token.is_empty() || self.label.is_empty() {
            return Err(HsmError::Config("token and label must not be empty".into()));
        }
        self.pin_source().map(|_| ())
    }

    /// Read the PIN. Errors name the file or variable, never its content.
    pub(crate) fn pin(&self) -> Result<AuthPin, HsmError> {
        let text = match self.pin_source()? {
            PinSource::File(p) => {
                let meta = std::fs::metadata(&p)
                    .map_err(|e| HsmError::Pin(format!("{}: {e}", p.display())))?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(HsmError::Pin(format!(
                        "{} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
                        p.display()
                    )));
                }
                let t = std::fs::read_to_string(&p)
                    .map_err(|e| HsmError::Pin(format!("{}: {e}", p.display())))?;
                // One trailing newline is how editors and `echo` write files.
                let t = t.strip_suffix('\n').unwrap_or(&t);
                let t = t.strip_suffix('\r').unwrap_or(t).to_string();
                if t.is_empty() {
                    return Err(HsmError::Pin(format!("{} is empty", p.display())));
                }
                t
            }
            PinSource::Env(v) => match std::env::var(&v) {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => return Err(HsmError::Pin(format!("${v} is empty"))),
                Err(_) => return Err(HsmError::Pin(format!("${v} is not set"))),
            },
        };
        Ok(AuthPin::from(text))
    }
}
