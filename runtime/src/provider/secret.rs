//! API keys, held so they cannot be printed by accident.

use std::fmt;

/// A secret string (an API key). `Debug` and `Display` print `***`; the value is only reachable
/// through [`Secret::expose`], which the providers call when building a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Read the secret from environment variable `var`; `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(Self(v.trim().to_string())),
            _ => None,
        }
    }

    /// The clear value. Use only to build an HTTP header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***`, for messages that echo
    /// server-supplied text which might (through a misbehaving proxy) contain the key.
    pub fn redact(&self, text: &str) -> String {
        // A very short "key" would redact ordinary words; real keys are long.
        if self.0.len() < 8 {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the key's bytes before the allocation is freed.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}
