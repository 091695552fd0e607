//! The archive chain (docs/audit-format.md §9): an archive bundle verified
//! on its own, then joined to the live side at the boundary that side's
//! `log.archive` entry records — the same size, the same root, the same
//! last leaf hash, and this bundle's signed manifest.

use stele_audit::export::layout::{sha256, MANIFEST};
use stele_audit::export::tiles::{hash_tile_path, TILE_WIDTH};
use stele_audit::leaf::hash_b64;
use stele_audit::merkle::Hash;

use crate::{Bundle, Failure, Options, Produce, Report};

/// What the live side records of the archive it continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary {
    /// Entries archived (`through`).
    pub size: u64,
    /// Root at `size`.
    pub root: Hash,
    /// Leaf hash of entry `size − 1`.
    pub prev: Hash,
    /// `sha256:<hex>` of the archive's signed manifest.
    pub bundle: String,
}

/// Verify `archive` in full, then that it is the archive `boundary` names.
pub fn verify_archive(
    archive: &Bundle,
    opts: &Options,
    boundary: &Boundary,
) -> Result<Report, Failure> {
    let report = crate::verify_producing(archive, opts, Produce::Result)?;
    let fail = |r: String| Failure::new("archive chain", None, r);
    let digest = format!("sha256:{}", hex::encode(sha256(&archive.read(MANIFEST)?)));
    if digest != boundary.bundle {
        return Err(fail(format!(
            "this archive's manifest is {digest}, but the live log's log.archive names {}",
            boundary.bundle
        )));
    }
    if report.entries != boundary.size {
        return Err(fail(format!(
            "this archive holds {} entries, but the live log archived {}",
            report.entries, boundary.size
        )));
    }
    if report.root != hash_b64(&boundary.root) {
        return Err(fail(format!(
            "this archive's root at {} differs from the one the live log recorded",
            boundary.size
        )));
    }
    // The last leaf hash, from the level-0 tile the verification rebuilt
    // and compared with the entries.
    let last = boundary
        .size
        .checked_sub(1)
        .ok_or_else(|| fail("an empty archive".into()))?;
    let tile = last / TILE_WIDTH;
    let width = (boundary.size - tile * TILE_WIDTH).min(TILE_WIDTH);
    let path = hash_tile_path(0, tile, width);
    let bytes = archive.read(&path)?;
    let at = ((last % TILE_WIDTH) * 32) as usize;
    let got = bytes
        .get(at..at + 32)
        .ok_or_else(|| Failure::new(path.clone(), Some(last), "hash tile too short"))?;
    if got != boundary.prev {
        return Err(fail(format!(
            "this archive's last leaf hash differs from the live log's first prev (entry {last})"
        )));
    }
    Ok(report)
}
