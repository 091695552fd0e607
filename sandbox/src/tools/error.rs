//! Errors of the agent file tools.

/// Why a file tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The path is not a clean workspace-relative path (absolute, `..`, NUL).
    #[error("invalid workspace path {path:?}: {why}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The path resolves (through symlinks) outside the workspace.
    #[error("path {0:?} escapes the workspace")]
    Escape(String),
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
    /// Map an I/O error, turning "not found" and escapes into their own variants.
    pub(crate) fn io(path: &str, e: std::io::Error) -> ToolError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound(path.to_string()),
            // cap-std reports an attempted escape as PermissionDenied.
            std::io::ErrorKind::PermissionDenied => ToolError::Escape(path.to_string()),
            _ => ToolError::Io {
                path: path.to_string(),
                source: e,
            },
        }
    }
}
