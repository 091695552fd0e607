//! Workspace files for people, through the gate: listing, download
//! (streamed) and upload (streamed to a temporary file in the target's
//! directory, then renamed over it: nothing half-written is ever visible).
//! Each request is decided and recorded as a file access by the person
//! (see [`access`]), and reaches the file without leaving the workspace
//! (see [`walk`]). Routes: `routes/workspaces.rs`.

pub mod access;
pub mod download;
pub mod listing;
pub mod upload;
pub mod walk;

use axum::http::StatusCode;
use stele_runtime::gate::{Denial, GateError, Permit};
use stele_sandbox::{FileAccess, FileOp, RefusalRule};

use crate::error::ApiError;
use access::{Ending, PersonGate};
use walk::Unreachable;

/// Why a files request did not happen (each refusal already recorded).
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// Refused: by a rule, a path check or a limit; `status` is what the client gets.
    #[error("{}", denial.reason)]
    Refused {
        /// 400 (a path that is not a workspace path), 403, or 413.
        status: StatusCode,
        /// The recorded refusal.
        denial: Denial,
    },
    /// Nothing there.
    #[error("no such file or folder in the workspace: {0}")]
    Missing(String),
    /// The log could not be written or policy not asked: nothing happened.
    #[error("{0}")]
    Gate(#[from] GateError),
    /// The file system failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The request body failed.
    #[error("the upload was interrupted: {0}")]
    Body(String),
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> ApiError {
        match e {
            FilesError::Refused { status, denial } => {
                ApiError::new(status, denial.reason).logged(denial.seq)
            }
            FilesError::Missing(_) => ApiError::not_found(e.to_string()),
            FilesError::Body(_) => ApiError::bad_request(e.to_string()),
            FilesError::Gate(_) | FilesError::Io(..) => {
                tracing::error!("workspace files: {e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// The status a path refusal is answered with: a path that is not a
/// workspace path at all is a bad request; one that leads somewhere the
/// server will not go (a link, a device, a shared inode) is forbidden.
pub fn refusal_status(rule: RefusalRule) -> StatusCode {
    match rule {
        RefusalRule::EmptyName
        | RefusalRule::ControlCharacter
        | RefusalRule::NotUtf8
        | RefusalRule::ParentDir
        | RefusalRule::Absolute
        | RefusalRule::SlashInName => StatusCode::BAD_REQUEST,
        RefusalRule::SymlinkEscape
        | RefusalRule::NotRegular
        | RefusalRule::HardLinkUnresolved
        | RefusalRule::PrivilegedMode
        | RefusalRule::Ownership
        | RefusalRule::DeviceNode
        | RefusalRule::ExtendedAttribute
        | RefusalRule::OpenFiles => StatusCode::FORBIDDEN,
        RefusalRule::WriteQuota => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

/// Record why `raw` could not be reached (a refusal) and close the
/// request's session; the error for the client.
pub fn unreachable(
    pg: &PersonGate,
    access: FileAccess,
    op: FileOp,
    raw: &str,
    u: Unreachable,
) -> FilesError {
    let e = match u {
        Unreachable::Refused(rule, detail) => {
            match pg.refuse(access, op, raw.as_bytes(), rule, &detail) {
                Ok(denial) => FilesError::Refused {
                    status: refusal_status(rule),
                    denial,
                },
                Err(g) => FilesError::Gate(g),
            }
        }
        Unreachable::Missing(p) => FilesError::Missing(p),
        Unreachable::Io(p, e) => FilesError::Io(p, e),
    };
    let ending = match e {
        FilesError::Refused { .. } => Ending::Refused,
        FilesError::Missing(_) | FilesError::Gate(_) | FilesError::Io(..) | FilesError::Body(_) => {
            Ending::Failed
        }
    };
    pg.end(ending, Some(e.to_string()));
    e
}

/// Close a permitted access that did not happen (the file was not there,
/// or not one the server serves), then [`unreachable`].
pub fn abandon(
    pg: &PersonGate,
    permit: Permit,
    access: FileAccess,
    op: FileOp,
    raw: &str,
    u: Unreachable,
) -> FilesError {
    let mut o = stele_audit::Outcome::status(match u {
        Unreachable::Refused(..) => stele_audit::Status::Denied,
        Unreachable::Missing(_) | Unreachable::Io(..) => stele_audit::Status::Error,
    });
    o.detail = Some(match &u {
        Unreachable::Refused(rule, d) => format!("not done: refused by rule {} ({d})", rule.name()),
        Unreachable::Missing(p) => format!("not done: {p} does not exist"),
        Unreachable::Io(p, e) => format!("not done: {p}: {e}"),
    });
    if let Err(e) = pg.complete(permit, o, serde_json::json!({"op": "abandoned"})) {
        pg.end(Ending::Failed, Some(e.to_string()));
        return FilesError::Gate(e);
    }
    unreachable(pg, access, op, raw, u)
}

/// A policy refusal: the session closes, the client gets 403.
pub fn denied(pg: &PersonGate, denial: Denial) -> FilesError {
    pg.end(Ending::Refused, Some(denial.reason.clone()));
    FilesError::Refused {
        status: StatusCode::FORBIDDEN,
        denial,
    }
}
