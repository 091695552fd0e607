//! Which system directories a process-sandboxed command sees read-only:
//! the tool image's root tree (built by `stele vm image build`, the same
//! tree the micro-VM's ext4 root is made from) or — only where the
//! configuration says so — the host's own `/usr`, `/bin`, `/lib*`, `/etc`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::SandboxError;
use crate::vm::ImageStore;

/// What to do when the image is missing: set it up (the error says how).
pub const IMAGE_HINT: &str = "run scripts/setup-vm (or `stele vm image build`) to build the \
     tool image, or set `sandbox_root = \"host\"` in the configuration to run on the host's \
     system directories instead (recorded as such)";

/// The read-only system directories of a process sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemRoot {
    /// The tool image's root tree: what a command sees does not depend on
    /// what the host happens to have installed.
    Image(ToolImage),
    /// The host's system directories: a configured fallback, recorded as
    /// such in `session.start`.
    Host,
}

/// A built tool image, as the process backend uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolImage {
    /// The root tree (`<store>/<key>/root`).
    pub tree: PathBuf,
    /// The image digest (`sha256:…`), the one `session.start` records.
    pub digest: String,
    /// The build-input key (the image directory's name).
    pub key: String,
}

impl SystemRoot {
    /// The current image of `store`, refused when it is missing, predates
    /// the tool image (no tree), or could be changed by anyone but its
    /// owner (root, or the user stele runs as).
    pub fn image(store: &ImageStore) -> Result<SystemRoot, SandboxError> {
        let image = store
            .current()
            .map_err(|e| SandboxError::ToolImage(format!("{e}; {IMAGE_HINT}")))?;
        let tree = image.tree().ok_or_else(|| {
            SandboxError::ToolImage(format!(
                "the image in {} has no root tree (built by an older stele); {IMAGE_HINT}",
                image.dir.display()
            ))
        })?;
        let owner = super::sys::geteuid();
        for p in [
            store.root().to_path_buf(),
            image.dir.clone(),
            tree.clone(),
            tree.join("usr"),
            tree.join("etc"),
        ] {
            guarded(&p, owner)?;
        }
        Ok(SystemRoot::Image(ToolImage {
            tree,
            digest: image.manifest.digest,
            key: image.manifest.key,
        }))
    }

    /// The directory the system directories are taken from.
    pub fn base(&self) -> &Path {
        match self {
            SystemRoot::Image(i) => &i.tree,
            SystemRoot::Host => Path::new("/"),
        }
    }

    /// The image digest, when the root is the image.
    pub fn digest(&self) -> Option<&str> {
        match self {
            SystemRoot::Image(i) => Some(&i.digest),
            SystemRoot::Host => None,
        }
    }

    /// What `session.start` and attestations record about the root.
    pub fn json(&self) -> serde_json::Value {
        match self {
            SystemRoot::Image(i) => json!({
                "root": "image",
                "image_digest": i.digest,
                "image_key": i.key,
            }),
            SystemRoot::Host => json!({
                "root": "host",
                "allowed_by": "sandbox_root = \"host\"",
            }),
        }
    }
}

/// `path` must be a real directory owned by root or `owner` that neither
/// group nor others may write: a sandbox root anyone else could change is
/// no root at all.
fn guarded(path: &Path, owner: u32) -> Result<(), SandboxError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| SandboxError::ToolImage(format!("{}: {e}; {IMAGE_HINT}", path.display())))?;
    if !meta.is_dir() {
        return Err(SandboxError::ToolImage(format!(
            "{} is not a directory (a symlink or file in the image store is refused)",
            path.display()
        )));
    }
    if meta.uid() != 0 && meta.uid() != owner {
        return Err(SandboxError::ToolImage(format!(
            "{} is owned by uid {}, not root or uid {owner}: refusing it as the sandbox root",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SandboxError::ToolImage(format!(
            "{} is writable by group or others (mode {:o}): refusing it as the sandbox root",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_image_is_refused_naming_the_set_up() {
        let t = tempfile::tempdir().unwrap();
        let e = SystemRoot::image(&ImageStore::at(t.path().join("none"))).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("scripts/setup-vm"), "{e}");
        assert!(e.contains("stele vm image build"), "{e}");
    }

    #[test]
    fn the_image_root_carries_its_digest() {
        let t = tempfile::tempdir().unwrap();
        let store = crate::vm::verify::fixture::store(t.path());
        let root = SystemRoot::image(&store).unwrap();
        let digest = store.current().unwrap().manifest.digest;
        assert_eq!(root.digest(), Some(digest.as_str()));
        assert_eq!(root.json()["root"], "image");
        assert_eq!(root.json()["image_digest"], digest.as_str());
        assert_eq!(root.base(), t.path().join("k1/root"));
        assert_eq!(SystemRoot::Host.json()["root"], "host");
    }

    #[test]
    fn a_tree_others_could_change_is_refused() {
        for rel in ["", "k1", "k1/root", "k1/root/usr", "k1/root/etc"] {
            for mode in [0o775, 0o757, 0o777] {
                let t = tempfile::tempdir().unwrap();
                let store = crate::vm::verify::fixture::store(t.path());
                std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
                let p = t.path().join(rel);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                let e = SystemRoot::image(&store).unwrap_err().to_string();
                assert!(
                    e.contains("writable by group or others"),
                    "{rel} {mode:o}: {e}"
                );
            }
        }
    }

    #[test]
    fn a_tree_owned_by_another_user_or_replaced_by_a_symlink_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let store = crate::vm::verify::fixture::store(t.path());
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let usr = t.path().join("k1/root/usr");
        std::fs::rename(&usr, t.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), &usr).unwrap();
        let e = SystemRoot::image(&store).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        if super::super::sys::geteuid() == 0 {
            std::fs::remove_file(&usr).unwrap();
            std::fs::rename(t.path().join("elsewhere"), &usr).unwrap();
            std::os::unix::fs::chown(&usr, Some(4242), None).unwrap();
            let e = SystemRoot::image(&store).unwrap_err().to_string();
            assert!(e.contains("owned by uid 4242"), "{e}");
        }
    }
}
