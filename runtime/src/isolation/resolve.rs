//! Comparing folders as the kernel sees them, not as strings: a path is
//! resolved one component at a time (every symlink followed, every folder
//! it passes through recorded), and "is A inside B" is asked three ways —
//! by canonical path, by device and inode of B among A's ancestors (a bind
//! mount of B elsewhere), and by the path inside the file system from
//! `/proc/self/mountinfo` (a bind mount of A's or B's folder elsewhere).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before a resolution is given up (as the kernel's `ELOOP`).
const MAX_LINKS: usize = 40;

/// A path resolved as the kernel would, with the folders it passed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Absolute, every symlink of its existing part followed, the missing
    /// rest appended as given.
    pub canonical: PathBuf,
    /// Whether all of `canonical` exists.
    pub exists: bool,
    /// Every (canonical, existing) folder the resolution looked a name up
    /// in, in order: a symlink in any of them decides where the path leads.
    pub traversed: Vec<PathBuf>,
}

/// Resolve `path` (relative paths against the current folder).
pub fn resolve(path: &Path) -> io::Result<Resolved> {
    let abs = std::path::absolute(path)?;
    let mut pending: VecDeque<OsString> = components(&abs);
    let mut cur = PathBuf::from("/");
    let mut traversed: Vec<PathBuf> = Vec::new();
    let mut exists = true;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        if !exists {
            cur.push(&name);
            continue;
        }
        if traversed.last() != Some(&cur) {
            traversed.push(cur.clone());
        }
        let next = cur.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        path.display()
                    )));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in components(&target).into_iter().rev() {
                    pending.push_front(c);
                }
            }
            Ok(_) => cur = next,
            // Missing, not a folder, or not ours to look into: the rest is
            // taken as written (it cannot be followed, so it cannot lead
            // anywhere else either).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::PermissionDenied
                ) =>
            {
                exists = false;
                cur = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Resolved {
        canonical: cur,
        exists,
        traversed,
    })
}

/// The names of an absolute or relative path (`.` dropped, `..` kept).
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// One mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `major:minor` of the file system.
    dev: String,
    /// The folder of the file system mounted here.
    root: PathBuf,
    /// Where it is mounted.
    point: PathBuf,
}

/// The mount table, to map a path to (file system, path inside it).
#[derive(Debug, Clone, Default)]
pub struct Mounts(Vec<Mount>);

impl Mounts {
    /// This process's mount table (empty when it cannot be read: the other
    /// two comparisons still apply).
    pub fn load() -> Mounts {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Mounts::parse(&t))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Mounts {
        let mut v = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 5 {
                continue;
            }
            v.push(Mount {
                dev: f[2].to_string(),
                root: PathBuf::from(unescape(f[3])),
                point: PathBuf::from(unescape(f[4])),
            });
        }
        Mounts(v)
    }

    /// Mount points strictly inside `p`: a program given `p` reaches
    /// what is mounted there too.
    pub fn points_under(&self, p: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|m| m.point != p && m.point.starts_with(p))
            .map(|m| m.point.clone())
            .collect();
        v.dedup();
        v
    }

    /// The file system holding `p` and the path of `p` inside it. The mount
    /// with the longest mount point wins; of equal ones, the last mounted
    /// (it covers the earlier).
    fn locate(&self, p: &Path) -> Option<(&str, PathBuf)> {
        let mut best: Option<&Mount> = None;
        for m in &self.0 {
            if p.starts_with(&m.point)
                && best.is_none_or(|b| m.point.components().count() >= b.point.components().count())
            {
                best = Some(m);
            }
        }
        let m = best?;
        let rel = p.strip_prefix(&m.point).ok()?;
        Some((m.dev.as_str(), m.root.join(rel)))
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt as _;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = oct.iter().fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// Device and inode of `p` and of each folder above it, nearest first
/// (empty where `p` does not exist).
fn ancestry(p: &Path) -> Vec<(u64, u64)> {
    p.ancestors()
        .filter_map(|a| std::fs::metadata(a).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// An existing folder (or file) and the ways to recognise it.
#[derive(Debug, Clone)]
pub struct Identity {
    canonical: PathBuf,
    id: Option<(u64, u64)>,
    chain: Vec<(u64, u64)>,
    fs: Option<(String, PathBuf)>,
}

impl Identity {
    /// Identify the canonical path `p` (see [`resolve`]).
    pub fn of(p: &Path, mounts: &Mounts) -> Identity {
        let chain = ancestry(p);
        let id = std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        Identity {
            canonical: p.to_path_buf(),
            id,
            chain: if id.is_some() { chain } else { Vec::new() },
            fs: mounts.locate(p).map(|(d, q)| (d.to_string(), q)),
        }
    }

    /// The canonical path.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// True when `self` is `outer` or lies inside it, by any of the three
    /// comparisons.
    pub fn within(&self, outer: &Identity) -> bool {
        if self.canonical.starts_with(&outer.canonical) {
            return true;
        }
        if let Some(o) = outer.id {
            if self.chain.contains(&o) {
                return true;
            }
        }
        match (&self.fs, &outer.fs) {
            (Some((d1, p1)), Some((d2, p2))) => d1 == d2 && p1.starts_with(p2),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn symlinks_are_followed_and_their_folders_recorded() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let ws = root.join("ws");
        let state = root.join("state");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(state.join("keys")).unwrap();
        // outside/link -> ws/hop -> state: the hop lives in the workspace.
        std::os::unix::fs::symlink(&state, ws.join("hop")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink(ws.join("hop"), root.join("outside/link")).unwrap();
        let r = resolve(&root.join("outside/link/keys/log.key")).unwrap();
        assert_eq!(r.canonical, state.join("keys/log.key"));
        assert!(!r.exists);
        assert!(r.traversed.contains(&ws), "{:?}", r.traversed);
        assert!(r.traversed.contains(&state.join("keys")));
        // Relative links and `..`.
        std::os::unix::fs::symlink("../state", ws.join("up")).unwrap();
        let r = resolve(&ws.join("up/keys")).unwrap();
        assert_eq!(r.canonical, state.join("keys"));
        assert!(r.exists);
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink(root.join("loop"), root.join("loop")).unwrap();
        assert!(resolve(&root.join("loop/x")).is_err());
    }

    #[test]
    fn within_by_path_and_by_inode() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let m = Mounts::load();
        let a = Identity::of(&root.join("a"), &m);
        let b = Identity::of(&root.join("a/b"), &m);
        assert!(b.within(&a) && a.within(&a) && !a.within(&b));
        // A missing path under an existing one is inside it by path.
        let missing = Identity::of(&root.join("a/b/c/d"), &m);
        assert!(missing.within(&a) && !a.within(&missing));
    }

    #[test]
    fn mountinfo_lines_map_bind_mounts() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 8:1 /home/u /mnt/my\\040home rw - ext4 /dev/sda1 rw\n\
                    41 22 0:50 / /tmp rw - tmpfs tmpfs rw\n";
        let m = Mounts::parse(text);
        assert_eq!(
            m.locate(Path::new("/mnt/my home/.local/state")),
            Some(("8:1", PathBuf::from("/home/u/.local/state")))
        );
        assert_eq!(
            m.locate(Path::new("/tmp/x")),
            Some(("0:50", PathBuf::from("/x")))
        );
        assert_eq!(
            m.locate(Path::new("/home/u")),
            Some(("8:1", PathBuf::from("/home/u")))
        );
        assert_eq!(
            m.points_under(Path::new("/mnt")),
            vec![PathBuf::from("/mnt/my home")]
        );
    }
}
