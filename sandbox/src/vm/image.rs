//! The guest image store: built images live under `<root>/<key>/`, where
//! `key` hashes the build's inputs; `<root>/current` names the last one
//! built. Each image is a kernel, a base initramfs and a read-only ext4
//! root, described by `manifest.json` with their SHA-256 and the image
//! digest (the SHA-256 of the three hashes), which is what the log records.

use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use super::error::VmError;

/// File names inside an image directory.
pub(crate) const KERNEL_FILE: &str = "vmlinuz";
pub(crate) const INITRD_FILE: &str = "initrd.cpio";
pub(crate) const ROOTFS_FILE: &str = "rootfs.ext4";
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const CURRENT_FILE: &str = "current";

/// What an image is made of, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Hash of the build inputs (the directory name).
    pub key: String,
    /// `sha256:<hex>` over the three component hashes: the image's identity.
    pub digest: String,
    /// The Debian kernel package and version.
    pub kernel_package: String,
    /// The kernel release (`uname -r` in the guest).
    pub kernel_release: String,
    /// Debian suite of the root file system.
    pub suite: String,
    /// Packages asked of mmdebstrap.
    pub packages: Vec<String>,
    /// Kernel modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// SHA-256 (hex) of the kernel, initramfs and root image.
    pub sha256: ComponentHashes,
    /// Seconds the build took.
    pub build_seconds: u64,
}

/// Per-file hashes of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHashes {
    /// The kernel (`vmlinuz`).
    pub kernel: String,
    /// The base initramfs.
    pub initrd: String,
    /// The root file system image.
    pub rootfs: String,
    /// The root tree the ext4 was made from (the process backend's root):
    /// the SHA-256 of its listing (`vm/tree.rs`). Absent in images built
    /// before the tool image (builder 1), which the process backend refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
}

impl ComponentHashes {
    /// The image digest over the three hashes.
    pub fn digest(&self) -> String {
        let mut ctx = Context::new(&SHA256);
        for h in [&self.kernel, &self.initrd, &self.rootfs]
            .into_iter()
            .chain(self.tree.as_ref())
        {
            ctx.update(h.as_bytes());
            ctx.update(b"\n");
        }
        format!("sha256:{}", hex(ctx.finish().as_ref()))
    }
}

/// A built image on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl GuestImage {
    /// The kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(KERNEL_FILE)
    }
    /// The base initramfs (the agent is appended per VM).
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(INITRD_FILE)
    }
    /// The read-only root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS_FILE)
    }
    /// The root tree the ext4 was made from, when the image keeps one.
    pub fn tree(&self) -> Option<PathBuf> {
        self.manifest
            .sha256
            .tree
            .as_ref()
            .map(|_| self.dir.join(super::tree::TREE_DIR))
    }
}

/// The directory holding built images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store at `root` (for stele: `$STATE/vm/images`).
    pub fn at(root: impl Into<PathBuf>) -> ImageStore {
        ImageStore { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image built for input hash `key`, if complete.
    pub fn get(&self, key: &str) -> Result<Option<GuestImage>, VmError> {
        let dir = self.root.join(key);
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Ok(None);
        }
        let manifest = read_manifest(&manifest_path)?;
        for f in [KERNEL_FILE, INITRD_FILE, ROOTFS_FILE] {
            if !dir.join(f).is_file() {
                return Ok(None);
            }
        }
        if manifest.sha256.tree.is_some() && !dir.join(super::tree::TREE_DIR).is_dir() {
            return Ok(None);
        }
        Ok(Some(GuestImage { dir, manifest }))
    }

    /// The image last built (named by `current`).
    pub fn current(&self) -> Result<GuestImage, VmError> {
        let pointer = self.root.join(CURRENT_FILE);
        let key = match std::fs::read_to_string(&pointer) {
            Ok(k) => k.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VmError::NoImage(self.root.clone()))
            }
            Err(source) => {
                return Err(VmError::File {
                    what: "image pointer",
                    path: pointer,
                    source,
                })
            }
        };
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(VmError::Manifest {
                path: pointer,
                detail: format!("bad image key {key:?}"),
            });
        }
        self.get(&key)?
            .ok_or_else(|| VmError::NoImage(self.root.join(&key)))
    }

    /// Make `key` the current image (atomically: temp file + rename).
    pub(crate) fn set_current(&self, key: &str) -> Result<(), VmError> {
        let tmp = self.root.join(".current.tmp");
        let err = |source| VmError::File {
            what: "image pointer",
            path: tmp.clone(),
            source,
        };
        std::fs::write(&tmp, format!("{key}\n")).map_err(err)?;
        std::fs::rename(&tmp, self.root.join(CURRENT_FILE)).map_err(err)
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, VmError> {
    let text = std::fs::read_to_string(path).map_err(|source| VmError::File {
        what: "image manifest",
        path: path.to_owned(),
        source,
    })?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| VmError::Manifest {
        path: path.to_owned(),
        detail: format!("line {}, column {}: {e}", e.line(), e.column()),
    })?;
    if m.digest != m.sha256.digest() {
        return Err(VmError::Manifest {
            path: path.to_owned(),
            detail: "digest does not match the component hashes".into(),
        });
    }
    Ok(m)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<String, VmError> {
    use std::io::Read;
    let err = |source| VmError::File {
        what: "image file",
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(ctx.finish().as_ref()))
}
