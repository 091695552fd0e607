//! Making and removing stele's cgroup directories: the base subtree
//! (`stele.slice`) in each hierarchy, controllers enabled down to it, and
//! removal of groups (killing what is left first), including groups left
//! behind by a stele process that died.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::control::{self, Node};
use super::layout::{Controller, Layout, Placement, Version};
use super::CgroupUnavailable;
use crate::resources::ResourceLimits;

/// The directory name of v1 bases under stele's own cgroup.
const V1_BASE: &str = "stele.slice";
/// How long a group may stay populated after `cgroup.kill` before its
/// removal is given up (it is left for the next start's clean-up).
const KILL_WAIT: Duration = Duration::from_secs(2);

/// The controllers a session with `limits` uses: memory and pids always
/// (limits and the figures reported), cpu only when a CPU limit is
/// configured. Membership in a CPU group makes the scheduler treat the
/// group as one entity competing with the host's tasks; on a loaded host
/// that delayed every hand-over between stele and a new command (measured:
/// +13 ms per command at load 10 on 2 CPUs, against +1 ms for the memory
/// and pids groups), so CPU *time* is accounted by the v2 hierarchy's core
/// `cpu.stat` and CPU *bandwidth* is limited only when asked for.
pub(crate) fn used_controllers(limits: &ResourceLimits) -> Vec<Controller> {
    let cpu = limits.command.cpu.is_some() || limits.session.cpu.is_some();
    Controller::ALL
        .into_iter()
        .filter(|c| *c != Controller::Cpu || cpu)
        .collect()
}

/// The base directories per hierarchy, `[0]` the v2 one (`parent` under
/// the v2 mount), then one per v1 hierarchy in use (`stele.slice` under
/// stele's own cgroup there, so the host's limits on stele still bound it).
pub(crate) fn bases(
    layout: &Layout,
    parent: &str,
    used: &[Controller],
) -> Result<Vec<Node>, CgroupUnavailable> {
    let unified = layout.unified.as_ref().ok_or_else(|| {
        CgroupUnavailable(
            "no cgroup v2 hierarchy is mounted (needed for membership and cgroup.kill)".into(),
        )
    })?;
    let missing: Vec<&str> = layout
        .controllers
        .iter()
        .filter(|(c, p)| used.contains(c) && *p == Placement::Missing)
        .map(|(c, _)| c.name())
        .collect();
    if !missing.is_empty() {
        return Err(CgroupUnavailable(format!(
            "controller(s) {} available in neither the v2 nor a v1 hierarchy",
            missing.join(", ")
        )));
    }
    let mut nodes = vec![Node {
        dir: unified.mount.join(parent),
        version: Version::V2,
        controllers: layout
            .controllers
            .iter()
            .filter(|(c, p)| used.contains(c) && *p == Placement::Unified)
            .map(|(c, _)| *c)
            .collect(),
    }];
    for (c, p) in layout.controllers.iter().filter(|(c, _)| used.contains(c)) {
        if let Placement::V1(h) = p {
            let dir = h.own.join(V1_BASE);
            match nodes.iter_mut().find(|n| n.dir == dir) {
                Some(n) => n.controllers.push(*c),
                None => nodes.push(Node {
                    dir,
                    version: Version::V1,
                    controllers: vec![*c],
                }),
            }
        }
    }
    Ok(nodes)
}

/// `+memory +pids …` in `dir/cgroup.subtree_control`, where not on yet.
pub(crate) fn enable_for_children(dir: &Path, controllers: &[Controller]) -> io::Result<()> {
    let on = control::read(dir, "cgroup.subtree_control").unwrap_or_default();
    let want: Vec<String> = controllers
        .iter()
        .filter(|c| !on.split_whitespace().any(|n| n == c.name()))
        .map(|c| format!("+{}", c.name()))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    control::write(dir, "cgroup.subtree_control", &want.join(" "))
}

/// Create the bases: the v2 one with its controllers enabled down to it
/// (from the mount's root), the v1 ones.
pub(crate) fn prepare_bases(mount: &Path, bases: &[Node]) -> Result<(), CgroupUnavailable> {
    let v2 = &bases[0];
    let rel = v2.dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut dir = mount.to_path_buf();
    let step = |dir: &Path| -> io::Result<()> {
        match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
        }
    };
    let v2_result = (|| -> io::Result<()> {
        for part in rel.components() {
            enable_for_children(&dir, &v2.controllers)?;
            dir.push(part);
            step(&dir)?;
        }
        enable_for_children(&dir, &v2.controllers)
    })();
    v2_result.map_err(|e| {
        CgroupUnavailable(format!(
            "preparing stele's cgroup v2 subtree {} (stele must run as root, or the \
             configured parent must be delegated to it): {e}",
            v2.dir.display()
        ))
    })?;
    for b in &bases[1..] {
        step(&b.dir).map_err(|e| CgroupUnavailable(format!("creating stele's v1 subtree: {e}")))?;
    }
    Ok(())
}

/// `mkdir` naming the path in its error.
pub(crate) fn mkdir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

/// Remove `dirs` (parents before children in the list; removed deepest
/// first), retrying briefly while the kernel finishes releasing exited
/// tasks.
pub(crate) fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let until = Instant::now() + Duration::from_millis(200);
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break,
            }
        }
    }
}

/// Whether the v2 group at `dir` still has processes.
pub(crate) fn populated(dir: &Path) -> bool {
    control::read(dir, "cgroup.events")
        .and_then(|ev| control::keyed(&ev, "populated"))
        .is_some_and(|p| p != 0)
}

/// Kill every process of the v2 group at `dir` (and below) and wait until
/// it is empty; `false` if it is not within [`KILL_WAIT`].
pub(crate) fn kill_and_wait(dir: &Path) -> bool {
    if !populated(dir) {
        return true;
    }
    let _ = control::write(dir, "cgroup.kill", "1");
    let until = Instant::now() + KILL_WAIT;
    while populated(dir) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Kill what is in the group `dirs[0]` (v2) and remove it in every
/// hierarchy, with any groups below it.
pub(crate) fn remove_group(dirs: &[PathBuf]) {
    if let Some(v2) = dirs.first() {
        kill_and_wait(v2);
    }
    let mut all = Vec::new();
    for d in dirs {
        all.push(d.clone());
        if let Ok(rd) = std::fs::read_dir(d) {
            all.extend(
                rd.flatten()
                    .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|c| c.path()),
            );
        }
    }
    remove_dirs(&all);
}

/// Remove session groups left by stele processes that are gone (killed
/// before they could clean up). Best effort, once per process.
pub(crate) fn clean_stale(bases: &[Node]) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let Ok(rd) = std::fs::read_dir(&bases[0].dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("session-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let dirs: Vec<PathBuf> = bases.iter().map(|b| b.dir.join(&name)).collect();
            remove_group(&dirs);
        }
    });
}
