//! Exit codes: one table for every command (docs/exit-codes.md), each code
//! one meaning. Scripts can tell a usage mistake (2, clap's) from a log that
//! does not verify (3), a budget that ran out (10) or a host that cannot
//! sandbox (69) without reading the message.

use std::process::ExitCode;

/// Success: done, verified, allowed.
pub const OK: u8 = 0;
/// A failure not listed below; the message says what and where.
pub const FAILURE: u8 = 1;
/// The command line was not understood (clap's own code; nothing ran).
pub const USAGE: u8 = 2;
/// Integrity: the log, a proof or a bundle does not verify; a witness saw
/// another history, or too few cosigned.
pub const INTEGRITY: u8 = 3;
/// The log (or a bundle) could not be read at all.
pub const UNREADABLE: u8 = 4;
/// A run's budget (steps, tokens, time) ran out.
pub const BUDGET: u8 = 10;
/// Policy denied the model request itself (nothing the agent can do).
pub const MODEL_DENIED: u8 = 11;
/// The model or its provider declined the task (`refusal`, `content_filter`).
pub const MODEL_REFUSED: u8 = 12;
/// `stele doctor` found at least one problem.
pub const PROBLEMS: u8 = 13;
/// The host cannot sandbox (a required layer is missing: root, user
/// namespaces, Landlock, seccomp, /dev/fuse); `stele sandbox check` says which.
pub const SANDBOX_UNAVAILABLE: u8 = 69;
/// Paused and resumable (a provider outage): `stele session resume ID`.
pub const PAUSED: u8 = 75;
/// Not set up yet: no signing key, no log; the message names the command
/// that sets it up.
pub const NOT_SET_UP: u8 = 78;
/// `sandbox exec`: stele itself failed (the command's own codes pass through).
pub const EXEC_FAILED: u8 = 125;
/// `sandbox exec`: policy denied running the command.
pub const EXEC_DENIED: u8 = 126;

/// An error that carries its exit code and a way forward.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The sandbox cannot be set up on this host.
    #[error(
        "the sandbox cannot be set up on this host: {cause}. stele never runs unsandboxed; it \
         needs {needs}. `stele sandbox check` shows each layer and what is missing"
    )]
    SandboxUnavailable {
        /// What failed (the layer and the system's error).
        cause: String,
        /// What would make it work.
        needs: &'static str,
    },
    /// Something is not set up yet.
    #[error("{what}; {fix}")]
    NotSetUp {
        /// What is missing.
        what: String,
        /// The command that sets it up.
        fix: String,
    },
}

/// What the process sandbox needs (the same words wherever it is refused).
pub const SANDBOX_NEEDS: &str = "root (or unprivileged user namespaces with mount \
    permissions), Landlock, seccomp and /dev/fuse";

/// The process sandbox's refusal to start, as the person should read it: a
/// missing layer or a set-up step the system refused (not root, no user
/// namespaces) says what is needed; anything else keeps its own message.
pub fn sandbox_refusal(e: stele_sandbox::error::SandboxError) -> anyhow::Error {
    use stele_sandbox::error::SandboxError as E;
    let refused = |source: &std::io::Error| {
        matches!(
            source.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::ENOSYS | libc::EINVAL | libc::ENOENT)
        )
    };
    match &e {
        E::LayerUnavailable { .. } => Stop::SandboxUnavailable {
            cause: e.to_string(),
            needs: SANDBOX_NEEDS,
        }
        .into(),
        E::Setup { source, .. } | E::Prepare { source, .. } if refused(source) => {
            Stop::SandboxUnavailable {
                cause: e.to_string(),
                needs: SANDBOX_NEEDS,
            }
            .into()
        }
        // The message already says how to set it up (scripts/setup-vm).
        E::ToolImage(what) => Stop::NotSetUp {
            what: format!("the process sandbox's tool image: {what}"),
            fix: "stele never runs on a root it cannot name".into(),
        }
        .into(),
        _ => anyhow::Error::new(e).context("setting up the sandbox (stele never runs unsandboxed)"),
    }
}

/// The exit code for an error that ended a command.
pub fn code_of(err: &anyhow::Error) -> u8 {
    use crate::witnessing::WitnessingError;
    for cause in err.chain() {
        if let Some(s) = cause.downcast_ref::<Stop>() {
            return match s {
                Stop::SandboxUnavailable { .. } => SANDBOX_UNAVAILABLE,
                Stop::NotSetUp { .. } => NOT_SET_UP,
            };
        }
        if let Some(n) = cause.downcast_ref::<super::audit_read::NotVerified>() {
            return n.code;
        }
        if let Some(w) = cause.downcast_ref::<WitnessingError>() {
            return match w {
                // A witness saw another history, or too few cosigned: as for a tampered log.
                WitnessingError::HistoryConflict(_) | WitnessingError::QuorumNotMet { .. } => {
                    INTEGRITY
                }
                WitnessingError::Config { .. } | WitnessingError::Load(_) => FAILURE,
            };
        }
    }
    FAILURE
}

/// `code` as the process's exit status.
pub fn status(code: u8) -> ExitCode {
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_meaning() {
        let all = [
            OK,
            FAILURE,
            USAGE,
            INTEGRITY,
            UNREADABLE,
            BUDGET,
            MODEL_DENIED,
            MODEL_REFUSED,
            PROBLEMS,
            SANDBOX_UNAVAILABLE,
            PAUSED,
            NOT_SET_UP,
            EXEC_FAILED,
            EXEC_DENIED,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for c in all {
            assert!(seen.insert(c), "exit code {c} has two meanings");
        }
    }

    #[test]
    fn typed_stops_map_to_their_codes_through_context() {
        let e = anyhow::Error::new(Stop::NotSetUp {
            what: "no key".into(),
            fix: "run `stele keys init`".into(),
        })
        .context("opening the session");
        assert_eq!(code_of(&e), NOT_SET_UP);
        let e = anyhow::Error::new(Stop::SandboxUnavailable {
            cause: "mount_setattr: EPERM".into(),
            needs: SANDBOX_NEEDS,
        });
        assert_eq!(code_of(&e), SANDBOX_UNAVAILABLE);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), FAILURE);
    }
}
