//! The sandbox's mediated workspace: one FUSE connection, one file server
//! and one mount for the whole sandbox, shared by all its commands.
//!
//! Starting a file server per command (open `/dev/fuse`, create the mount,
//! start the server thread, the INIT handshake, and stopping it all again)
//! cost more than the rest of a spawn. Instead the sandbox mounts the
//! workspace once, as a detached mount held by stele, and each command gets
//! its own detached *copy* of that mount (`open_tree(OPEN_TREE_CLONE)`, tens
//! of microseconds), which its init attaches at `/workspace` in its own,
//! fresh mount namespace. Every copy reaches the same server.
//!
//! The server learns which command a request comes from by the requesting
//! process's pid namespace (`fs::CommandTable`): each command's namespace is
//! registered before the command starts and removed when it has ended.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
use crate::error::{Layer, SandboxError};
use crate::fs::{
    pid_namespace, CommandTable, FsServer, IdMap, MediatedFs, Owner, Registration, WriteQuota,
};
use crate::Mediator;

/// How long a finished command's open handles may take to be released by
/// the kernel before they are reported as closed anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The running workspace server of a sandbox.
#[derive(Debug)]
pub(crate) struct SharedWorkspace {
    // Field order is drop order: stop serving, then unmount.
    server: FsServer,
    mount: OwnedFd,
    commands: Arc<CommandTable>,
    /// The CPU of the server, which the commands share.
    cpu: Option<usize>,
}

impl SharedWorkspace {
    /// Mount `workspace` (detached) and start serving it, on `cpu` if given.
    pub(crate) fn start(
        workspace: &Path,
        mediator: Arc<dyn Mediator>,
        sandbox_id: u32,
        quota: WriteQuota,
        cpu: Option<usize>,
    ) -> Result<Self, SandboxError> {
        let commands = Arc::new(CommandTable::default());
        // Files owned by the workspace's owner appear owned by the
        // sandbox's user (host id UNPRIVILEGED_ID when stele is root), so
        // the sandbox can work in its workspace, and what it creates is
        // given to that owner; the mount lives in the initial user
        // namespace, so both sides are host ids.
        let owner = Owner::of(workspace).map_err(|e| SandboxError::Prepare {
            what: "workspace owner",
            source: e,
        })?;
        let fs =
            MediatedFs::for_commands(workspace, mediator, commands.clone())?.with_id_map(IdMap {
                host_uid: owner.uid,
                host_gid: owner.gid,
                sandbox_uid: sandbox_id,
                sandbox_gid: sandbox_id,
            });
        fs.layer().set_write_quota(quota);
        let fs = match cpu {
            Some(c) => fs.with_cpu(c),
            None => fs,
        };
        // Opened here, in the initial user namespace: the kernel accepts a
        // FUSE mount only from the user namespace that opened /dev/fuse.
        let fuse = sys::open_fuse().map_err(|e| SandboxError::LayerUnavailable {
            layer: Layer::Fuse,
            detail: e.to_string(),
        })?;
        let opts = MediatedFs::mount_options(fuse.as_raw_fd(), sandbox_id, sandbox_id);
        let mount =
            sys::fuse_fsmount(&opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV).map_err(|e| {
                SandboxError::Prepare {
                    what: "mount the mediated workspace",
                    source: e,
                }
            })?;
        let server = fs.serve(fuse)?;
        Ok(SharedWorkspace {
            server,
            mount,
            commands,
            cpu,
        })
    }

    /// The CPU commands should run on (that of the server), if placed.
    pub(crate) fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// A detached mount of the workspace for one command's init to attach.
    pub(crate) fn mount_for_command(&self) -> Result<OwnedFd, SandboxError> {
        sys::open_tree_clone(self.mount.as_raw_fd()).map_err(|e| SandboxError::Prepare {
            what: "copy the workspace mount",
            source: e,
        })
    }

    /// Attribute requests from the pid namespace of `init` (the command's
    /// pid 1) to `exec_id` until the command is settled.
    pub(crate) fn register(
        &self,
        init: libc::pid_t,
        exec_id: &str,
    ) -> Result<Registration, SandboxError> {
        let ns = u32::try_from(init)
            .ok()
            .and_then(pid_namespace)
            .ok_or_else(|| SandboxError::Lost("the sandbox's pid namespace is gone".into()))?;
        Ok(self.commands.register(ns, exec_id))
    }

    /// The command has ended (every process of it is gone): stop attributing
    /// to it, and close the decisions of handles it left open.
    pub(crate) fn settle(&self, registration: Registration) {
        let serial = registration.serial();
        drop(registration);
        self.server.layer().settle_command(serial, SETTLE_TIMEOUT);
    }

    /// The file server (request counts, for diagnostics).
    pub(crate) fn server(&self) -> &FsServer {
        &self.server
    }
}
