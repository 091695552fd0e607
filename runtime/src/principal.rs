//! Who a session or a log read acts for: a name checked where it enters
//! (`--user`, `$USER`, `$LOGNAME`, a session's recorded principal), so that
//! it can neither drive a reviewer's terminal nor pass for another name
//! when shown (`audit show`, `session list`, approvals).

use crate::terminal_safe::{self, Hazard};

/// The longest name accepted, in characters.
pub const MAX_CHARS: usize = 128;

/// Why a name was refused. Each message names where the name came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// Nothing given.
    #[error("{field}: the user name is empty")]
    Empty {
        /// Where the name came from (`--user`, `$USER`, …).
        field: String,
    },
    /// Longer than [`MAX_CHARS`].
    #[error("{field}: the user name {shown} is {chars} characters long (at most {MAX_CHARS})")]
    TooLong {
        /// Where the name came from.
        field: String,
        /// The name, escaped and cut.
        shown: String,
        /// Its length.
        chars: usize,
    },
    /// Holds whitespace.
    #[error("{field}: the user name {shown} contains whitespace (U+{code:04X} at character {at})")]
    Whitespace {
        /// Where the name came from.
        field: String,
        /// The name, escaped.
        shown: String,
        /// The character.
        code: u32,
        /// 1-based position.
        at: usize,
    },
    /// Holds a character that is never shown raw.
    #[error("{field}: the user name {shown} contains {} (U+{code:04X} at character {at})", .hazard.describe())]
    Unsafe {
        /// Where the name came from.
        field: String,
        /// The name, escaped.
        shown: String,
        /// What kind of character.
        hazard: Hazard,
        /// The character.
        code: u32,
        /// 1-based position.
        at: usize,
    },
}

/// Check `name`, which came from `field` (for the message).
pub fn validate(field: &str, name: &str) -> Result<(), PrincipalError> {
    let shown = || {
        let cut: String = name.chars().take(MAX_CHARS).collect();
        format!("\"{}\"", terminal_safe::line(&cut))
    };
    if name.is_empty() {
        return Err(PrincipalError::Empty {
            field: field.into(),
        });
    }
    for (i, c) in name.chars().enumerate() {
        // Hazards first: a line feed is a control character before it is whitespace.
        if let Some(hazard) = terminal_safe::hazard(c) {
            return Err(PrincipalError::Unsafe {
                field: field.into(),
                shown: shown(),
                hazard,
                code: c as u32,
                at: i + 1,
            });
        }
        if c.is_whitespace() {
            return Err(PrincipalError::Whitespace {
                field: field.into(),
                shown: shown(),
                code: c as u32,
                at: i + 1,
            });
        }
    }
    let chars = name.chars().count();
    if chars > MAX_CHARS {
        return Err(PrincipalError::TooLong {
            field: field.into(),
            shown: format!("{}…", shown()),
            chars,
        });
    }
    Ok(())
}

/// The principal: `flag` (checked as `--user`), else `$USER`, else
/// `$LOGNAME` (each checked as itself), else `fallback`. A variable that is
/// set but not Unicode is refused too.
pub fn from_flag_or_env(flag: Option<&str>, fallback: &str) -> Result<String, PrincipalError> {
    if let Some(u) = flag {
        validate("--user", u)?;
        return Ok(u.to_string());
    }
    for var in ["USER", "LOGNAME"] {
        let field = format!("${var}");
        match std::env::var(var) {
            Ok(v) => {
                validate(&field, &v)?;
                return Ok(v);
            }
            Err(std::env::VarError::NotUnicode(raw)) => {
                use std::os::unix::ffi::OsStrExt as _;
                return Err(PrincipalError::Unsafe {
                    field,
                    shown: format!(
                        "\"{}\"",
                        terminal_safe::bytes(raw.as_bytes(), terminal_safe::Newlines::Escape)
                    ),
                    hazard: Hazard::Control,
                    code: 0xfffd,
                    at: 1,
                });
            }
            Err(std::env::VarError::NotPresent) => {}
        }
    }
    Ok(fallback.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for ok in ["alice", "bob.smith@example.org", "josé", "山田", "svc-ci_1"] {
            validate("--user", ok).unwrap();
        }
        validate("--user", &"a".repeat(MAX_CHARS)).unwrap();
    }

    #[test]
    fn each_class_is_refused_with_its_field() {
        let forged = "mallory\x1b[2J\x1b[H\n  99999  2026-01-01T00:00:00.000000Z  log.genesis  system  FORGED";
        let e = validate("--user", forged).unwrap_err();
        assert!(
            matches!(
                e,
                PrincipalError::Unsafe {
                    hazard: Hazard::Control,
                    at: 8,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with("--user: "), "{msg}");
        assert!(!msg.contains('\x1b') && !msg.contains('\n'), "{msg:?}");
        for (name, want) in [
            ("a\u{9b}b", Hazard::Control),
            ("a\rb", Hazard::Control),
            ("a\u{202e}b", Hazard::Bidi),
            ("a\u{2066}b", Hazard::Bidi),
            ("a\u{200b}b", Hazard::Invisible),
            ("a\u{feff}b", Hazard::Invisible),
            ("a\u{2028}b", Hazard::LineBreak),
        ] {
            match validate("$USER", name).unwrap_err() {
                PrincipalError::Unsafe { hazard, field, .. } => {
                    assert_eq!(hazard, want, "{name:?}");
                    assert_eq!(field, "$USER");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        for ws in ["a b", "a\u{a0}b", "a\u{3000}b", " a", "a "] {
            assert!(
                matches!(
                    validate("--user", ws),
                    Err(PrincipalError::Whitespace { .. })
                ),
                "{ws:?}"
            );
        }
        assert!(matches!(
            validate("--user", ""),
            Err(PrincipalError::Empty { .. })
        ));
        let long = validate("--user", &"a".repeat(MAX_CHARS + 1)).unwrap_err();
        assert!(long.to_string().contains("129 characters"), "{long}");
    }
}
