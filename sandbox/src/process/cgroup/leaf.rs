//! One command's group (or the micro-VM's QEMU's): made ahead of time,
//! entered by the clone, read when the command ends, and removed in the
//! background.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use super::control::{Node, OpenStats};
use super::layout::{Controller, Version};
use super::slots::MemSlot;
use super::tree;
use crate::resources::{GroupLimits, GroupUsage};

/// Work for the session's janitor thread.
pub(crate) enum Job {
    /// Make a spare leaf for the next command.
    Prepare,
    /// Kill what is left in a leaf and remove it (v2 directory first).
    Remove(Vec<PathBuf>),
    /// Reset a memory slot and put it back in the session's pool.
    Recycle(MemSlot),
    /// Finish and exit.
    Stop,
}

/// What a v1 hierarchy records only in the group where it happened (a
/// leaf's OOM kills, and its refused forks whichever group's limit refused
/// them), summed over the session's finished leaves; v2 counts both
/// hierarchically.
#[derive(Debug, Default)]
pub(crate) struct V1Events {
    /// Processes OOM-killed.
    pub oom_kills: AtomicU64,
    /// Forks refused.
    pub fork_failures: AtomicU64,
}

/// One command's group, removed when finished or dropped.
#[derive(Debug)]
pub struct LeafGroup {
    homes: Arc<Vec<File>>,
    nodes: Vec<Node>,
    dir_fd: OwnedFd,
    kill: File,
    /// One `tasks` per v1 hierarchy, in `homes` order.
    tasks: Vec<File>,
    /// The files `usage` reads, opened ahead, per node.
    stats: Vec<OpenStats>,
    /// The reused v1 memory group, where the host has one.
    slot: Option<MemSlot>,
    limits: GroupLimits,
    janitor: Option<mpsc::Sender<Job>>,
    /// The session's counts of what v1 records only in the leaf.
    v1_events: Arc<V1Events>,
    finished: bool,
}

/// The spawning thread's stay in a leaf's v1 groups; back home on drop.
#[derive(Debug)]
pub struct ThreadInLeaf<'a> {
    homes: &'a [File],
}

impl Drop for ThreadInLeaf<'_> {
    fn drop(&mut self) {
        for mut h in self.homes {
            // "0" is the calling thread. A failure leaves this thread
            // counted in the leaf, which then cannot be removed: visible,
            // never an escape of the command.
            let _ = h.write_all(b"0");
        }
    }
}

/// The controllers of `node`'s hierarchy a command's leaf uses: memory and
/// pids always (their peaks are the command's figures), cpu only when
/// commands have a CPU limit of their own (else the command shares the
/// session's CPU group, if there is one; see `tree::used_controllers`).
pub(crate) fn leaf_controllers(node: &Node, limits: &GroupLimits) -> Vec<Controller> {
    node.controllers
        .iter()
        .copied()
        .filter(|c| *c != Controller::Cpu || limits.cpu.is_some())
        .collect()
}

fn open(path: &Path, flags: libc::c_int, write: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl LeafGroup {
    /// Make leaf `name` under the session's `session` nodes with `limits`.
    pub(crate) fn create(
        session: &[Node],
        homes: Arc<Vec<File>>,
        name: &str,
        limits: &GroupLimits,
        janitor: Option<mpsc::Sender<Job>>,
        v1_events: Arc<V1Events>,
        slot: Option<MemSlot>,
    ) -> io::Result<LeafGroup> {
        // The v2 node always; a v1 node where the leaf has a controller
        // (elsewhere the command stays in the session's group), except
        // the memory one when a reused slot stands in for it.
        let nodes: Vec<Node> = session
            .iter()
            .enumerate()
            .filter(|(_, n)| slot.is_none() || !MemSlot::fits(n))
            .filter_map(|(i, n)| {
                let controllers = leaf_controllers(n, limits);
                (i == 0 || !controllers.is_empty()).then(|| Node {
                    dir: n.dir.join(name),
                    version: n.version,
                    controllers,
                })
            })
            .collect();
        let mut made = Vec::new();
        let setup = (|| -> io::Result<_> {
            for n in &nodes {
                tree::mkdir(&n.dir)?;
                made.push(n.dir.clone());
                n.apply(limits)?;
            }
            let dir = open(&nodes[0].dir, libc::O_DIRECTORY, false)?;
            let kill = open(&nodes[0].dir.join("cgroup.kill"), 0, true)?;
            let tasks = session[1..]
                .iter()
                .map(|s| {
                    if let Some(slot) = slot.as_ref().filter(|_| MemSlot::fits(s)) {
                        return slot.tasks();
                    }
                    let dir = nodes
                        .iter()
                        .find(|n| n.dir.parent() == Some(s.dir.as_path()))
                        .map_or(&s.dir, |n| &n.dir);
                    open(&dir.join("tasks"), 0, true)
                })
                .collect::<io::Result<Vec<_>>>()?;
            let stats = nodes.iter().map(OpenStats::open).collect();
            Ok((OwnedFd::from(dir), kill, tasks, stats))
        })();
        match setup {
            Ok((dir_fd, kill, tasks, stats)) => Ok(LeafGroup {
                homes,
                nodes,
                dir_fd,
                kill,
                tasks,
                stats,
                slot,
                limits: *limits,
                janitor,
                v1_events,
                finished: false,
            }),
            Err(e) => {
                tree::remove_dirs(&made);
                if let Some(s) = slot {
                    s.remove();
                }
                Err(e)
            }
        }
    }

    /// The v2 directory's descriptor, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn clone_fd(&self) -> RawFd {
        self.dir_fd.as_raw_fd()
    }

    /// The leaf's v2 directory.
    pub fn dir(&self) -> &Path {
        &self.nodes[0].dir
    }

    /// Move the calling thread into the leaf's v1 groups (none on a pure
    /// v2 host) until the returned guard drops; a process cloned meanwhile
    /// starts in them.
    pub fn enter_thread(&self) -> io::Result<ThreadInLeaf<'_>> {
        for (i, mut t) in self.tasks.iter().enumerate() {
            if let Err(e) = t.write_all(b"0") {
                // Back out of the ones already entered.
                drop(ThreadInLeaf {
                    homes: &self.homes[..i],
                });
                return Err(io::Error::new(
                    e.kind(),
                    format!("entering the command's v1 cgroups: {e}"),
                ));
            }
        }
        Ok(ThreadInLeaf { homes: &self.homes })
    }

    /// Kill every process in the leaf at once (`cgroup.kill`).
    pub fn kill(&self) {
        let _ = (&self.kill).write_all(b"1");
    }

    /// The leaf's `cgroup.procs`, open for writing: a process that writes
    /// `0` to it moves itself into the leaf (for a child that cannot be
    /// cloned into it, e.g. a `CLONE_VM` one). Only on a v2-only layout
    /// (v1 hierarchies would need their own moves).
    pub fn procs_file(&self) -> io::Result<File> {
        if self.nodes.len() != 1 || !self.tasks.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "moving into a leaf by cgroup.procs needs a v2-only layout",
            ));
        }
        open(&self.nodes[0].dir.join("cgroup.procs"), 0, true)
    }

    /// The processes in the leaf now.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        std::fs::read_to_string(self.nodes[0].dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kill everything in the leaf and wait until it is empty (the last
    /// process gone, reaped); `false` if it is not within `timeout`.
    pub fn kill_and_wait(&self, timeout: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        loop {
            if !tree::populated(self.dir()) {
                return true;
            }
            self.kill();
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The leaf's open `cgroup.kill`, for the wait loop.
    pub fn killer(&self) -> &File {
        &self.kill
    }

    /// What the leaf's processes used so far.
    pub fn usage(&self) -> GroupUsage {
        let mut u = GroupUsage {
            limits: Some(self.limits),
            ..GroupUsage::default()
        };
        for (n, stats) in self.nodes.iter().zip(&self.stats) {
            stats.usage(n, &mut u);
        }
        if let Some(s) = &self.slot {
            s.usage_into(&mut u);
        }
        u
    }

    /// What the leaf's processes used; then the leaf is killed (should
    /// anything remain) and removed, in the background when the session has
    /// its janitor.
    pub fn finish(mut self) -> GroupUsage {
        let u = self.usage();
        let v1 = |c| {
            self.slot.is_some() && c == Controller::Memory
                || self
                    .nodes
                    .iter()
                    .any(|n| n.version == Version::V1 && n.controllers.contains(&c))
        };
        if v1(Controller::Memory) {
            self.v1_events
                .oom_kills
                .fetch_add(u.oom_kills, Ordering::Relaxed);
        }
        if v1(Controller::Pids) {
            self.v1_events
                .fork_failures
                .fetch_add(u.process_limit_events, Ordering::Relaxed);
        }
        self.remove();
        u
    }

    fn remove(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let dirs: Vec<PathBuf> = self.nodes.iter().map(|n| n.dir.clone()).collect();
        let Some(janitor) = self.janitor.take() else {
            tree::remove_group(&dirs);
            if let Some(s) = self.slot.take() {
                s.remove();
            }
            return;
        };
        // The leaf first: once its processes are gone the slot empties.
        if let Err(mpsc::SendError(Job::Remove(dirs))) = janitor.send(Job::Remove(dirs)) {
            tree::remove_group(&dirs);
        }
        if let Some(s) = self.slot.take() {
            if let Err(mpsc::SendError(Job::Recycle(s))) = janitor.send(Job::Recycle(s)) {
                s.remove();
            }
        }
    }
}

impl Drop for LeafGroup {
    fn drop(&mut self) {
        self.remove();
    }
}
