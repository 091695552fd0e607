//! Signed export bundles for reviewers (see `docs/export-format.md`).
//!
//! - [`layout`]: file names and the signed predicate (shared with the verifier);
//! - [`tiles`]: C2SP tlog-tiles hash tiles and entry bundles;
//! - [`ocsf`] (its writer: feature `store`), [`summary`]: derived views for
//!   SIEMs and people, recomputed by the verifier;
//! - [`tar`]: single-file bundles;
//! - `write` (feature `store`): the exporter; `attestation`: session attestations.

#[cfg(feature = "store")]
pub mod archive;
#[cfg(feature = "store")]
pub mod attestation;
#[cfg(feature = "store")]
pub mod binary_digest;
#[cfg(feature = "store")]
mod bundle_out;
pub mod earlier;
pub mod layout;
pub mod ocsf;
pub mod ocsf_mapping;
#[cfg(feature = "store")]
mod session;
#[cfg(feature = "store")]
pub mod session_parts;
#[cfg(feature = "store")]
mod session_writer;
pub mod start;
pub mod summary;
pub mod tar;
pub mod tiles;
#[cfg(feature = "store")]
pub mod write;

use std::path::{Path, PathBuf};

/// Why an export or attestation failed. Nothing is left behind when it does.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The log failed.
    #[error(transparent)]
    Audit(#[from] crate::AuditError),
    /// Signing or parsing a signed object failed.
    #[error(transparent)]
    Attest(#[from] stele_attest::AttestError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing the tar file failed.
    #[error(transparent)]
    Tar(#[from] tar::TarError),
    /// The request cannot be met.
    #[error("{0}")]
    Invalid(String),
}

impl ExportError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Bundle-relative paths of all regular files under `root`, sorted.
pub fn list_files(root: &Path) -> Result<Vec<String>, ExportError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| ExportError::io(&d, e))? {
            let e = e.map_err(|e| ExportError::io(&d, e))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| ExportError::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .map_err(|_| ExportError::Invalid("path escapes the bundle".into()))?;
                let rel = rel.to_str().ok_or_else(|| {
                    ExportError::Invalid(format!("non-UTF-8 name {}", p.display()))
                })?;
                out.push(rel.replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// All folders under `root`, including `root`.
pub fn list_dirs(root: &Path) -> Result<Vec<PathBuf>, ExportError> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        for e in std::fs::read_dir(&d).map_err(|e| ExportError::io(&d, e))? {
            let e = e.map_err(|e| ExportError::io(&d, e))?;
            if e.file_type().map_err(|e| ExportError::io(&d, e))?.is_dir() {
                out.push(e.path());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The `VERIFY.md` text of a bundle.
pub fn verify_md(log_key: &str, manifest_key: &str) -> String {
    format!(
        "# Verifying this export\n\n\
Obtain the log's verifier key from its operator through a channel you trust (not from this folder).\n\
The key this export names is:\n\n    {log_key}\n\n\
The manifest is signed by:\n\n    {manifest_key}\n\n\
Run the stand-alone verifier (no database, no network):\n\n\
    stele-verify . --key '<log key>' [--export-key '<manifest key>'] [--checkpoint FILE] [--witness VKEY --quorum N]\n\n\
`--checkpoint` takes a checkpoint you hold from elsewhere (a witness, WORM storage, a previous audit):\n\
it catches truncation and forks. The full procedure, precise enough to write your own verifier,\n\
is in stele's `docs/export-format.md`; the tiles follow C2SP tlog-tiles and the checkpoints C2SP\n\
tlog-checkpoint, so generic transparency-log tools can re-derive the root as well.\n"
    )
}
