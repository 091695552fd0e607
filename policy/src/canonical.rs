//! Canonicalisation that every enforcement point must apply *before* asking
//! for a decision. Policies match on strings (`like "receipts/*"`), so an
//! unnormalised `receipts/../hr/x` would slip through; these helpers are the
//! single definition of the canonical forms the schema promises.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::CanonError;

mod address;
mod host;

pub use address::{canonical_ip, classify, AddressClass};
pub use host::{canonical_host_name, default_port, CanonicalHost};

/// A workspace-relative, lexically normalised path: no leading `/`, no `.`
/// or `..` components, no empty components, no NUL. The workspace root is `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    /// The workspace root, `.`.
    pub fn root() -> Self {
        Self(".".to_owned())
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn reject_controls(what: &'static str, s: &str) -> Result<(), CanonError> {
    if s.chars().any(char::is_control) {
        return Err(CanonError::ControlCharacter(what));
    }
    Ok(())
}

/// Canonicalise a workspace-relative path lexically.
///
/// Rejects absolute paths (including Windows drive and UNC forms), NUL and
/// control characters, and any `..` that would climb above the root. `.` and
/// empty components are dropped; `a/b/../c` becomes `a/c`; `""` is refused.
///
/// This does not look at the file system: an enforcement point that follows
/// symlinks must resolve them first (see [`resolve_in_workspace`]).
pub fn canonical_path(input: &str) -> Result<CanonicalPath, CanonError> {
    if input.is_empty() {
        return Err(CanonError::Empty("path"));
    }
    reject_controls("path", input)?;
    let bytes = input.as_bytes();
    let windows_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if input.starts_with('/') || input.starts_with('\\') || windows_drive {
        return Err(CanonError::AbsolutePath(input.to_owned()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in input.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(CanonError::EscapesWorkspace(input.to_owned()));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Ok(CanonicalPath::root());
    }
    Ok(CanonicalPath(parts.join("/")))
}

/// Resolve `relative` inside the workspace `root` on the file system,
/// following symlinks, and return its canonical workspace-relative path.
///
/// A path that does not exist yet (a file about to be written) is resolved
/// through its deepest existing ancestor. Anything that resolves outside the
/// root (a symlink pointing out, `..` through a symlinked directory) is
/// refused as [`CanonError::EscapesWorkspace`].
pub fn resolve_in_workspace(root: &Path, relative: &str) -> Result<CanonicalPath, CanonError> {
    let lexical = canonical_path(relative)?;
    let escapes = || CanonError::EscapesWorkspace(relative.to_owned());
    let root = root.canonicalize().map_err(|_| escapes())?;
    let mut existing = root.join(lexical.as_str());
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    // Walk up until something exists; the missing tail is re-attached as is
    // (it is lexically clean, so it cannot contain `..`).
    let resolved = loop {
        match existing.canonicalize() {
            Ok(p) => break p,
            Err(_) => {
                let name = existing.file_name().map(|n| n.to_os_string());
                match (name, existing.parent()) {
                    (Some(name), Some(parent)) => {
                        missing.push(name);
                        existing = parent.to_path_buf();
                    }
                    _ => return Err(escapes()),
                }
            }
        }
    };
    let mut full: PathBuf = resolved;
    for name in missing.iter().rev() {
        full.push(name);
    }
    let rel = full.strip_prefix(&root).map_err(|_| escapes())?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(escapes)?.to_owned()),
            _ => return Err(escapes()),
        }
    }
    if parts.is_empty() {
        return Ok(CanonicalPath::root());
    }
    canonical_path(&parts.join("/"))
}

/// A program, by its resolved absolute path and its basename.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProgramRef {
    name: String,
    path: String,
}

impl ProgramRef {
    /// From the absolute path the enforcement point resolved (via `PATH`,
    /// symlinks followed). The path must be absolute and lexically clean.
    pub fn from_resolved_path(path: &str) -> Result<Self, CanonError> {
        reject_controls("program path", path)?;
        let bad = || CanonError::InvalidProgram(path.to_owned());
        let rel = path.strip_prefix('/').ok_or_else(bad)?;
        let clean = canonical_path(rel).map_err(|_| bad())?;
        if clean.as_str() != rel {
            return Err(bad());
        }
        let name = rel.rsplit('/').next().ok_or_else(bad)?;
        Ok(Self {
            name: program_name(name)?,
            path: path.to_owned(),
        })
    }

    /// Basename, e.g. `python3`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Absolute path, e.g. `/usr/bin/python3`; the `Program` entity id.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Canonicalise a program name: a plain basename (no `/`, not `.`/`..`, no
/// control characters). Case is kept: file systems are case sensitive.
pub fn program_name(name: &str) -> Result<String, CanonError> {
    if name.is_empty() {
        return Err(CanonError::Empty("program name"));
    }
    reject_controls("program name", name)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err(CanonError::InvalidProgram(name.to_owned()));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise() {
        assert_eq!(canonical_path("a/./b//c/../d").unwrap().as_str(), "a/b/d");
        assert_eq!(canonical_path("./").unwrap().as_str(), ".");
        assert_eq!(canonical_path("a/..").unwrap().as_str(), ".");
    }

    #[test]
    fn every_spelling_of_the_root_is_dot() {
        // The one name a policy rule on the workspace root (`File::"."`)
        // can match; "" is no spelling of it (an empty name is refused).
        for root in [".", "./", ".//.", "././", "a/./..", "a/b/../.."] {
            assert_eq!(
                canonical_path(root).unwrap(),
                CanonicalPath::root(),
                "{root:?}"
            );
        }
        assert!(matches!(canonical_path(""), Err(CanonError::Empty(_))));
        let ws = std::env::temp_dir();
        assert_eq!(
            resolve_in_workspace(&ws, ".").unwrap(),
            CanonicalPath::root()
        );
        assert_eq!(
            resolve_in_workspace(&ws, "./").unwrap(),
            CanonicalPath::root()
        );
    }

    #[test]
    fn paths_refused() {
        assert!(matches!(
            canonical_path("/etc/passwd"),
            Err(CanonError::AbsolutePath(_))
        ));
        assert!(matches!(
            canonical_path("C:/x"),
            Err(CanonError::AbsolutePath(_))
        ));
        assert!(matches!(
            canonical_path("\\\\srv\\x"),
            Err(CanonError::AbsolutePath(_))
        ));
        assert!(matches!(
            canonical_path("receipts/../../hr"),
            Err(CanonError::EscapesWorkspace(_))
        ));
        assert!(matches!(
            canonical_path("a\0b"),
            Err(CanonError::ControlCharacter(_))
        ));
        assert!(matches!(canonical_path(""), Err(CanonError::Empty(_))));
    }

    #[test]
    fn programs() {
        let p = ProgramRef::from_resolved_path("/usr/bin/python3").unwrap();
        assert_eq!(p.name(), "python3");
        assert!(ProgramRef::from_resolved_path("python3").is_err());
        assert!(ProgramRef::from_resolved_path("/usr/bin/../bin/sh").is_err());
        assert!(program_name("../sh").is_err());
        assert_eq!(program_name("git").unwrap(), "git");
    }

    #[test]
    fn resolve_follows_symlinks_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        assert_eq!(
            resolve_in_workspace(dir.path(), "a/new.txt")
                .unwrap()
                .as_str(),
            "a/new.txt"
        );
        assert!(matches!(
            resolve_in_workspace(dir.path(), "out/secret"),
            Err(CanonError::EscapesWorkspace(_))
        ));
    }
}
