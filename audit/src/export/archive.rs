//! The archive procedure (docs/retention.md, "Archival"): check the
//! boundary, write the archive bundle — a whole-log export of the log at
//! size `N`, payload bodies included, starting where an earlier archive
//! ended (`super::start`) — verify it, and only then append
//! `log.archive`, which removes the prefix in its own transaction. A crash
//! anywhere before that commit leaves the log whole (and at most a bundle
//! nobody refers to); after it, the log is archived and both halves verify.

use std::path::Path;

use stele_attest::{Checkpoint, Signer};

use super::layout::{sha256, Selection, MANIFEST};
use super::write::{build, finish, ExportOptions};
use super::ExportError;
use crate::archive::ArchiveRequest;
use crate::event::{Actor, Event, EventKind};
use crate::log::AuditLog;
use crate::merkle::{subtree_hash, Hash};

/// What to archive.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Entries to archive: `0 … through−1` (those still live).
    pub through: u64,
    /// Why (retention schedule, ticket).
    pub reason: String,
    /// Who archives.
    pub actor: Actor,
    /// Write the bundle as one `.tar` file.
    pub tar: bool,
}

/// What an archive did.
#[derive(Debug, Clone)]
pub struct ArchiveOutcome {
    /// The first entry archived (0, or where an earlier archive ended).
    pub from: u64,
    /// Entries archived up to (excluded).
    pub through: u64,
    /// Root at `through`.
    pub root: Hash,
    /// `sha256:<hex>` of the bundle's signed manifest.
    pub bundle: String,
    /// Index of the `audit.export` entry that recorded writing the bundle.
    pub export_entry: u64,
    /// Index of the `log.archive` entry.
    pub archive_entry: u64,
}

/// Archive `0 … opts.through−1` of `log` into `out` (after an earlier
/// archive through `M`: `M … opts.through−1`). `log_signer` is the
/// log's own key (it signs the checkpoint at `through` that the bundle
/// carries); `manifest_signer` signs the bundle's manifest; `verify` is
/// run on the finished bundle (the CLI passes `stele-verify`'s code) and
/// must accept it before anything is removed.
pub fn archive(
    log: &AuditLog,
    log_signer: &dyn Signer,
    manifest_signer: &dyn Signer,
    opts: &ArchiveOptions,
    out: &Path,
    verify: &mut dyn FnMut(&Path) -> Result<(), String>,
) -> Result<ArchiveOutcome, ExportError> {
    let n = opts.through;
    if log_signer.verifier().to_string() != log.verifier().to_string() {
        return Err(ExportError::Invalid(
            "the archive's checkpoint must be signed with the log's own key".into(),
        ));
    }
    if opts.reason.trim().is_empty() {
        return Err(ExportError::Invalid("an archive needs a reason".into()));
    }
    if out.exists() {
        return Err(ExportError::Invalid(format!(
            "{} already exists",
            out.display()
        )));
    }
    let store = log.store()?;
    let size = store.size()?;
    let from = store.archived()?.map_or(0, |a| a.size);
    if let Some(a) = store.archived()? {
        // A further archive is a bundle of `a.size … n−1` that starts
        // past 0 (`super::start`): it must hold the previous archive's
        // `log.archive` entry, which proves its start and names the
        // previous bundle, so the chain joins offline.
        if n <= a.size {
            return Err(ExportError::Invalid(format!(
                "cannot archive through {n}: entries below {} are already archived",
                a.size
            )));
        }
        if n <= a.entry {
            return Err(ExportError::Invalid(format!(
                "cannot archive through {n}: the bundle of entries {}..{n} must hold the previous archive's log.archive entry {} (archive through {} or later)",
                a.size,
                a.entry,
                a.entry + 1
            )));
        }
    }
    if n == 0 || n > size {
        return Err(ExportError::Invalid(format!(
            "cannot archive {n} entries: the log holds {size}"
        )));
    }
    // Refused here, before a bundle is written; the writer checks again
    // in the archive's own transaction.
    let book = crate::writer::erasure::load_holds(store.conn(), store.path())?;
    let intents: Vec<u64> = store.open_intents()?.iter().map(|i| i.seq).collect();
    crate::archive_boundary::check_boundary(store.conn(), store.path(), n, size, intents, &book)?;
    let root = subtree_hash(&store, 0, n)?;
    let schedule = store.key_schedule()?;
    let current = log_signer.verifier().to_string();
    // The checkpoint at `n` is signed by the key of that size: the current
    // key if it signs `n`, else one kept since an earlier key signed it.
    let note = match store.checkpoint_at(n)? {
        Some(kept) => kept,
        None if schedule.keys_at(n).contains(&current.as_str()) => Checkpoint {
            origin: log.origin().to_string(),
            size: n,
            root,
        }
        .sign(log_signer)?
        .to_text(),
        None => {
            return Err(ExportError::Invalid(format!(
                "cannot archive through {n}: an earlier key signs that size and no checkpoint of it is kept; archive through a kept checkpoint's size (e.g. a key rotation's boundary) or through {} or later",
                schedule.ranges().last().map_or(0, |r| r.from)
            )))
        }
    };
    let keys = crate::archive_keys::collect(&store, n)?;

    let tmp = super::write::temp_beside(out)?;
    // Audit before act: the bundle's writing is recorded first.
    let receipt = log.append_blocking(
        Event::new(EventKind::AuditExport, opts.actor.clone()).with_data(serde_json::json!({
            "selection": "all",
            "payloads": true,
            "out": out.display().to_string(),
            "manifest_key": manifest_signer.verifier().to_string(),
            "archive_through": n,
        })),
    )?;
    let export = ExportOptions {
        selection: Selection::All,
        payloads: true,
        policies: Vec::new(),
        exporter: opts.actor.clone(),
        allow_open_session: false,
        tar: opts.tar,
    };
    let _ = std::fs::remove_dir_all(&tmp);
    let written = build(
        log,
        manifest_signer,
        &export,
        &tmp,
        receipt.seq,
        n,
        &note,
        &mut |_| {},
    )
    .and_then(|_| {
        let m = tmp.join(MANIFEST);
        let bytes = std::fs::read(&m).map_err(|e| ExportError::io(&m, e))?;
        Ok(format!("sha256:{}", hex::encode(sha256(&bytes))))
    })
    .and_then(|digest| finish(&tmp, out, opts.tar).map(|()| digest));
    let digest = match written {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    verify(out).map_err(|why| {
        ExportError::Invalid(format!(
            "the archive bundle {} does not verify ({why}); nothing was removed",
            out.display()
        ))
    })?;
    let r = log.archive_blocking(ArchiveRequest {
        through: n,
        bundle: digest.clone(),
        reason: opts.reason.clone(),
        actor: opts.actor.clone(),
        keys,
    })?;
    Ok(ArchiveOutcome {
        from,
        through: n,
        root,
        bundle: digest,
        export_entry: receipt.seq,
        archive_entry: r.seq,
    })
}

/// `sha256:<hex>` of a bundle's signed manifest (folder or `.tar`): the
/// digest `log.archive` names.
pub fn manifest_digest(bundle: &Path) -> Result<String, ExportError> {
    let bytes = if bundle.is_dir() {
        let m = bundle.join(MANIFEST);
        std::fs::read(&m).map_err(|e| ExportError::io(&m, e))?
    } else {
        read_tar_member(bundle, MANIFEST)?
    };
    Ok(format!("sha256:{}", hex::encode(sha256(&bytes))))
}

fn read_tar_member(path: &Path, name: &str) -> Result<Vec<u8>, ExportError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| ExportError::io(path, e))?;
    let index = super::tar::read_index(&mut f)?;
    let (_, range) = index
        .into_iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| ExportError::Invalid(format!("{}: no {name}", path.display())))?;
    f.seek(SeekFrom::Start(range.start))
        .map_err(|e| ExportError::io(path, e))?;
    let mut b = vec![0u8; (range.end - range.start) as usize];
    f.read_exact(&mut b).map_err(|e| ExportError::io(path, e))?;
    Ok(b)
}
