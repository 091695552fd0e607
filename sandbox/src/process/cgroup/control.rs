//! The control files of one cgroup directory: limits written and usage
//! read in the dialect of its hierarchy (v2's `memory.max`, v1's
//! `memory.limit_in_bytes`, …).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::{Controller, Version};
use crate::resources::{GroupLimits, GroupUsage};

/// One cgroup directory in one hierarchy, and the controllers stele uses
/// through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The directory.
    pub dir: PathBuf,
    /// Its hierarchy's version.
    pub version: Version,
    /// The controllers (of [`Controller::ALL`]) that live in this hierarchy.
    pub controllers: Vec<Controller>,
}

/// Write `value` to the control file `dir/name` (one `write(2)`, as the
/// kernel wants).
pub(crate) fn write(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// A node's stat files ([`Node::stat_files`]), opened once and read from
/// the start each time (the kernel regenerates the text): no open and
/// close per read on a command's path.
#[derive(Debug)]
pub(crate) struct OpenStats(Vec<(&'static str, std::fs::File)>);

impl OpenStats {
    /// Open what `node` reads (a file this kernel lacks is left out).
    pub fn open(node: &Node) -> OpenStats {
        OpenStats(
            node.stat_files()
                .into_iter()
                .filter_map(|f| std::fs::File::open(node.dir.join(f)).ok().map(|h| (f, h)))
                .collect(),
        )
    }

    /// The current text of `name`.
    pub fn read(&self, name: &str) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let (_, f) = self.0.iter().find(|(f, _)| *f == name)?;
        let mut buf = vec![0u8; 4096];
        let len = f.read_at(&mut buf, 0).ok()?;
        buf.truncate(len);
        String::from_utf8(buf).ok()
    }

    /// Add what `node` (these stats' node) accounts to `u`.
    pub fn usage(&self, node: &Node, u: &mut GroupUsage) {
        node.usage_from(u, &|name| self.read(name));
    }
}

/// The contents of `dir/name`, `None` when the file does not exist (an
/// older kernel without it).
pub(crate) fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

/// `key value` lines (`memory.events`, `cpu.stat`, `pids.events`,
/// `memory.oom_control`): the value of `key`.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Node {
    fn has(&self, c: Controller) -> bool {
        self.controllers.contains(&c)
    }

    /// Write `limits` for the controllers of this node (a `None` leaves the
    /// kernel's default: no limit).
    pub fn apply(&self, limits: &GroupLimits) -> io::Result<()> {
        let d = &self.dir;
        match self.version {
            Version::V2 => {
                if self.has(Controller::Memory) {
                    if let Some(m) = limits.memory_bytes {
                        write(d, "memory.max", &m.to_string())?;
                        // The limit is a limit on RAM *and* swap: nothing
                        // may be pushed out to swap beyond it.
                        if d.join("memory.swap.max").exists() {
                            write(d, "memory.swap.max", "0")?;
                        }
                    }
                }
                if self.has(Controller::Pids) {
                    if let Some(p) = limits.processes {
                        write(d, "pids.max", &p.to_string())?;
                    }
                }
                if self.has(Controller::Cpu) {
                    if let Some(c) = limits.cpu {
                        let period = crate::resources::MilliCpus::PERIOD_US;
                        write(d, "cpu.max", &format!("{} {period}", c.quota_us()))?;
                    }
                }
            }
            Version::V1 => {
                if self.has(Controller::Memory) {
                    if let Some(m) = limits.memory_bytes {
                        write(d, "memory.limit_in_bytes", &m.to_string())?;
                        // With swap accounting, memory+swap gets the same
                        // limit: no swap beyond it.
                        if d.join("memory.memsw.limit_in_bytes").exists() {
                            write(d, "memory.memsw.limit_in_bytes", &m.to_string())?;
                        }
                    }
                }
                if self.has(Controller::Pids) {
                    if let Some(p) = limits.processes {
                        write(d, "pids.max", &p.to_string())?;
                    }
                }
                if self.has(Controller::Cpu) {
                    if let Some(c) = limits.cpu {
                        let period = crate::resources::MilliCpus::PERIOD_US;
                        write(d, "cpu.cfs_period_us", &period.to_string())?;
                        write(d, "cpu.cfs_quota_us", &c.quota_us().to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The control files [`Node::usage`] reads.
    pub fn stat_files(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        match self.version {
            Version::V2 => {
                f.push("cpu.stat");
                if self.has(Controller::Memory) {
                    f.extend(["memory.peak", "memory.events"]);
                }
                if self.has(Controller::Pids) {
                    f.extend(["pids.peak", "pids.events"]);
                }
            }
            Version::V1 => {
                if self.has(Controller::Memory) {
                    f.extend([
                        "memory.max_usage_in_bytes",
                        "memory.failcnt",
                        "memory.memsw.failcnt",
                        "memory.oom_control",
                    ]);
                }
                if self.has(Controller::Pids) {
                    f.extend(["pids.peak", "pids.events"]);
                }
                if self.has(Controller::Cpu) {
                    f.push("cpu.stat");
                }
            }
        }
        f
    }

    /// Add what this node accounts to `u`, reading its files from disk.
    pub fn usage(&self, u: &mut GroupUsage) {
        self.usage_from(u, &|name| read(&self.dir, name));
    }

    /// Add what this node accounts to `u`, reading file `name` (one of
    /// [`Node::stat_files`]) with `read`.
    pub fn usage_from(&self, u: &mut GroupUsage, read: &dyn Fn(&str) -> Option<String>) {
        let single = |name: &str| read(name).and_then(|s| s.trim().parse::<u64>().ok());
        match self.version {
            Version::V2 => {
                // CPU time is core v2 accounting, there with or without
                // the cpu controller.
                if let Some(stat) = read("cpu.stat") {
                    let us = |k| keyed(&stat, k).map(Duration::from_micros);
                    u.cpu_user = us("user_usec").unwrap_or_default();
                    u.cpu_system = us("system_usec").unwrap_or_default();
                    if self.has(Controller::Cpu) {
                        u.cpu_throttled = us("throttled_usec").unwrap_or_default();
                        u.cpu_throttled_periods = keyed(&stat, "nr_throttled").unwrap_or(0);
                    }
                }
                if self.has(Controller::Memory) {
                    u.memory_peak_bytes = single("memory.peak");
                    if let Some(ev) = read("memory.events") {
                        u.oom_kills = keyed(&ev, "oom_kill").unwrap_or(0);
                        u.memory_limit_events = keyed(&ev, "max").unwrap_or(0);
                    }
                }
                if self.has(Controller::Pids) {
                    u.processes_peak = single("pids.peak");
                    if let Some(ev) = read("pids.events") {
                        u.process_limit_events = keyed(&ev, "max").unwrap_or(0);
                    }
                }
            }
            Version::V1 => {
                if self.has(Controller::Memory) {
                    u.memory_peak_bytes = single("memory.max_usage_in_bytes");
                    // With swap accounting the memory+swap counter (same
                    // limit) is charged first and fails first.
                    u.memory_limit_events = single("memory.failcnt").unwrap_or(0)
                        + single("memory.memsw.failcnt").unwrap_or(0);
                    if let Some(oc) = read("memory.oom_control") {
                        u.oom_kills = keyed(&oc, "oom_kill").unwrap_or(0);
                    }
                }
                if self.has(Controller::Pids) {
                    u.processes_peak = single("pids.peak");
                    if let Some(ev) = read("pids.events") {
                        u.process_limit_events = keyed(&ev, "max").unwrap_or(0);
                    }
                }
                if self.has(Controller::Cpu) {
                    if let Some(stat) = read("cpu.stat") {
                        u.cpu_throttled =
                            Duration::from_nanos(keyed(&stat, "throttled_time").unwrap_or(0));
                        u.cpu_throttled_periods = keyed(&stat, "nr_throttled").unwrap_or(0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let ev = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(ev, "max"), Some(17));
        assert_eq!(keyed(ev, "oom_kill"), Some(1));
        assert_eq!(keyed(ev, "oom"), Some(2));
        assert_eq!(keyed(ev, "nope"), None);
        let oc = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oc, "oom_kill"), Some(3));
    }

    #[test]
    fn usage_of_a_v2_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 9\nnr_throttled 4\nthrottled_usec 7000\n").unwrap();
        std::fs::write(d.join("memory.peak"), "123456\n").unwrap();
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(d.join("pids.events"), "max 3\n").unwrap();
        let node = Node {
            dir: d.to_path_buf(),
            version: Version::V2,
            controllers: Controller::ALL.to_vec(),
        };
        let mut u = GroupUsage::default();
        node.usage(&mut u);
        assert_eq!(u.cpu_user, Duration::from_millis(1));
        assert_eq!(u.cpu_system, Duration::from_micros(500));
        assert_eq!(u.cpu_throttled, Duration::from_millis(7));
        assert_eq!(u.cpu_throttled_periods, 4);
        assert_eq!(u.memory_peak_bytes, Some(123_456));
        assert_eq!((u.oom_kills, u.memory_limit_events), (1, 5));
        assert_eq!((u.processes_peak, u.process_limit_events), (None, 3));
    }
}
