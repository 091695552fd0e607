//! The archive chain (docs/audit-format.md §9, docs/export-format.md "The
//! archive chain"): bundles verified each on its own, then joined in order
//! — an archive bundle to the next bundle that starts where it ends, and
//! the last archive to the live log at the boundary its `log.archive`
//! entry records. A join holds when the later side starts at the earlier
//! one's size, with its root and last leaf hash, names the earlier
//! bundle's signed manifest digest in its `log.archive` entry, and the
//! key schedule and revocations carry over unchanged.

use stele_audit::export::layout::{sha256, MANIFEST};
use stele_audit::keys::KeySchedule;
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

/// A failure of the chain: which bundle (1-based position and name) and
/// what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle {position} ({name}): {failure}")]
pub struct ChainFailure {
    /// Position in the chain, from 1.
    pub position: usize,
    /// The bundle's name as given (its path).
    pub name: String,
    /// What failed.
    pub failure: Failure,
}

/// One verified bundle of a chain.
#[derive(Debug, Clone)]
pub struct Link {
    /// The bundle's name as given.
    pub name: String,
    /// `sha256:<hex>` of its signed manifest.
    pub digest: String,
    /// Its verification.
    pub report: Report,
}

/// `sha256:<hex>` of a bundle's signed manifest.
pub fn manifest_digest(bundle: &Bundle) -> Result<String, Failure> {
    Ok(format!(
        "sha256:{}",
        hex::encode(sha256(&bundle.read(MANIFEST)?))
    ))
}

fn chain_fail(reason: String) -> Failure {
    Failure::new("archive chain", None, reason)
}

/// Verify `archive` in full, then that it is the archive `boundary` names.
pub fn verify_archive(
    archive: &Bundle,
    opts: &Options,
    boundary: &Boundary,
) -> Result<Report, Failure> {
    let report = crate::verify_producing(archive, opts, Produce::Result)?;
    let digest = manifest_digest(archive)?;
    join_boundary(&report, &digest, boundary)?;
    Ok(report)
}

/// That the verified bundle `report` (manifest digest `digest`) is the
/// archive `boundary` names: same manifest, size, root and last leaf hash.
pub fn join_boundary(report: &Report, digest: &str, boundary: &Boundary) -> Result<(), Failure> {
    if digest != boundary.bundle {
        return Err(chain_fail(format!(
            "this archive's manifest is {digest}, but the live log's log.archive names {}",
            boundary.bundle
        )));
    }
    if report.entries != boundary.size {
        return Err(chain_fail(format!(
            "this archive holds entries up to {}, but the live log archived {}",
            report.entries, boundary.size
        )));
    }
    if report.root != hash_b64(&boundary.root) {
        return Err(chain_fail(format!(
            "this archive's root at {} differs from the one the live log recorded",
            boundary.size
        )));
    }
    if report.last_leaf.as_deref() != Some(hash_b64(&boundary.prev).as_str()) {
        return Err(chain_fail(format!(
            "this archive's last leaf hash differs from the live log's first prev (entry {})",
            boundary.size.saturating_sub(1)
        )));
    }
    Ok(())
}

/// Verify every bundle on its own and join each to the next: the first
/// starts at 0, each later one starts where the one before ends. The
/// bundles are verified newest first, so that the key schedule a later
/// bundle proves (its rotations, and below its start its `log.archive`
/// key record) is trusted for the earlier ones, with its revocations: a
/// reviewer holding only the current key checks the whole chain. The
/// first failure names the bundle and what.
pub fn verify_chain(
    bundles: &[(String, Bundle)],
    opts: &Options,
) -> Result<Vec<Link>, ChainFailure> {
    let mut verified: Vec<Option<Link>> = vec![None; bundles.len()];
    let mut trust = opts.clone();
    for (i, (name, b)) in bundles.iter().enumerate().rev() {
        let at = |failure: Failure| ChainFailure {
            position: i + 1,
            name: name.clone(),
            failure,
        };
        let report = crate::verify_producing(b, &trust, Produce::Result).map_err(at)?;
        let digest = manifest_digest(b).map_err(at)?;
        if report.layout != stele_audit::export::layout::BundleLayout::Tiles {
            return Err(at(chain_fail(
                "a session bundle holds no contiguous range of the log: it cannot be part of the chain"
                    .into(),
            )));
        }
        for k in &report.keys {
            if let Ok(v) = stele_attest::NoteVerifier::parse(&k.key) {
                if !crate::keys::trusted(&trust).any(|t| t.to_string() == k.key) {
                    trust.more_keys.push(v);
                }
            }
        }
        for r in &report.revoked {
            if !trust.revoked.contains(r) {
                trust.revoked.push(r.clone());
            }
        }
        verified[i] = Some(Link {
            name: name.clone(),
            digest,
            report,
        });
    }
    let links: Vec<Link> = verified.into_iter().flatten().collect();
    for (i, l) in links.iter().enumerate() {
        let at = |failure: Failure| ChainFailure {
            position: i + 1,
            name: l.name.clone(),
            failure,
        };
        match i.checked_sub(1).and_then(|p| links.get(p)) {
            None => {
                if let Some(s) = &l.report.start {
                    return Err(at(chain_fail(format!(
                        "the chain begins with a bundle that starts at {}: entries 0..{} are in none of the bundles given (give the first archive first)",
                        s.size, s.size
                    ))));
                }
            }
            Some(prev) => join(prev, &l.report).map_err(at)?,
        }
    }
    Ok(links)
}

/// That `next` continues `prev` (the bundle before it in the chain).
fn join(prev: &Link, next: &Report) -> Result<(), Failure> {
    let p = &prev.report;
    let name = &prev.name;
    if next.origin != p.origin {
        return Err(chain_fail(format!(
            "this bundle is of log {:?}, the one before ({name}) of {:?}: a bundle from another log",
            next.origin, p.origin
        )));
    }
    let Some(s) = &next.start else {
        return Err(chain_fail(format!(
            "this bundle starts at 0, so it does not continue {name} (entries 0..{}): bundles out of order, or not one log's archives",
            p.entries
        )));
    };
    if s.size < p.entries {
        return Err(chain_fail(format!(
            "this bundle starts at {}, inside the one before ({name}, entries up to {}): the bundles overlap or are out of order",
            s.size, p.entries
        )));
    }
    if s.size > p.entries {
        return Err(chain_fail(format!(
            "this bundle starts at {}, but the one before ({name}) ends at {}: entries {}..{} are in no bundle given (a missing archive)",
            s.size, p.entries, p.entries, s.size
        )));
    }
    if s.root != p.root {
        return Err(chain_fail(format!(
            "this bundle's root at its start {} differs from the root of the one before ({name})",
            s.size
        )));
    }
    if p.last_leaf.as_deref() != Some(s.prev.as_str()) {
        return Err(chain_fail(format!(
            "this bundle's first prev differs from the last leaf hash of the one before ({name}, entry {})",
            s.size.saturating_sub(1)
        )));
    }
    if s.archive_bundle != prev.digest {
        return Err(chain_fail(format!(
            "the log.archive entry {} in this bundle names archive manifest {}, but the one before ({name}) has {}: not the archive that was recorded (another or a changed archive)",
            s.archive_entry, s.archive_bundle, prev.digest
        )));
    }
    // The key schedule carries over: this bundle's at its start, which its
    // `log.archive` key record rebuilt, is the one before's.
    let here = KeySchedule::from_ranges(next.keys.clone(), &next.origin)
        .map_err(|e| chain_fail(format!("key ranges: {e}")))?
        .at(s.size);
    if here.ranges() != p.keys.as_slice() {
        return Err(chain_fail(format!(
            "the key schedule at {} that this bundle's log.archive key record proves differs from the one before's ({name})",
            s.size
        )));
    }
    if s.revoked_below != p.revoked {
        return Err(chain_fail(format!(
            "the revocations below {} that this bundle's log.archive key record lists differ from the one before's ({name})",
            s.size
        )));
    }
    Ok(())
}
