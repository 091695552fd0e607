//! `stele session import FILE --vkey KEY`: continue here a session that
//! another machine exported ([`crate::session_move_import`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::NoteVerifier;

use super::setup;
use crate::session_move_import::{fingerprint, import_session, Departure, ImportRequest};
use crate::terminal_safe;

/// Run `stele session import`.
pub(crate) fn import(
    db: &Path,
    key: &Path,
    file: &Path,
    vkeys: &[String],
    workspace: Option<PathBuf>,
    policy: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut trusted = Vec::new();
    for v in vkeys {
        trusted.push(read_key(v)?);
    }
    let signer = super::state::signing_key(key)?;
    let log = setup::open_log(db, signer)?;
    let r = import_session(
        &log,
        db,
        &ImportRequest {
            file,
            trusted: &trusted,
            workspace,
            policy,
            departure: Departure::Moved,
        },
    );
    log.close_shared()
        .with_context(|| format!("closing {}", terminal_safe::path(db)))?;
    let done = r?;
    crate::outln!(
        "verified {} with the key of {} (fingerprint {}): session {}, {} entries",
        terminal_safe::path(file),
        terminal_safe::line(&done.origin),
        terminal_safe::line(&fingerprint(&done.key)),
        terminal_safe::line(&done.id),
        done.entries
    );
    crate::outln!(
        "imported as entry {} (session.start continuing it; {} messages carried over); workspace {}, policy {}",
        done.start_entry,
        done.messages,
        terminal_safe::path(&done.workspace),
        terminal_safe::path(&done.policy)
    );
    crate::outln!(
        "continue it with: stele session resume {}",
        terminal_safe::line(&done.id)
    );
    Ok(ExitCode::SUCCESS)
}

/// A verifier key given as its text or as a file holding it.
fn read_key(v: &str) -> anyhow::Result<NoteVerifier> {
    let text = if Path::new(v).is_file() {
        std::fs::read_to_string(v).with_context(|| format!("--vkey {}", terminal_safe::line(v)))?
    } else {
        v.to_string()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "--vkey {}: not a verifier key ({e}); `stele keys show` on the source machine prints it",
            terminal_safe::line(v)
        )
    })
}
