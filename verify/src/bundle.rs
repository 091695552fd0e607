//! Reading an export bundle: a folder or a `.tar` file, as a map from
//! bundle-relative path to bytes.

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
    /// A tar file held in memory.
    Tar {
        /// The archive bytes.
        data: Vec<u8>,
        /// Member name → content range.
        index: BTreeMap<String, std::ops::Range<usize>>,
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
            let data = std::fs::read(path)
                .map_err(|e| Failure::new(path.display().to_string(), None, e.to_string()))?;
            let mut index = BTreeMap::new();
            for (name, range) in tar::read_index(&data)
                .map_err(|e| Failure::new(path.display().to_string(), None, e.to_string()))?
            {
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
            Ok(Self::Tar { data, index })
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
            Self::Tar { data, index } => {
                let b = index
                    .get(name)
                    .and_then(|r| data.get(r.clone()))
                    .ok_or_else(|| Failure::new(name, None, "missing"))?;
                buf.extend_from_slice(b);
                Ok(())
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
            Self::Tar { data, index } => {
                let b = index
                    .get(name)
                    .and_then(|r| data.get(r.clone()))
                    .ok_or_else(|| Failure::new(name, None, "missing"))?;
                ctx.update(b);
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
            Self::Tar { data, index } => index
                .get(name)
                .and_then(|r| data.get(r.clone()))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Failure::new(name, None, "missing")),
        }
    }
}
