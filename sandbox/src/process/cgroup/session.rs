//! The session's group: the session's limits, one leaf per command under
//! it, and a janitor thread that makes the next command's leaf ahead of
//! time and removes finished ones, so neither is on a command's path.
//!
//! ```text
//! <v2 mount>/stele.slice/session-<pid>-<n>/cmd-<k>       membership, cgroup.kill, CPU time (+ v2 controllers)
//! <v1 mount>/<stele's own cgroup>/stele.slice/session-…  (hybrid hosts: memory, pids, cpu in v1)
//! ```
//!
//! A command's init is cloned straight into its v2 leaf
//! (`clone3(CLONE_INTO_CGROUP)`), so no process of it ever runs outside.
//! v1 hierarchies have no such flag: the spawning *thread* moves itself
//! into the v1 leaves just around the clone (the child inherits its
//! thread's cgroups) and back. A thread moving itself takes no global
//! lock; moving a whole process (`cgroup.procs`) takes the cgroup
//! threadgroup lock for writing, which cost 12 ms per command here.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::control::{Node, OpenStats};
use super::layout::Layout;
use super::leaf::{Job, LeafGroup, V1Events};
use super::slots::MemSlot;
use super::{tree, CgroupUnavailable};
use crate::resources::{GroupLimits, GroupUsage, ResourceLimits, DEFAULT_CGROUP_PARENT};

/// What the session and its janitor share.
#[derive(Debug)]
struct Shared {
    /// The session's directory per hierarchy; `[0]` is the v2 one.
    nodes: Vec<Node>,
    /// `tasks` of stele's own cgroup in each v1 hierarchy (same order as
    /// `nodes[1..]`), to move the spawning thread back.
    homes: Arc<Vec<File>>,
    limits: ResourceLimits,
    next: AtomicU64,
    /// A leaf made ahead for the next command.
    spare: Mutex<Option<LeafGroup>>,
    /// What v1 groups record only in the leaves.
    v1_events: Arc<V1Events>,
    /// Reset v1 memory groups for the next commands (see `slots.rs`).
    slots: Mutex<Vec<MemSlot>>,
}

/// Whether a new leaf may take a reused memory group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryGroup {
    /// A slot from the pool, or a new one (commands, with the session's
    /// command limits).
    Reused,
    /// A fresh group of its own (other limits).
    Fresh,
}

impl Shared {
    fn make_leaf(
        &self,
        limits: &GroupLimits,
        janitor: Option<mpsc::Sender<Job>>,
        memory: MemoryGroup,
    ) -> std::io::Result<LeafGroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = match (memory, self.nodes.iter().find(|n| MemSlot::fits(n))) {
            (MemoryGroup::Reused, Some(parent)) => {
                let pooled = self
                    .slots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                Some(match pooled {
                    Some(s) => s,
                    None => MemSlot::create(parent, &format!("mem-{n}"), limits)?,
                })
            }
            _ => None,
        };
        LeafGroup::create(
            &self.nodes,
            self.homes.clone(),
            &format!("cmd-{n}"),
            limits,
            janitor,
            self.v1_events.clone(),
            slot,
        )
    }
}

/// A session's cgroup in every hierarchy the host uses.
#[derive(Debug)]
pub struct SessionGroup {
    layout: Layout,
    shared: Arc<Shared>,
    /// The session nodes' stat files, opened once.
    stats: Vec<OpenStats>,
    janitor: Mutex<Option<(mpsc::Sender<Job>, JoinHandle<()>)>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> CgroupUnavailable {
    CgroupUnavailable(format!("{what}: {e}"))
}

fn janitor(shared: Arc<Shared>, tx: mpsc::Sender<Job>, rx: mpsc::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Prepare => {
                let mut spare = shared.spare.lock().unwrap_or_else(PoisonError::into_inner);
                if spare.is_none() {
                    // A failure here shows again, as an error, when the
                    // next command makes its leaf itself.
                    *spare = shared
                        .make_leaf(
                            &shared.limits.command,
                            Some(tx.clone()),
                            MemoryGroup::Reused,
                        )
                        .ok();
                }
            }
            Job::Remove(dirs) => tree::remove_group(&dirs),
            Job::Recycle(mut slot) => match slot.reset() {
                Ok(()) => shared
                    .slots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(slot),
                Err(_) => slot.remove(),
            },
            Job::Stop => break,
        }
    }
}

impl SessionGroup {
    /// Create a session group with `limits.session` under stele's subtree
    /// (made on first use). Any failure is an error naming the step.
    pub fn create(limits: &ResourceLimits) -> Result<SessionGroup, CgroupUnavailable> {
        limits.validate().map_err(CgroupUnavailable)?;
        let layout = Layout::discover().map_err(|e| unavailable("reading the cgroup layout", e))?;
        let parent = limits
            .cgroup_parent
            .as_deref()
            .unwrap_or(DEFAULT_CGROUP_PARENT);
        let bases = tree::bases(&layout, parent, &tree::used_controllers(limits))?;
        let mount = layout
            .unified
            .as_ref()
            .map(|u| u.mount.clone())
            .unwrap_or_default();
        tree::prepare_bases(&mount, &bases)?;
        tree::clean_stale(&bases);
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "session-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let nodes: Vec<Node> = bases
            .iter()
            .map(|b| Node {
                dir: b.dir.join(&name),
                ..b.clone()
            })
            .collect();
        let mut made = Vec::new();
        let setup = (|| -> std::io::Result<Vec<File>> {
            for n in &nodes {
                tree::mkdir(&n.dir)?;
                made.push(n.dir.clone());
                n.apply(&limits.session)?;
            }
            tree::enable_for_children(
                &nodes[0].dir,
                &super::leaf::leaf_controllers(&nodes[0], &limits.command),
            )?;
            // The thread goes back to stele's own cgroup: the parent of
            // the v1 base (`<own>/stele.slice/<session>`).
            nodes[1..]
                .iter()
                .map(|n| {
                    let own = n
                        .dir
                        .parent()
                        .and_then(Path::parent)
                        .unwrap_or(Path::new("/"));
                    let tasks = own.join("tasks");
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_CLOEXEC)
                        .open(&tasks)
                        .map_err(|e| {
                            std::io::Error::new(e.kind(), format!("{}: {e}", tasks.display()))
                        })
                })
                .collect()
        })();
        let homes = match setup {
            Ok(h) => h,
            Err(e) => {
                tree::remove_dirs(&made);
                return Err(unavailable("creating the session's cgroup", e));
            }
        };
        let shared = Arc::new(Shared {
            nodes,
            homes: Arc::new(homes),
            limits: limits.clone(),
            next: AtomicU64::new(1),
            spare: Mutex::new(None),
            v1_events: Arc::default(),
            slots: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel();
        let worker = {
            let (shared, tx) = (shared.clone(), tx.clone());
            std::thread::Builder::new()
                .name("stele-cgroups".into())
                .spawn(move || janitor(shared, tx, rx))
        };
        // Without the thread, leaves are made and removed inline.
        let janitor = worker.ok().map(|h| (tx, h));
        if let Some((tx, _)) = &janitor {
            let _ = tx.send(Job::Prepare);
        }
        Ok(SessionGroup {
            layout,
            stats: shared.nodes.iter().map(OpenStats::open).collect(),
            shared,
            janitor: Mutex::new(janitor),
        })
    }

    /// The host's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The limits in force.
    pub fn limits(&self) -> &ResourceLimits {
        &self.shared.limits
    }

    /// The session's v2 directory.
    pub fn dir(&self) -> &Path {
        &self.shared.nodes[0].dir
    }

    /// What the session's processes used so far (all commands together).
    pub fn usage(&self) -> GroupUsage {
        let mut u = GroupUsage {
            limits: Some(self.shared.limits.session),
            ..GroupUsage::default()
        };
        for (n, stats) in self.shared.nodes.iter().zip(&self.stats) {
            stats.usage(n, &mut u);
        }
        let v1 = &self.shared.v1_events;
        u.oom_kills = u.oom_kills.max(v1.oom_kills.load(Ordering::Relaxed));
        u.process_limit_events = u
            .process_limit_events
            .max(v1.fork_failures.load(Ordering::Relaxed));
        u
    }

    fn janitor_tx(&self) -> Option<mpsc::Sender<Job>> {
        self.janitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(tx, _)| tx.clone())
    }

    /// A leaf for the next command, with the session's command limits
    /// (made ahead of time when possible).
    pub fn command_leaf(&self) -> std::io::Result<LeafGroup> {
        let spare = self
            .shared
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let tx = self.janitor_tx();
        let leaf = match spare {
            Some(l) => l,
            None => self.shared.make_leaf(
                &self.shared.limits.command,
                tx.clone(),
                MemoryGroup::Reused,
            )?,
        };
        if let Some(tx) = tx {
            let _ = tx.send(Job::Prepare);
        }
        Ok(leaf)
    }

    /// A new leaf with `limits` (made now).
    pub fn leaf(&self, limits: &GroupLimits) -> std::io::Result<LeafGroup> {
        self.shared
            .make_leaf(limits, self.janitor_tx(), MemoryGroup::Fresh)
    }
}

impl Drop for SessionGroup {
    fn drop(&mut self) {
        let janitor = self
            .janitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, handle)) = janitor {
            let _ = tx.send(Job::Stop);
            drop(tx);
            let _ = handle.join();
        }
        // The spare and the pooled slots go with the session.
        drop(
            self.shared
                .spare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let slots: Vec<MemSlot> = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for s in slots {
            s.remove();
        }
        let dirs: Vec<_> = self.shared.nodes.iter().map(|n| n.dir.clone()).collect();
        tree::remove_group(&dirs);
    }
}
