//! Writing an export: record the export in the log first, then build the
//! bundle in a temporary folder beside the destination, fsync everything and
//! rename it into place, so a failed export leaves nothing half-written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use stele_attest::private_fs;
use stele_attest::{Checkpoint, Signer};

use super::bundle_out::{put_checkpoints, Out};
use super::layout::*;
use super::ocsf;
use super::summary::SummaryBuilder;
use super::tiles::{TileBuilder, TileFile};
use super::ExportError;
use crate::check::LeafChecker;
use crate::event::{Actor, Event, EventKind};
use crate::leaf::hash_b64;
use crate::log::AuditLog;
use crate::merkle::{inclusion_proof, Hash};
use crate::payload::parse_commit;

/// A policy bundle folder to include.
#[derive(Debug, Clone)]
pub struct PolicyInput {
    /// Folder.
    pub dir: PathBuf,
    /// The policy engine's bundle digest, when the caller computed it.
    pub bundle_digest: Option<String>,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Which entries.
    pub selection: Selection,
    /// Include payload bodies (salt ‖ body) of selected entries.
    pub payloads: bool,
    /// Policy bundles in force.
    pub policies: Vec<PolicyInput>,
    /// Who exports.
    pub exporter: Actor,
    /// Export a session that has not ended (normally refused: its
    /// completeness could not be shown).
    pub allow_open_session: bool,
    /// Write one `.tar` file instead of a folder.
    pub tar: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Entries in the tiles.
    pub tree_size: u64,
    /// Selected entries.
    pub selected: u64,
    /// Files written (excluding the manifest).
    pub files: usize,
    /// Index of the `audit.export` entry.
    pub export_entry: u64,
}

/// Entries between progress reports.
const PROGRESS_EVERY: u64 = 4096;

/// How far an export has got, for a progress line on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProgress {
    /// Entries read, re-checked and tiled, of all in the log.
    Entries {
        /// Done.
        done: u64,
        /// Of.
        total: u64,
    },
    /// Inclusion proofs written, of the selected entries'.
    Proofs {
        /// Done.
        done: u64,
        /// Of.
        total: u64,
    },
    /// Session entries read, checked and proven (session bundles), of the
    /// session's entries.
    SessionEntries {
        /// Done.
        done: u64,
        /// Of (0 when not known in advance).
        total: u64,
    },
    /// Payload files written, of the commitments selected.
    Payloads {
        /// Done.
        done: u64,
        /// Of.
        total: u64,
    },
}

/// Export from an open log. The `audit.export` entry is appended (and
/// durable) before any file is written; the bundle covers the log up to the
/// checkpoint that entry's commit produced. The manifest is signed by
/// `manifest_signer` (the log key or a separate export key).
pub fn export(
    log: &AuditLog,
    manifest_signer: &dyn Signer,
    opts: &ExportOptions,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    export_with_progress(log, manifest_signer, opts, out, &mut |_| {})
}

/// [`export`], telling `progress` how far it has got now and then.
pub fn export_with_progress(
    log: &AuditLog,
    manifest_signer: &dyn Signer,
    opts: &ExportOptions,
    out: &Path,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportReport, ExportError> {
    let tmp = temp_beside(out)?;
    let data = serde_json::json!({
        "selection": serde_json::to_value(&opts.selection).map_err(|e| ExportError::Invalid(e.to_string()))?,
        "payloads": opts.payloads,
        "out": out.display().to_string(),
        "manifest_key": manifest_signer.verifier().to_string(),
    });
    let receipt = log.append_blocking(
        Event::new(EventKind::AuditExport, opts.exporter.clone()).with_data(data),
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    let r = match &opts.selection {
        Selection::Session { id } => super::session::build(
            log,
            manifest_signer,
            opts,
            id,
            &super::session::Target {
                tmp: &tmp,
                export_entry: receipt.seq,
                size: receipt.size,
                note: &receipt.checkpoint,
            },
            progress,
        ),
        Selection::All | Selection::Time { .. } => build(
            log,
            manifest_signer,
            opts,
            &tmp,
            receipt.seq,
            receipt.size,
            &receipt.checkpoint,
            progress,
        ),
    }
    .and_then(|report| finish(&tmp, out, opts.tar).map(|()| report));
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// The temporary folder an export to `out` is built in (beside it, so the
/// final rename stays on one file system); refuses an `out` that exists.
pub(super) fn temp_beside(out: &Path) -> Result<PathBuf, ExportError> {
    if out.exists() {
        return Err(ExportError::Invalid(format!(
            "{} already exists",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ExportError::Invalid("bad output name".into()))?;
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    log: &AuditLog,
    manifest_signer: &dyn Signer,
    opts: &ExportOptions,
    tmp: &Path,
    export_entry: u64,
    size: u64,
    note: &str,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportReport, ExportError> {
    private_fs::create_dir_all(tmp).map_err(|e| ExportError::io(tmp, e))?;
    let mut o = Out::new(tmp);
    let store = log.store()?;
    let keys = super::bundle_out::keys_at(&store, size)?;
    let verifier = stele_attest::NoteVerifier::parse(keys.current())?;
    let (cp, _) = Checkpoint::open(note, &verifier)?;

    // A log whose prefix is archived is exported from its boundary: the
    // bundle starts there (`super::start`), with the keys below it as its
    // `log.archive` entry proves them.
    let start = super::start::of_store(&store)?;
    let from = start.as_ref().map_or(0, |(s, _)| s.size);
    let mut checker = match &start {
        None => LeafChecker::new(log.origin(), keys.first()),
        Some((_, seen)) => {
            let (at, revs) = crate::archive::replay_keys(&store, seen, keys.first(), log.origin())
                .map_err(|why| {
                    ExportError::Invalid(format!("the archived prefix's keys: {why}"))
                })?;
            let row = store.archived()?.ok_or_else(|| {
                ExportError::Invalid("the archived row went away during the export".into())
            })?;
            let mut c =
                LeafChecker::resume(log.origin(), keys.first(), row.frontier, Some(row.prev))
                    .with_keys(at);
            c.revocations = revs;
            c
        }
    };
    let mut tiles = TileBuilder::new();
    let mut done: Vec<TileFile> = Vec::new();
    let ocsf_path = tmp.join(OCSF);
    private_fs::create_dir_all(&tmp.join("ocsf")).map_err(|e| ExportError::io(tmp, e))?;
    let mut ocsf_w = ocsf::OcsfWriter::create(&ocsf_path)?;
    let mut summary = SummaryBuilder::default();
    let mut selected: Vec<u64> = Vec::new();
    let mut selected_count = 0u64;
    let mut commits: Vec<Hash> = Vec::new();
    let mut span: Option<(String, String)> = None;
    let mut leaves_for_proofs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut pending: Result<(), ExportError> = Ok(());

    store.for_each_entry(from, size, |seq, bytes, stored| {
        if seq.is_multiple_of(PROGRESS_EVERY) {
            progress(ExportProgress::Entries {
                done: seq - from,
                total: size - from,
            });
        }
        if seq != checker.size() {
            return Err(crate::AuditError::Integrity {
                index: checker.size(),
                reason: "entry missing".into(),
            });
        }
        let mut nodes = Vec::new();
        let (leaf, h) = checker
            .push_leaf(bytes, Some(stored), |n| nodes.push(n))
            .map_err(|f| crate::AuditError::Integrity {
                index: f.index,
                reason: f.reason,
            })?;
        tiles.push_entry(bytes, &mut done);
        tiles.push_leaf_hash(&h, &mut done);
        // Past 0, only entry bundles and leaf hashes are tiled
        // (`tiles::live_tile_paths`).
        if from == 0 {
            for n in &nodes {
                tiles.push_completed(n, &mut done);
            }
        }
        for (p, b) in done.drain(..) {
            if let Err(e) = o.put(&p, &b) {
                pending = Err(e);
            }
        }
        if opts.selection.selects(&leaf) {
            selected_count += 1;
            summary.add(&leaf);
            if let Err(e) = ocsf_w.push(&leaf, &h, &cp.origin) {
                pending = Err(e);
            }
            commits.extend(leaf.payload.iter().filter_map(|p| parse_commit(&p.commit)));
            match &mut span {
                None => span = Some((leaf.ts.clone(), leaf.ts.clone())),
                Some((_, b)) => b.clone_from(&leaf.ts),
            }
            if !matches!(opts.selection, Selection::All) && selected.len() < MAX_PROOFS {
                selected.push(seq);
                leaves_for_proofs.insert(seq, bytes.to_vec());
            }
        }
        Ok(())
    })?;
    pending?;
    if checker.keys != keys {
        return Err(ExportError::Invalid(
            "the log's key record differs from its key.rotation entries (run `stele audit verify`)"
                .into(),
        ));
    }
    let revoked = std::mem::take(&mut checker.revocations);
    if checker.size() != size || checker.root() != cp.root {
        return Err(ExportError::Invalid(format!(
            "the log does not re-derive the checkpoint at size {size}"
        )));
    }
    tiles.finish(&mut done);
    for (p, b) in done.drain(..) {
        o.put(&p, &b)?;
    }
    let d = ocsf_w.finish()?;
    o.digests.insert(OCSF.to_string(), d);

    // Whole-log and time exports name no session (a session export is a
    // session bundle: `super::session`).
    let sessions: Vec<SessionRange> = Vec::new();

    // Checkpoints: the newest, plus every published or cosigned one below it.
    let cp_sizes = put_checkpoints(&mut o, &store, note, size, &keys, &revoked, from)?;

    // Inclusion proofs of the selected entries.
    for (i, seq) in selected.iter().enumerate() {
        if (i as u64).is_multiple_of(PROGRESS_EVERY / 16) {
            progress(ExportProgress::Proofs {
                done: i as u64,
                total: selected.len() as u64,
            });
        }
        let path = inclusion_proof(&store, *seq, size)?;
        let leaf = leaves_for_proofs
            .get(seq)
            .map(Vec::as_slice)
            .unwrap_or_default();
        o.put(
            &format!("{PROOFS_DIR}{seq}.tlog-proof"),
            crate::proof::render(leaf, *seq, &path, note).as_bytes(),
        )?;
    }

    // Payloads (salt ‖ body) of selected entries, unless redacted or withheld.
    if opts.payloads {
        // A payload committed once may be listed by several entries (shared payloads).
        commits.sort_unstable();
        commits.dedup();
        for (i, c) in commits.iter().enumerate() {
            if (i as u64).is_multiple_of(PROGRESS_EVERY / 16) {
                progress(ExportProgress::Payloads {
                    done: i as u64,
                    total: commits.len() as u64,
                });
            }
            if let Some(p) = store.payload(c)? {
                if let (Some(salt), Some(body)) = (p.salt, p.body) {
                    let mut b = salt;
                    b.extend_from_slice(&body);
                    o.put(&format!("{PAYLOADS_DIR}{}", hex::encode(c)), &b)?;
                }
            }
        }
    }

    let policies = o.policies(&opts.policies)?;
    o.attestations(log.path(), &sessions)?;

    let selection_text = super::layout::selection_text(&opts.selection);
    o.put(
        SUMMARY,
        summary.render(&cp.origin, size, &selection_text).as_bytes(),
    )?;
    let predicate = ExportPredicate {
        origin: cp.origin.clone(),
        log_key: verifier.to_string(),
        keys: super::bundle_out::listed_keys(&keys),
        revoked,
        tree_size: size,
        root: hash_b64(&cp.root),
        range: opts.selection.clone(),
        sessions,
        selected: selected_count,
        time_span: span,
        exporter: Exporter {
            principal: opts.exporter.principal.clone(),
            host: opts.exporter.host.clone(),
            runtime: opts.exporter.runtime.clone(),
            entry: export_entry,
        },
        policies,
        payloads_included: opts.payloads,
        checkpoints: cp_sizes,
        layout: BundleLayout::Tiles,
        ocsf_mapping: super::ocsf::OcsfMapping::CURRENT,
        start: start.map(|(s, _)| s),
    };
    let files = o.seal(&predicate, &verifier.to_string(), manifest_signer)?;
    Ok(ExportReport {
        tree_size: size,
        selected: selected_count,
        files,
        export_entry,
    })
}

/// fsync the folder tree, then rename it (or a tar made from it) into place.
pub(super) fn finish(tmp: &Path, out: &Path, tar: bool) -> Result<(), ExportError> {
    if tar {
        let files = super::list_files(tmp)?;
        let tmp_tar = tmp.with_extension("tar.partial");
        let f = private_fs::create_file(&tmp_tar).map_err(|e| ExportError::io(&tmp_tar, e))?;
        let mut w = super::tar::TarWriter::new(BufWriter::new(f));
        for rel in &files {
            let b = std::fs::read(tmp.join(rel)).map_err(|e| ExportError::io(&tmp.join(rel), e))?;
            w.file(rel, &b)?;
        }
        let f = w
            .finish()?
            .into_inner()
            .map_err(|e| ExportError::io(&tmp_tar, e.into_error()))?;
        f.sync_all().map_err(|e| ExportError::io(&tmp_tar, e))?;
        std::fs::rename(&tmp_tar, out).map_err(|e| ExportError::io(out, e))?;
        let _ = std::fs::remove_dir_all(tmp);
    } else {
        // Every file and folder written under `tmp`, durable in one call
        // (syncfs), before the rename makes the export visible.
        let d = File::open(tmp).map_err(|e| ExportError::io(tmp, e))?;
        rustix::fs::syncfs(&d).map_err(|e| ExportError::io(tmp, e.into()))?;
        std::fs::rename(tmp, out).map_err(|e| ExportError::io(out, e))?;
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| ExportError::io(parent, e))?;
    Ok(())
}
