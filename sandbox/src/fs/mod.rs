//! The mediated workspace: a passthrough file system over a host directory,
//! wrapped in a policy/audit layer that asks the [`Mediator`](crate::Mediator).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use crate::{Mediator, Requester};

/// Errors from setting up or serving the mediated workspace.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The workspace root could not be opened or is not a directory.
    #[error("workspace root {path}: {source}")]
    Root {
        /// The root that was given.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Not implemented yet (skeleton).
    #[error("not implemented")]
    Unimplemented,
}

/// A passthrough file system over a host directory, with every name-level
/// operation decided by the mediator.
#[derive(Debug)]
pub struct MediatedFs {
    _private: (),
}

impl MediatedFs {
    /// Build the file system over `root`.
    pub fn new(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> Result<Self, FsError> {
        let _ = (root, mediator, requester);
        Err(FsError::Unimplemented)
    }

    /// Options string for mount(2) of type "fuse" given the /dev/fuse fd
    /// number as seen by the mounting process.
    pub fn mount_options(fd: i32, uid: u32, gid: u32) -> String {
        format!("fd={fd},rootmode=40000,user_id={uid},group_id={gid},allow_other")
    }

    /// Serve FUSE requests on an already-mounted /dev/fuse fd, on background
    /// threads, until unmounted or stopped.
    pub fn serve(self, fuse_dev: OwnedFd) -> Result<FsServer, FsError> {
        drop(fuse_dev);
        Err(FsError::Unimplemented)
    }
}

/// A running file server; [`FsServer::stop`] ends it.
#[derive(Debug)]
pub struct FsServer {
    _private: (),
}

impl FsServer {
    /// Stop serving and join the server threads.
    pub fn stop(self) -> Result<(), FsError> {
        Ok(())
    }
}
