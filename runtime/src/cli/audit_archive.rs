//! `stele audit archive` (docs/retention.md, "Archival"): move a sealed
//! prefix of the log into an archive bundle, verified by stele-verify's
//! code before anything is removed; and the chain check of
//! `stele audit verify --archive`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::{load_key_file, NoteVerifier, Signer as _};
use stele_audit::export::archive::{archive as run_archive, ArchiveOptions};
use stele_audit::leaf_view::LeafView;
use stele_audit::retention::{leaf_time, parse_time};
use stele_audit::{AuditLog, LogOptions, Store};
use stele_verify::chain::{join_boundary, verify_chain, Boundary};
use stele_verify::{Bundle, Options, Produce};

use super::audit::{human_actor, LogArgs};
use crate::paths;
use crate::terminal_safe;

/// Arguments of `stele audit archive`.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveArgs {
    /// Archive the entries below this index (the boundary).
    #[arg(long, conflicts_with = "before", required_unless_present = "before")]
    pub through: Option<u64>,
    /// Archive the entries made before this time (YYYY-MM-DD or RFC 3339):
    /// the boundary is the first entry at or after it.
    #[arg(long)]
    pub before: Option<String>,
    /// The archive bundle to write (a folder, or one file ending in `.tar`).
    #[arg(long)]
    pub out: PathBuf,
    /// Why (retention schedule, ticket).
    #[arg(long)]
    pub reason: String,
    /// Who archives [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Sign the bundle's manifest with this key instead of the log key.
    #[arg(long)]
    pub export_key: Option<PathBuf>,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// The reviewer's options for a bundle of this log.
fn verify_options(log_key: NoteVerifier, export_key: Option<NoteVerifier>) -> Options {
    Options {
        log_key,
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key,
        witnesses: Vec::new(),
        quorum: None,
        anchors: Vec::new(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        tsa: None,
    }
}

/// The first index, from the live log's start, whose entry was made at or
/// after `before`.
fn boundary_before(store: &Store, before: &str) -> anyhow::Result<u64> {
    let t = parse_time(before).map_err(|e| anyhow::anyhow!("--before {before:?}: {e}"))?;
    let cut = leaf_time(t);
    let from = store.archived()?.map_or(0, |a| a.size);
    let size = store.size()?;
    let mut found = None;
    store.for_each_entry(from, size, |seq, leaf, _| {
        if found.is_none() {
            let ts = match LeafView::scan(leaf) {
                Some(v) => v.ts.to_string(),
                None => stele_audit::leaf::Leaf::parse_canonical(leaf)
                    .map(|l| l.ts)
                    .map_err(|e| stele_audit::AuditError::Integrity {
                        index: seq,
                        reason: e.to_string(),
                    })?,
            };
            if ts >= cut {
                found = Some(seq);
            }
        }
        Ok(())
    })?;
    Ok(found.unwrap_or(size))
}

/// Run `stele audit archive`.
pub fn archive(a: ArchiveArgs) -> anyhow::Result<ExitCode> {
    // The bundle holds every archived payload: private whatever the umask.
    paths::private_umask();
    let out = std::path::absolute(&a.out)?;
    let (db, key) = (a.log.db(), a.log.key());
    super::audit_export::refuse_export_into_workspace(&db, &out)?;
    let actor = human_actor(a.user.clone())?;
    let signer = super::state::signing_key(&key)?;
    let manifest_key = match &a.export_key {
        Some(p) => Some(load_key_file(p)?),
        None => None,
    };
    super::state::existing_log(&db)?;
    let log = AuditLog::open(&db, signer.clone(), LogOptions::default())?;
    let through = match (a.through, &a.before) {
        (Some(n), _) => n,
        (None, Some(b)) => boundary_before(&log.store()?, b)?,
        (None, None) => anyhow::bail!("give --through N or --before DATE"),
    };
    let opts = ArchiveOptions {
        through,
        reason: a.reason.clone(),
        actor,
        tar: out.extension().is_some_and(|e| e == "tar"),
    };
    let vopts = verify_options(
        signer.verifier(),
        manifest_key.as_ref().map(|k| k.verifier()),
    );
    let manifest_signer: &dyn stele_attest::Signer = match &manifest_key {
        Some(k) => k,
        None => signer.as_ref(),
    };
    let done = run_archive(
        &log,
        signer.as_ref(),
        manifest_signer,
        &opts,
        &out,
        &mut |p| {
            let b = Bundle::open(p).map_err(|e| e.to_string())?;
            stele_verify::verify_producing(&b, &vopts, Produce::Result)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    log.close()?;
    let done = done.with_context(|| format!("archiving {}", terminal_safe::path(&db)))?;
    crate::outln!(
        "archived entries {}..{} into {} (manifest {}); log.archive entry {}",
        done.from,
        done.through,
        terminal_safe::path(&out),
        done.bundle,
        done.archive_entry
    );
    crate::outln!(
        "keep the bundle on WORM storage; check both with: stele audit verify --archive {}",
        terminal_safe::path(&out)
    );
    Ok(ExitCode::SUCCESS)
}

/// The chain from the archive bundles `paths` (oldest first) to the live
/// log at `db` (already verified): each bundle verifies on its own and
/// joins the next (`stele_verify::chain::verify_chain`); each is the one
/// its `archived` row names, and the last joins the live log at the
/// newest row (checked against its `log.archive` entry). Returns the
/// boundary.
pub(crate) fn chain(
    db: &Path,
    verifier: &NoteVerifier,
    paths: &[PathBuf],
    export_key: Option<NoteVerifier>,
) -> Result<u64, String> {
    let store = Store::open(db).map_err(|e| e.to_string())?;
    let rows = store.archived_rows().map_err(|e| e.to_string())?;
    let Some(newest) = rows.last() else {
        return Err("the live log has no archived prefix".to_string());
    };
    if paths.len() != rows.len() {
        let sizes: Vec<String> = rows.iter().map(|r| r.size.to_string()).collect();
        return Err(format!(
            "the live log was archived {} time(s) (through {}); give every archive bundle, oldest first, with --archive ({} given)",
            rows.len(),
            sizes.join(", "),
            paths.len()
        ));
    }
    let mut bundles = Vec::with_capacity(paths.len());
    for p in paths {
        let b = Bundle::open(p).map_err(|e| format!("{}: {e}", terminal_safe::path(p)))?;
        bundles.push((terminal_safe::path(p), b));
    }
    let opts = verify_options(verifier.clone(), export_key);
    let links = verify_chain(&bundles, &opts).map_err(|e| e.to_string())?;
    for (link, row) in links.iter().zip(&rows) {
        if link.digest != row.bundle || link.report.entries != row.size {
            return Err(format!(
                "{} (manifest {}, entries up to {}) is not the archive the live log recorded through {} (manifest {})",
                link.name, link.digest, link.report.entries, row.size, row.bundle
            ));
        }
    }
    let last = links
        .last()
        .ok_or_else(|| "no archive bundle given".to_string())?;
    let boundary = Boundary {
        size: newest.size,
        root: newest.root,
        prev: newest.prev,
        bundle: newest.bundle.clone(),
    };
    join_boundary(&last.report, &last.digest, &boundary)
        .map(|()| newest.size)
        .map_err(|e| format!("{}: {e}", last.name))
}
