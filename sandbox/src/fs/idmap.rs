//! Owner translation between the host and the sandbox's user namespace.
//!
//! The kernel reads the uids/gids in FUSE replies as ids of the *mounting*
//! process's user namespace, and sends requesters' ids in those terms too.
//! When the sandbox maps its user (say uid 0 inside) to the user stele runs
//! as (say 1000 outside), files owned by 1000 on the host must appear owned by
//! 0 inside, or the sandboxed user could not write its own workspace.

use std::io;

use fuse_backend_rs::abi::fuse_abi::stat64;

/// uid/gid used for host owners that have no counterpart in the sandbox.
const OVERFLOW_ID: u32 = 65534;

/// One host user/group pair and the ids it has inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// The owner of workspace files on the host (usually stele's own uid).
    pub host_uid: u32,
    /// Its group on the host.
    pub host_gid: u32,
    /// The uid the sandboxed programs run as, inside their user namespace.
    pub sandbox_uid: u32,
    /// Their gid inside the user namespace.
    pub sandbox_gid: u32,
}

impl IdMap {
    /// Host ownership as the sandbox should see it.
    pub(crate) fn apply_to_reply(&self, st: &mut stat64) {
        st.st_uid = if st.st_uid == self.host_uid {
            self.sandbox_uid
        } else {
            OVERFLOW_ID
        };
        st.st_gid = if st.st_gid == self.host_gid {
            self.sandbox_gid
        } else {
            OVERFLOW_ID
        };
    }

    /// A requester's ids as the passthrough should act with them: the
    /// sandbox user acts as the server itself (id 0 tells the passthrough
    /// not to switch credentials), anyone else keeps ids the server may
    /// not be able to assume, so their creations fail rather than land
    /// with a wrong owner.
    pub(crate) fn requester_to_host(&self, uid: &mut u32, gid: &mut u32) {
        if *uid == self.sandbox_uid {
            *uid = 0;
        }
        if *gid == self.sandbox_gid {
            *gid = 0;
        }
    }

    /// A chown target from the sandbox, in host ids; only the mapped ids
    /// can be given away (EPERM otherwise).
    pub(crate) fn chown_to_host(
        &self,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> io::Result<(Option<u32>, Option<u32>)> {
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        let uid = match uid {
            Some(u) if u == self.sandbox_uid => Some(self.host_uid),
            Some(_) => return Err(eperm()),
            None => None,
        };
        let gid = match gid {
            Some(g) if g == self.sandbox_gid => Some(self.host_gid),
            Some(_) => return Err(eperm()),
            None => None,
        };
        Ok((uid, gid))
    }
}
