//! `stele audit export`: a signed bundle for reviewers, written privately
//! (folders 0700, files 0600 whatever the umask), recorded in the log with
//! its absolute path, never into a workspace the log records, and added to
//! the log's export index (no later workspace may hold it).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::{load_key_file, Signer as _};
use stele_audit::{AuditLog, LogOptions};

use super::audit::{human_actor, ExportArgs};
use crate::paths;
use crate::terminal_safe;

/// Run `stele audit export`.
pub(crate) fn export(db: &Path, key: &Path, mut a: ExportArgs) -> anyhow::Result<ExitCode> {
    use stele_audit::export::layout::Selection;
    use stele_audit::export::write::{export_with_progress, ExportOptions, PolicyInput};
    // An export holds every payload of what it exports: private (folders
    // 0700, files 0600) whatever the umask.
    paths::private_umask();
    // Recorded absolute, so that later sessions can refuse a workspace
    // that holds it; and never written into a workspace of this log.
    a.out = std::path::absolute(&a.out)?;
    let exporter = human_actor(a.user.clone())?;
    refuse_export_into_workspace(db, &a.out)?;
    let selection = match (&a.session, &a.since, &a.until) {
        (Some(id), _, _) => Selection::Session { id: id.clone() },
        (None, Some(since), Some(until)) => Selection::Time {
            since: since.clone(),
            until: until.clone(),
        },
        _ => Selection::All,
    };
    let mut policies = Vec::new();
    for dir in &a.policies {
        // The engine's digest is the one leaves name in `decision.bundle`.
        let digest = stele_policy::Bundle::load(dir)
            .map(|b| b.digest().to_string())
            .with_context(|| format!("loading policy bundle {}", terminal_safe::path(dir)))?;
        policies.push(PolicyInput {
            dir: dir.clone(),
            bundle_digest: Some(digest),
        });
    }
    let signer = super::state::signing_key(key)?;
    let manifest_key = match &a.export_key {
        Some(p) => Some(load_key_file(p)?),
        None => None,
    };
    let log = AuditLog::open(db, signer.clone(), LogOptions::default()).with_context(|| {
        format!(
            "opening {} (exports are themselves logged)",
            terminal_safe::path(db)
        )
    })?;
    let tar = a.out.extension().is_some_and(|e| e == "tar");
    let opts = ExportOptions {
        selection,
        payloads: !a.no_payloads,
        policies,
        exporter,
        allow_open_session: a.allow_open_session,
        tar,
    };
    let mk: &dyn stele_attest::Signer = match &manifest_key {
        Some(k) => k,
        None => signer.as_ref(),
    };
    let mut progress = Progress::new();
    let r = export_with_progress(&log, mk, &opts, &a.out, &mut |p| progress.show(p));
    progress.done();
    log.close()?;
    let r = r?;
    // Later sessions find this export quickly (no workspace may hold it).
    crate::isolation::exports::refresh_index(db);
    if a.json {
        super::json::pretty(&super::json::ExportReport {
            out: a.out.display().to_string(),
            tree_size: r.tree_size,
            selected: r.selected,
            files: r.files as u64 + 1,
            export_entry: r.export_entry,
            verifier: signer.verifier().to_string(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    match &opts.selection {
        Selection::Session { .. } => crate::outln!(
            "exported {} (a session bundle: the session's {} entries, each proven in the log at size {}; {} files; recorded as entry {})",
            terminal_safe::path(&a.out),
            r.selected,
            r.tree_size,
            r.files + 1,
            r.export_entry
        ),
        Selection::All | Selection::Time { .. } => crate::outln!(
            "exported {} ({} entries in the tiles, {} selected, {} files; recorded as entry {})",
            terminal_safe::path(&a.out),
            r.tree_size,
            r.selected,
            r.files + 1,
            r.export_entry
        ),
    }
    // Every key the verifier needs: without the export key a reviewer's
    // first run fails as if the manifest had been tampered with.
    let export_key = manifest_key
        .as_ref()
        .map(|k| {
            format!(
                " --export-key '{}'",
                terminal_safe::line(&k.verifier().to_string())
            )
        })
        .unwrap_or_default();
    crate::outln!(
        "verify with: stele-verify {} --key '{}'{export_key}",
        terminal_safe::path(&a.out),
        terminal_safe::line(&signer.verifier().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress line on standard error when it is a terminal, for exports
/// that take more than a second; nothing in a pipe or a file.
struct Progress {
    started: std::time::Instant,
    last: Option<std::time::Instant>,
    terminal: bool,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal as _;
        Self {
            started: std::time::Instant::now(),
            last: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, p: stele_audit::export::write::ExportProgress) {
        use stele_audit::export::write::ExportProgress as P;
        let now = std::time::Instant::now();
        if !self.terminal
            || now.duration_since(self.started) < std::time::Duration::from_secs(1)
            || self
                .last
                .is_some_and(|l| now.duration_since(l) < std::time::Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(now);
        let (what, done, total) = match p {
            P::Entries { done, total } => ("entries checked and tiled", done, total),
            // A session bundle: its entries read through the index by
            // session, checked and proven one by one.
            P::SessionEntries { done, total } => {
                ("session entries checked and proven", done, total)
            }
            P::Proofs { done, total } => ("inclusion proofs", done, total),
            P::Payloads { done, total } => ("payloads", done, total),
        };
        // Erase the line, then rewrite it.
        crate::errout!("\r\x1b[2Kstele: exporting: {what} {done}/{total}");
    }

    fn done(&self) {
        if self.last.is_some() {
            crate::errout!("\r\x1b[2K");
        }
    }
}

/// An export written into (or over) a workspace this log records would be
/// read by a later session's sandbox: every payload of every exported
/// session. Refused, naming both folders.
pub(crate) fn refuse_export_into_workspace(db: &Path, out: &Path) -> anyhow::Result<()> {
    use crate::isolation::{self, Kind, Location};
    for ws in isolation::locations::recorded_workspaces(db)? {
        // The output seen as a location the workspace must not hold.
        if let Err(e) = isolation::check(&ws, &[Location::new(Kind::Export, out)]) {
            if matches!(e, isolation::IsolationError::Overlap { .. }) {
                anyhow::bail!(
                    "refusing to export to {}: it is inside {}, a workspace of this log \
                     (a later session could read every exported payload). Export elsewhere.",
                    terminal_safe::path(out),
                    terminal_safe::path(&ws)
                );
            }
        }
    }
    Ok(())
}
