//! v1 memory groups reused from one command to the next.
//!
//! Creating a memory cgroup and tearing it down again (per-CPU state,
//! offlining and freeing in kernel workers) was most of what a command's
//! cgroups cost on a hybrid host: about 0.4 ms of a spawn, on a 2-CPU
//! machine. A v1 memory group's figures can be reset (peak and failure
//! counts; the OOM-kill count is taken as a baseline), so a session keeps
//! finished commands' memory groups as *slots* and hands them to the next
//! commands, once they are empty and reset. The other hierarchies'
//! leaves (v2 membership, pids) stay fresh per command: their creation is
//! cheap and `pids.peak` cannot be reset.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::control::{self, Node, OpenStats};
use super::layout::{Controller, Version};
use super::tree;
use crate::resources::{GroupLimits, GroupUsage};

/// One reusable v1 memory group.
#[derive(Debug)]
pub(crate) struct MemSlot {
    node: Node,
    tasks: File,
    stats: OpenStats,
    /// `oom_kill` when the slot was last handed out.
    baseline_oom_kills: u64,
}

fn open(path: &Path, write: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl MemSlot {
    /// Whether `node` (a session's node) is one slots are made in: a v1
    /// hierarchy with memory only.
    pub fn fits(node: &Node) -> bool {
        node.version == Version::V1 && node.controllers == [Controller::Memory]
    }

    /// A new slot `name` under the session's memory group `parent`.
    pub fn create(parent: &Node, name: &str, limits: &GroupLimits) -> io::Result<MemSlot> {
        let node = Node {
            dir: parent.dir.join(name),
            version: Version::V1,
            controllers: vec![Controller::Memory],
        };
        tree::mkdir(&node.dir)?;
        let opened = (|| {
            node.apply(limits)?;
            let tasks = open(&node.dir.join("tasks"), true)?;
            Ok::<_, io::Error>((tasks, OpenStats::open(&node)))
        })();
        match opened {
            Ok((tasks, stats)) => Ok(MemSlot {
                node,
                tasks,
                stats,
                baseline_oom_kills: 0,
            }),
            Err(e) => {
                tree::remove_dirs(std::slice::from_ref(&node.dir));
                Err(e)
            }
        }
    }

    /// A handle on its `tasks` (to move a thread in).
    pub fn tasks(&self) -> io::Result<File> {
        self.tasks.try_clone()
    }

    /// Add the slot's figures since it was handed out to `u`.
    pub fn usage_into(&self, u: &mut GroupUsage) {
        let mut own = GroupUsage::default();
        self.stats.usage(&self.node, &mut own);
        u.memory_peak_bytes = own.memory_peak_bytes;
        u.memory_limit_events = own.memory_limit_events;
        u.oom_kills = own.oom_kills.saturating_sub(self.baseline_oom_kills);
    }

    /// Make the slot ready for the next command: wait until its last task
    /// is gone, reset its peak and failure counts, take the OOM-kill
    /// baseline. An error means the slot should be removed instead.
    pub fn reset(&mut self) -> io::Result<()> {
        let until = Instant::now() + Duration::from_secs(2);
        while !control::read(&self.node.dir, "cgroup.procs")
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            if Instant::now() >= until {
                return Err(io::Error::other("processes left in a memory slot"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for f in [
            "memory.max_usage_in_bytes",
            "memory.failcnt",
            "memory.memsw.max_usage_in_bytes",
            "memory.memsw.failcnt",
        ] {
            if self.node.dir.join(f).exists() {
                control::write(&self.node.dir, f, "0")?;
            }
        }
        let mut u = GroupUsage::default();
        self.node.usage(&mut u);
        self.baseline_oom_kills = u.oom_kills;
        Ok(())
    }

    /// Remove the slot (when the session ends, or it could not be reset).
    pub fn remove(self) {
        let dir: PathBuf = self.node.dir.clone();
        drop(self);
        tree::remove_dirs(&[dir]);
    }
}
