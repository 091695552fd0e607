//! Reading an export bundle: a folder or a `.tar` file, as a map from
//! bundle-relative path to bytes. A tar file is indexed once and its
//! members read in place (never loaded whole: a large export is gigabytes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stele_audit::export::tar;

use crate::Failure;

/// An opened bundle.
#[derive(Debug)]
pub enum Bundle {
    /// A folder.
    Dir {
        /// Its root.
        root: PathBuf,
        /// Every regular file, bundle-relative.
        files: Vec<String>,
    },
    /// A tar file.
    Tar {
        /// The archive, read with positioned reads.
        file: std::fs::File,
        /// Member name → content range in the file.
        index: BTreeMap<String, std::ops::Range<u64>>,
    },
}

impl Bundle {
    /// Open a folder or a tar file.
    pub fn open(path: &Path) -> Result<Self, Failure> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure::new(path.display().to_string(), None, e.to_string()))?;
        if meta.is_dir() {
            let files = stele_audit::export::list_files(path)
                .map_err(|e| Failure::new(path.display().to_string(), None, e.to_string()))?;
            Ok(Self::Dir {
                root: path.to_path_buf(),
                files,
            })
        } else {
            let fail = |e: String| Failure::new(path.display().to_string(), None, e);
            let mut file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
            let mut index = BTreeMap::new();
            for (name, range) in tar::read_index(&mut file).map_err(|e| fail(e.to_string()))? {
                if name
                    .split('/')
                    .any(|c| c == ".." || c.is_empty() || c == ".")
                {
                    return Err(Failure::new(name, None, "path not allowed in a bundle"));
                }
                if index.insert(name.clone(), range).is_some() {
                    return Err(Failure::new(
                        name,
                        None,
                        "file appears twice in the archive",
                    ));
                }
            }
            Ok(Self::Tar { file, index })
        }
    }

    /// All file names, sorted.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Dir { files, .. } => files.clone(),
            Self::Tar { index, .. } => index.keys().cloned().collect(),
        }
    }

    /// Whether a file exists.
    pub fn has(&self, name: &str) -> bool {
        match self {
            Self::Dir { files, .. } => files.binary_search_by(|f| f.as_str().cmp(name)).is_ok(),
            Self::Tar { index, .. } => index.contains_key(name),
        }
    }

    /// Read `name` into `buf` (replacing its contents). Reusing one buffer
    /// for the many entry bundles spares a fresh allocation, and so fresh
    /// zeroed pages, for each.
    pub fn read_into(&self, name: &str, buf: &mut Vec<u8>) -> Result<(), Failure> {
        use std::io::Read as _;
        buf.clear();
        match self {
            Self::Dir { root, .. } => std::fs::File::open(root.join(name))
                .and_then(|mut f| f.read_to_end(buf))
                .map(|_| ())
                .map_err(|e| Failure::new(name, None, format!("cannot read: {e}"))),
            Self::Tar { file, index } => {
                let r = index
                    .get(name)
                    .ok_or_else(|| Failure::new(name, None, "missing"))?;
                buf.resize(member_len(name, r)?, 0);
                read_at(file, name, buf, r.start)
            }
        }
    }

    /// SHA-256 of `name`, read in pieces (large derived files such as the
    /// OCSF export need not be held in memory).
    pub fn digest(&self, name: &str) -> Result<[u8; 32], Failure> {
        use std::io::Read as _;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        match self {
            Self::Dir { root, .. } => {
                let fail =
                    |e: std::io::Error| Failure::new(name, None, format!("cannot read: {e}"));
                let mut f = std::fs::File::open(root.join(name)).map_err(fail)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(fail)?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                }
            }
            Self::Tar { file, index } => {
                let r = index
                    .get(name)
                    .ok_or_else(|| Failure::new(name, None, "missing"))?;
                let mut buf = vec![0u8; 1 << 20];
                let mut at = r.start;
                while at < r.end {
                    let n = usize::try_from(r.end - at).map_or(buf.len(), |n| n.min(buf.len()));
                    read_at(file, name, &mut buf[..n], at)?;
                    ctx.update(&buf[..n]);
                    at += n as u64;
                }
            }
        }
        let mut h = [0u8; 32];
        h.copy_from_slice(ctx.finish().as_ref());
        Ok(h)
    }

    /// A file's bytes.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, Failure> {
        match self {
            Self::Dir { root, .. } => std::fs::read(root.join(name))
                .map_err(|e| Failure::new(name, None, format!("cannot read: {e}"))),
            Self::Tar { .. } => {
                let mut buf = Vec::new();
                self.read_into(name, &mut buf)?;
                Ok(buf)
            }
        }
    }
}

/// The length of a member, as a buffer size.
fn member_len(name: &str, r: &std::ops::Range<u64>) -> Result<usize, Failure> {
    usize::try_from(r.end - r.start)
        .map_err(|_| Failure::new(name, None, "member too large for this machine"))
}

/// Fill `buf` from `file` at `offset`.
fn read_at(file: &std::fs::File, name: &str, buf: &mut [u8], offset: u64) -> Result<(), Failure> {
    use std::os::unix::fs::FileExt as _;
    file.read_exact_at(buf, offset)
        .map_err(|e| Failure::new(name, None, format!("cannot read: {e}")))
}
