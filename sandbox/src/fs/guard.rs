//! What the workspace may hold, whatever the sandbox asks: no setuid or
//! setgid bits, no sticky files, no device nodes, no extended attributes
//! set or removed, nothing owned by anyone but the workspace's owner, and
//! new files with a sane mode.
//!
//! The file server acts with stele's rights (root, usually): without these
//! rules a sandboxed `chmod 4755` would leave a setuid-root program on the
//! host. Each rule holds in the layer itself, so every transport (the
//! process backend's /dev/fuse, the micro-VM's vhost-user-fs) gets it.
//!
//! * Creation (`create`, `mkdir`, `mknod`, `symlink`): the requested mode
//!   loses its setuid/setgid/sticky bits (sticky stays on directories) and
//!   is masked with the program's umask and [`WORKSPACE_UMASK`]; the new
//!   node is then given to the workspace's owner (when stele runs as root)
//!   and any special bit it got anyway (a setgid parent directory gives
//!   its group and, to directories, its setgid bit: the host's own rule,
//!   kept for directories) is cleared from files.
//! * `setattr`: a mode with setuid or setgid (or sticky on a non-directory)
//!   is refused with `EPERM`; a change of owner or group is refused unless
//!   it changes nothing.
//! * A pre-existing setuid/setgid file loses those bits before it is
//!   opened for writing, truncated or extended, as the kernel does for
//!   unprivileged writers (the server is privileged, so the kernel does not).
//! * `mknod` of a character or block device, `RENAME_WHITEOUT` (which makes
//!   one), `setxattr` and `removexattr` are refused.
//! * A setuid/setgid file cannot be given a new name (`link`, `rename`):
//!   moved or linked into a folder others can reach, a privileged program
//!   would become reachable.
//!
//! Every refusal is reported to the mediator ([`crate::RefusalRule`]).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fuse_backend_rs::abi::fuse_abi::{stat64, SetattrValid};
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::layer::MediatedLayer;
use crate::file_refusal::RefusalRule;

/// The umask every file and directory the sandbox creates gets on top of
/// the program's own: nothing the agent writes is writable by the owner's
/// group or readable by other users of the host.
pub const WORKSPACE_UMASK: u32 = 0o027;

const SETID: u32 = libc::S_ISUID | libc::S_ISGID;

/// The host user and group that own the workspace (its root directory):
/// what the sandbox creates is given to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Host uid.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
}

impl Owner {
    /// The owner of `dir`.
    pub fn of(dir: &Path) -> io::Result<Owner> {
        let m = std::fs::metadata(dir)?;
        Ok(Owner {
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    /// The uid/gid a new node created by stele (`made_uid`/`made_gid`)
    /// must be changed to, if any: the owner's when stele runs as root and
    /// they differ. A group the node got from a setgid parent directory
    /// (anything but stele's own group) is kept.
    pub fn give_away(self, made_uid: u32, made_gid: u32) -> (Option<u32>, Option<u32>) {
        // SAFETY: geteuid/getegid have no preconditions and cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            // Only root can give files away; an unprivileged stele's files
            // are its own user's, who must then be the workspace's owner.
            return (None, None);
        }
        let uid = (made_uid != self.uid).then_some(self.uid);
        let gid = (made_gid == egid && made_gid != self.gid).then_some(self.gid);
        (uid, gid)
    }
}

/// The permission bits of a node the sandbox creates with `mode` under the
/// program's `umask`: no setuid/setgid, sticky only on directories, masked
/// with the program's umask and `workspace_umask`. File-type bits are kept.
pub(crate) fn creation_mode(mode: u32, umask: u32, workspace_umask: u32) -> u32 {
    let kind = mode & libc::S_IFMT;
    let keep = if kind == libc::S_IFDIR {
        0o777 | libc::S_ISVTX
    } else {
        0o777
    };
    kind | (mode & keep & !((umask | workspace_umask) & 0o777))
}

/// Run `f` (the passthrough's root import, which sets the umask to 0 so it
/// can apply clients' umasks itself) on a thread with a file-system context
/// of its own (`unshare(CLONE_FS)`), so stele's own umask is left alone:
/// with a process umask of 0, every file stele itself creates afterwards
/// (its log, attestations, keys) would be world-writable unless created
/// with an explicit mode. The layer masks what it creates explicitly
/// ([`creation_mode`]), so the passthrough never needs the process umask 0.
pub(crate) fn with_private_umask<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let joined = s
            .spawn(|| {
                // SAFETY: unshare(CLONE_FS) affects only this thread's own
                // fs context (cwd, root, umask); no memory is touched.
                let own = unsafe { libc::unshare(libc::CLONE_FS) } == 0;
                if own {
                    return f();
                }
                // No private context: restore the process umask afterwards.
                // SAFETY: umask cannot fail and touches no memory.
                let before = unsafe { libc::umask(0o077) };
                // SAFETY: as above.
                unsafe { libc::umask(before) };
                let out = f();
                // SAFETY: as above.
                unsafe { libc::umask(before) };
                out
            })
            .join();
        match joined {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Special bits a mode may not be set to on a node of type `kind`.
pub(crate) fn privileged_bits(mode: u32, kind: u32) -> u32 {
    let sticky = if kind == libc::S_IFDIR {
        0
    } else {
        libc::S_ISVTX
    };
    mode & (SETID | sticky)
}

/// Whether `mode` (from `mknod`) makes a device node.
pub(crate) fn is_device(mode: u32) -> bool {
    matches!(mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK)
}

impl MediatedLayer {
    /// A node the sandbox just created: give it to the workspace's owner
    /// and clear special bits a file got anyway. Returns the entry with the
    /// attributes after that; on failure the entry is let go of (the
    /// caller answers with the error, so the kernel never holds it).
    pub(super) fn settle_new(&self, entry: Entry) -> io::Result<Entry> {
        let mut entry = entry;
        let st = entry.attr;
        let kind = st.st_mode & libc::S_IFMT;
        let mut valid = SetattrValid::empty();
        let mut attr = st;
        let stray = if kind == libc::S_IFDIR {
            st.st_mode & libc::S_ISUID
        } else {
            st.st_mode & (SETID | libc::S_ISVTX)
        };
        if stray != 0 && kind != libc::S_IFLNK {
            attr.st_mode = st.st_mode & !stray;
            valid |= SetattrValid::MODE;
        }
        let (uid, gid) = self.owner.give_away(st.st_uid, st.st_gid);
        if let Some(u) = uid {
            attr.st_uid = u;
            valid |= SetattrValid::UID;
        }
        if let Some(g) = gid {
            attr.st_gid = g;
            valid |= SetattrValid::GID;
        }
        if valid.is_empty() {
            return Ok(entry);
        }
        let ctx = Context::default();
        match self.inner.setattr(&ctx, entry.inode, attr, None, valid) {
            Ok((after, _)) => {
                entry.attr = after;
                Ok(entry)
            }
            Err(e) => {
                // The kernel will not hear of the node: drop the
                // passthrough's reference to it.
                self.inner.forget(&ctx, entry.inode, 1);
                Err(e)
            }
        }
    }

    /// SETATTR's mode and owner changes, checked before anything is asked:
    /// the refusal rule when the change is not allowed. A change of owner
    /// that changes nothing is dropped from `valid`.
    pub(super) fn setattr_rule(
        &self,
        inode: u64,
        kind: u32,
        attr: &mut stat64,
        valid: &mut SetattrValid,
    ) -> io::Result<Option<RefusalRule>> {
        if valid.contains(SetattrValid::MODE) && privileged_bits(attr.st_mode, kind) != 0 {
            return Ok(Some(RefusalRule::PrivilegedMode));
        }
        if !valid.intersects(SetattrValid::UID | SetattrValid::GID) {
            return Ok(None);
        }
        let uid = valid.contains(SetattrValid::UID).then_some(attr.st_uid);
        let gid = valid.contains(SetattrValid::GID).then_some(attr.st_gid);
        let (uid, gid) = match self.idmap.get() {
            Some(map) => match map.chown_to_host(uid, gid) {
                Ok(ids) => ids,
                Err(_) => return Ok(Some(RefusalRule::Ownership)),
            },
            None => (uid, gid),
        };
        let (now, _) = self.inner.getattr(&Context::default(), inode, None)?;
        if uid.is_some_and(|u| u != now.st_uid) || gid.is_some_and(|g| g != now.st_gid) {
            return Ok(Some(RefusalRule::Ownership));
        }
        // Nothing changes hands: do not even pass the no-op on.
        valid.remove(SetattrValid::UID | SetattrValid::GID);
        Ok(None)
    }

    /// A LINK or RENAME must not carry a setuid/setgid file to a new
    /// name: it could make a privileged program reachable by host users
    /// who could not reach it where it was. `Some(detail)` when `inode` is
    /// such a file.
    pub(super) fn setid_file(&self, inode: u64) -> io::Result<Option<String>> {
        let (st, _) = self.inner.getattr(&Context::default(), inode, None)?;
        let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
        Ok((regular && st.st_mode & SETID != 0)
            .then(|| format!("a file of mode {:o}", st.st_mode & 0o7777)))
    }

    /// The inode `name` in `parent` names, when it is a setuid/setgid
    /// file (see [`MediatedLayer::setid_file`]).
    pub(super) fn setid_entry(
        &self,
        ctx: &Context,
        parent: u64,
        name: &std::ffi::CStr,
    ) -> io::Result<Option<String>> {
        let entry = match self.inner.lookup(ctx, parent, name) {
            Ok(e) => e,
            // Nothing there: the rename will say so itself.
            Err(_) => return Ok(None),
        };
        let found = if entry.attr.st_mode & libc::S_IFMT == libc::S_IFREG
            && entry.attr.st_mode & SETID != 0
        {
            Some(format!("a file of mode {:o}", entry.attr.st_mode & 0o7777))
        } else {
            None
        };
        // The lookup took a reference the kernel never saw.
        self.inner.forget(ctx, entry.inode, 1);
        Ok(found)
    }

    /// SETXATTR / REMOVEXATTR of `name` on `inode`: refused and reported.
    pub(super) fn xattr_refused(
        &self,
        ctx: &Context,
        inode: u64,
        name: &std::ffi::CStr,
        call: &str,
    ) -> io::Error {
        let path = self.node(inode).map(|(p, _)| p).unwrap_or_default();
        let attr = crate::printable_path(name.to_bytes());
        self.refuse(
            ctx,
            crate::FileAccess::Write,
            crate::FileOp::SetAttr,
            path.as_bytes(),
            RefusalRule::ExtendedAttribute,
            format!("{call} {attr}"),
        )
    }

    /// Before `inode` is written, truncated or extended: clear the setuid
    /// and setgid bits of a regular file that has them.
    pub(super) fn drop_setid(&self, inode: u64) -> io::Result<()> {
        let ctx = Context::default();
        let (st, _) = self.inner.getattr(&ctx, inode, None)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & SETID == 0 {
            return Ok(());
        }
        let mut attr = st;
        attr.st_mode = st.st_mode & !SETID;
        self.inner
            .setattr(&ctx, inode, attr, None, SetattrValid::MODE)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_modes_lose_special_bits_and_get_the_umask() {
        let file = libc::S_IFREG;
        let dir = libc::S_IFDIR;
        assert_eq!(creation_mode(file | 0o4755, 0, 0o027), file | 0o750);
        assert_eq!(creation_mode(file | 0o6777, 0o022, 0o027), file | 0o750);
        assert_eq!(creation_mode(file | 0o1666, 0, 0), file | 0o666);
        assert_eq!(creation_mode(dir | 0o2777, 0, 0o027), dir | 0o750);
        // Sticky is kept on directories only.
        assert_eq!(creation_mode(dir | 0o1777, 0, 0o027), dir | 0o1750);
        assert_eq!(
            creation_mode(libc::S_IFIFO | 0o666, 0o002, 0o027),
            libc::S_IFIFO | 0o640
        );
    }

    #[test]
    fn privileged_bits_by_kind() {
        assert_ne!(privileged_bits(0o4755, libc::S_IFREG), 0);
        assert_ne!(privileged_bits(0o2755, libc::S_IFDIR), 0);
        assert_ne!(privileged_bits(0o1644, libc::S_IFREG), 0);
        assert_eq!(privileged_bits(0o1777, libc::S_IFDIR), 0);
        assert_eq!(privileged_bits(0o755, libc::S_IFREG), 0);
    }

    #[test]
    fn device_nodes() {
        assert!(is_device(libc::S_IFCHR | 0o666));
        assert!(is_device(libc::S_IFBLK | 0o600));
        assert!(!is_device(libc::S_IFIFO | 0o600));
        assert!(!is_device(libc::S_IFSOCK | 0o600));
        assert!(!is_device(libc::S_IFREG | 0o600));
    }
}
