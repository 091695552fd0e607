//! Where the cgroup controllers live on this host, read from
//! `/proc/self/mountinfo` and `/proc/self/cgroup`.
//!
//! Three layouts exist in the wild: the unified cgroup v2 hierarchy with
//! every controller (current distributions), the *hybrid* one (a v2
//! hierarchy, often at `/sys/fs/cgroup/unified`, with the controllers
//! bound to v1 hierarchies; older systemd hosts and some VM/container
//! hosts, including our CI machines), and v1 only. stele needs the v2
//! hierarchy for membership (`CLONE_INTO_CGROUP`), killing (`cgroup.kill`)
//! and CPU time; each of memory, pids and cpu is used where the kernel has
//! it: in v2 when the root of the v2 hierarchy offers it, else in its v1
//! hierarchy.

use std::fmt;
use std::path::{Path, PathBuf};

/// A controller stele limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    /// Memory.
    Memory,
    /// Number of processes.
    Pids,
    /// CPU bandwidth.
    Cpu,
}

impl Controller {
    /// All of them.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// Which cgroup version a hierarchy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy.
    V2,
    /// A legacy per-controller hierarchy.
    V1,
}

/// One mounted hierarchy and stele's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// stele's own cgroup directory in it.
    pub own: PathBuf,
}

/// Where one controller is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In the unified (v2) hierarchy.
    Unified,
    /// In this v1 hierarchy.
    V1(Hierarchy),
    /// Nowhere (not compiled in, or not mounted).
    Missing,
}

/// The host's cgroup layout, as seen by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The unified hierarchy, if mounted.
    pub unified: Option<Hierarchy>,
    /// Memory, pids and cpu, in [`Controller::ALL`] order.
    pub controllers: [(Controller, Placement); 3],
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl Layout {
    /// Read this process's view of the host.
    pub fn discover() -> std::io::Result<Layout> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let unified_root_controllers = |mount: &Path| {
            std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default()
        };
        Ok(Layout::from_tables(
            &mountinfo,
            &own,
            unified_root_controllers,
        ))
    }

    /// The layout described by a mountinfo table, a `/proc/<pid>/cgroup`
    /// table, and the controllers the v2 hierarchy's root offers.
    pub fn from_tables(
        mountinfo: &str,
        own_cgroups: &str,
        v2_controllers: impl Fn(&Path) -> String,
    ) -> Layout {
        let mounts = parse_mountinfo(mountinfo);
        let own = parse_own(own_cgroups);
        let own_in = |key: &str, root: &str, mount: &Path| -> PathBuf {
            let path = own
                .iter()
                .find(|(k, _)| k == key)
                .map_or("/", |(_, p)| p.as_str());
            // The mount shows `root` of the hierarchy; our path is relative
            // to the hierarchy's (or our cgroup namespace's) root.
            let rel = path
                .strip_prefix(root.trim_end_matches('/'))
                .unwrap_or(path)
                .trim_start_matches('/');
            if rel.is_empty() {
                mount.to_path_buf()
            } else {
                mount.join(rel)
            }
        };
        let unified = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .map(|m| Hierarchy {
                version: Version::V2,
                mount: m.point.clone(),
                own: own_in("", &m.root, &m.point),
            });
        let in_v2: Vec<String> = unified
            .as_ref()
            .map(|u| {
                v2_controllers(&u.mount)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let place = |c: Controller| -> Placement {
            if in_v2.iter().any(|n| n == c.name()) {
                return Placement::Unified;
            }
            for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
                let names: Vec<&str> = m.superopts.split(',').collect();
                if names.contains(&c.name()) {
                    // `/proc/self/cgroup` names a v1 hierarchy by its
                    // controller list in the kernel's order, e.g. "cpu,cpuacct".
                    let key = own
                        .iter()
                        .map(|(k, _)| k)
                        .find(|k| k.split(',').any(|n| n == c.name()))
                        .cloned()
                        .unwrap_or_else(|| c.name().to_string());
                    return Placement::V1(Hierarchy {
                        version: Version::V1,
                        mount: m.point.clone(),
                        own: own_in(&key, &m.root, &m.point),
                    });
                }
            }
            Placement::Missing
        };
        Layout {
            unified,
            controllers: Controller::ALL.map(|c| (c, place(c))),
        }
    }

    /// `"v2"` (everything unified), `"hybrid"` (v2 for membership, some
    /// controllers in v1), `"v1"` (no v2 hierarchy) or `"none"`.
    pub fn kind(&self) -> &'static str {
        let any_v1 = self
            .controllers
            .iter()
            .any(|(_, p)| matches!(p, Placement::V1(_)));
        match (&self.unified, any_v1) {
            (Some(_), false) => "v2",
            (Some(_), true) => "hybrid",
            (None, true) => "v1",
            (None, false) => "none",
        }
    }

    /// Where `c` is.
    pub fn placement(&self, c: Controller) -> &Placement {
        static MISSING: Placement = Placement::Missing;
        self.controllers
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(&MISSING, |(_, p)| p)
    }
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    superopts: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4);
        if b[i] == b'\\' {
            if let Some(oct) = oct.filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c))) {
                let oct = std::str::from_utf8(oct).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                root: unescape(pre.get(3)?),
                point: PathBuf::from(unescape(pre.get(4)?)),
                fstype: post.first()?.to_string(),
                superopts: post.get(2).map_or(String::new(), |s| s.to_string()),
            })
        })
        .collect()
}

/// `(controllers, path)` per line of `/proc/<pid>/cgroup`; the v2 line has
/// an empty controller list.
fn parse_own(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrl = parts.next()?;
            let path = parts.next()?;
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
1:cpu:/
2:cpuacct:/
0::/
";

    #[test]
    fn hybrid_host() {
        let l = Layout::from_tables(HYBRID_MOUNTS, HYBRID_OWN, |_| "hugetlb\n".into());
        assert_eq!(l.kind(), "hybrid");
        let u = l.unified.clone().unwrap();
        assert_eq!(u.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(u.own, Path::new("/sys/fs/cgroup/unified"));
        match l.placement(Controller::Memory) {
            Placement::V1(h) => {
                assert_eq!(h.mount, Path::new("/sys/fs/cgroup/memory"));
                assert_eq!(h.own, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
            }
            other => panic!("{other:?}"),
        }
        match l.placement(Controller::Cpu) {
            Placement::V1(h) => assert_eq!(h.own, Path::new("/sys/fs/cgroup/cpu")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unified_host() {
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let own = "0::/user.slice/user-0.slice/session-3.scope\n";
        let l = Layout::from_tables(mounts, own, |_| {
            "cpuset cpu io memory hugetlb pids\n".into()
        });
        assert_eq!(l.kind(), "v2");
        assert!(Controller::ALL
            .iter()
            .all(|c| *l.placement(*c) == Placement::Unified));
        assert_eq!(
            l.unified.unwrap().own,
            Path::new("/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope")
        );
    }

    #[test]
    fn combined_v1_hierarchy_and_escapes() {
        let mounts = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 /sub /mnt/my\\040cg rw - cgroup2 cgroup2 rw
";
        let own = "3:cpu,cpuacct:/a/b\n0::/sub/x\n";
        let l = Layout::from_tables(mounts, own, |_| String::new());
        match l.placement(Controller::Cpu) {
            Placement::V1(h) => assert_eq!(h.own, Path::new("/sys/fs/cgroup/cpu,cpuacct/a/b")),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.unified.clone().unwrap().own, Path::new("/mnt/my cg/x"));
        assert_eq!(*l.placement(Controller::Memory), Placement::Missing);
    }

    #[test]
    fn nothing_mounted() {
        let l = Layout::from_tables("", "", |_| String::new());
        assert_eq!(l.kind(), "none");
    }
}
