//! Errors of the agent file tools.

use crate::RefusalRule;

/// Why a file tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool refused on its own, before or instead of asking policy:
    /// a path that is absolute, climbs with `..`, holds control
    /// characters or leads out of the workspace through a symbolic link,
    /// a file that is not a regular file, a hard-linked file whose names
    /// are not all in the workspace. The refusal was reported to the
    /// mediator ([`crate::Mediator::file_refused`]), which logs it.
    #[error("{action} on \"{path}\" refused: {refusal}")]
    Refused {
        /// The policy action that was wanted (`file.read`, …).
        action: &'static str,
        /// The path as given, made printable.
        path: String,
        /// The rule that refused it.
        rule: RefusalRule,
        /// What the mediator made of it (the runtime attaches the logged
        /// denial entry).
        refusal: crate::Refusal,
    },
    /// The mediator refused.
    #[error("{action} on {path:?} denied: {refusal}")]
    Denied {
        /// The policy action (`file.read`, …).
        action: &'static str,
        /// Workspace-relative path.
        path: String,
        /// The mediator's refusal: its reason, and whatever detail it
        /// attached for the tool's caller (see [`crate::Refusal`]).
        refusal: crate::Refusal,
    },
    /// No such file or directory.
    #[error("{0:?} does not exist")]
    NotFound(String),
    /// The path is not the kind of object the tool needs.
    #[error("{path:?} is not a {expected}")]
    WrongKind {
        /// Workspace-relative path.
        path: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `edit`: the text to replace does not occur.
    #[error("the text to replace was not found in {0:?}")]
    NoMatch(String),
    /// `edit`: the text to replace occurs more than once.
    #[error("the text to replace occurs {count} times in {path:?}; it must be unique")]
    NotUnique {
        /// Workspace-relative path.
        path: String,
        /// Number of occurrences.
        count: usize,
    },
    /// A glob pattern could not be used.
    #[error("invalid pattern {0:?}")]
    InvalidPattern(String),
    /// An I/O error on a workspace path.
    #[error("{path:?}: {source}")]
    Io {
        /// Workspace-relative path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl ToolError {
    /// Map an I/O error, turning "not found" into its own variant.
    /// (Escapes are found before any I/O error can name them: see
    /// `WorkspaceTools::resolve`.)
    pub(crate) fn io(path: &str, e: std::io::Error) -> ToolError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound(path.to_string()),
            _ => ToolError::Io {
                path: path.to_string(),
                source: e,
            },
        }
    }
}
