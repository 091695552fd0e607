//! Which command a file-system request comes from.
//!
//! A sandbox keeps one file server for all its commands (starting one per
//! command costs more than the rest of a spawn), so the server must learn
//! from each request which command is asking. Every command runs in its own
//! pid namespace and cannot leave it (seccomp denies new namespaces), so the
//! requesting process's pid namespace names the command: the process backend
//! registers each command's namespace before the command starts and removes
//! it when the command has ended.
//!
//! Resolving costs a `stat` of `/proc/<pid>/ns/pid` (about 6 µs here). While
//! only one command is registered the answer per host pid is cached: a pid
//! recycled inside that command still belongs to it. The cache is dropped
//! whenever a command starts or ends, and nothing is cached while several
//! commands run at once, so a pid recycled from one command into another is
//! never attributed to the wrong one. A request whose process is gone or
//! belongs to no registered command is refused (EACCES) without asking the
//! mediator: it can come from no command stele is running.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::Requester;

/// A command the file server serves, as the layer tags its handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandRef {
    /// Unique per registration (exec ids need not be unique).
    pub serial: u64,
    /// The command's `ExecRequest::id`.
    pub exec_id: Arc<str>,
}

#[derive(Debug, Default)]
struct State {
    /// pid namespace inode → command.
    by_ns: HashMap<u64, CommandRef>,
    /// host pid → (command, pid inside its namespace); only while one command runs.
    cache: HashMap<u32, (CommandRef, Option<u32>)>,
    /// Bumped on every change of `by_ns`.
    generation: u64,
    next_serial: u64,
}

/// The commands a shared file server currently serves, by pid namespace.
#[derive(Debug, Default)]
pub struct CommandTable {
    state: RwLock<State>,
}

/// A registered command; dropping it (or [`CommandTable::unregister`]) ends
/// the registration.
#[derive(Debug)]
pub struct Registration {
    table: Arc<CommandTable>,
    pid_ns: u64,
    serial: u64,
}

impl Registration {
    /// The registration's serial number (tags the command's open handles).
    pub fn serial(&self) -> u64 {
        self.serial
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.remove(self.pid_ns, self.serial);
    }
}

impl CommandTable {
    /// Attribute requests from processes in the pid namespace with inode
    /// `pid_ns` to the command `exec_id`, until the registration drops.
    pub fn register(self: &Arc<Self>, pid_ns: u64, exec_id: &str) -> Registration {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.next_serial += 1;
        let serial = s.next_serial;
        s.by_ns.insert(
            pid_ns,
            CommandRef {
                serial,
                exec_id: Arc::from(exec_id),
            },
        );
        s.generation += 1;
        s.cache.clear();
        Registration {
            table: self.clone(),
            pid_ns,
            serial,
        }
    }

    fn remove(&self, pid_ns: u64, serial: u64) {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if s.by_ns.get(&pid_ns).is_some_and(|c| c.serial == serial) {
            s.by_ns.remove(&pid_ns);
        }
        s.generation += 1;
        s.cache.clear();
    }

    /// The command (and the pid inside its namespace) of the process with
    /// host pid `host_pid`; `None` when it belongs to no registered command.
    pub(crate) fn resolve(&self, host_pid: libc::pid_t) -> Option<(CommandRef, Option<u32>)> {
        let pid = u32::try_from(host_pid).ok().filter(|p| *p > 0)?;
        let generation = {
            let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = s.cache.get(&pid) {
                return Some(hit.clone());
            }
            if s.by_ns.is_empty() {
                return None;
            }
            s.generation
        };
        let ns = pid_namespace(pid)?;
        let nspid = super::layer::sandbox_pid(host_pid);
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let cmd = s.by_ns.get(&ns)?.clone();
        if s.generation == generation && s.by_ns.len() == 1 {
            s.cache.insert(pid, (cmd.clone(), nspid));
        }
        Some((cmd, nspid))
    }

    /// Number of registered commands.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_ns
            .len()
    }

    /// Whether no command is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inode of the pid namespace of host process `pid`.
pub fn pid_namespace(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// Who the layer attributes requests to.
#[derive(Debug)]
pub(crate) enum Attribution {
    /// Everything to one requester (one server per command, tests, a VM).
    Fixed(Requester),
    /// By the requesting process's pid namespace (one server per sandbox).
    ByPidNamespace(Arc<CommandTable>),
}

impl Attribution {
    /// The requester of a request from host pid `host_pid`, and the command
    /// it belongs to; `None` means "no command of ours": refuse.
    pub(crate) fn requester(&self, host_pid: libc::pid_t) -> Option<(Requester, Option<u64>)> {
        match self {
            Attribution::Fixed(r) => {
                let mut r = r.clone();
                r.pid = super::layer::sandbox_pid(host_pid);
                Some((r, None))
            }
            Attribution::ByPidNamespace(table) => {
                let (cmd, pid) = table.resolve(host_pid)?;
                Some((
                    Requester {
                        pid,
                        exec_id: Some(cmd.exec_id.to_string()),
                    },
                    Some(cmd.serial),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_namespace_resolves_while_registered() {
        let me = std::process::id();
        let ns = pid_namespace(me).unwrap();
        let table = Arc::new(CommandTable::default());
        assert!(table.resolve(me as i32).is_none());
        let reg = table.register(ns, "exec-1");
        let (cmd, _) = table.resolve(me as i32).unwrap();
        assert_eq!(&*cmd.exec_id, "exec-1");
        assert_eq!(cmd.serial, reg.serial());
        // Cached now; still right.
        assert_eq!(&*table.resolve(me as i32).unwrap().0.exec_id, "exec-1");
        drop(reg);
        assert!(
            table.resolve(me as i32).is_none(),
            "ended commands never match"
        );
        let other = table.register(ns + 1, "exec-2");
        assert!(table.resolve(me as i32).is_none(), "another namespace");
        drop(other);
        assert!(table.is_empty());
    }

    #[test]
    fn unknown_pids_are_refused() {
        let table = Arc::new(CommandTable::default());
        let _reg = table.register(1, "x");
        assert!(table.resolve(0).is_none());
        assert!(table.resolve(-5).is_none());
    }
}
