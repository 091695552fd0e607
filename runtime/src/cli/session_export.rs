//! `stele session export ID --out FILE`: an unfinished session leaves this
//! machine as a verifiable session bundle ([`crate::session_move`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::setup;
use crate::paths;
use crate::terminal_safe;

/// Run `stele session export`.
pub(crate) fn export(
    db: &Path,
    key: &Path,
    id: &str,
    out: &Path,
    user: Option<String>,
) -> anyhow::Result<ExitCode> {
    // The bundle holds every payload of the session: private whatever the umask.
    paths::private_umask();
    let out: PathBuf = std::path::absolute(out)?;
    super::audit_export::refuse_export_into_workspace(db, &out)?;
    let by = super::audit::human_actor(user)?;
    super::state::existing_log(db)?;
    let signer = super::state::signing_key(key)?;
    // Through recovery: intents a killed run left open are closed (as
    // interrupted, in the session) before the session's end is written.
    let log = setup::open_log(db, signer.clone())?;
    let r = crate::session_move::export_session(&log, signer.as_ref(), id, &out, by);
    log.close_shared()
        .with_context(|| format!("closing {}", terminal_safe::path(db)))?;
    let done = r?;
    crate::isolation::exports::refresh_index(db);
    match done.end_entry {
        Some(e) => crate::outln!(
            "session {} left this machine (entry {e}: its session.end records the move; it is no longer resumable here)",
            terminal_safe::line(id)
        ),
        None => crate::outln!(
            "session {} had moved already; exported again",
            terminal_safe::line(id)
        ),
    }
    crate::outln!(
        "exported {} (a session bundle: {} entries, proven in the log at size {}; recorded as entry {})",
        terminal_safe::path(&out),
        done.report.selected,
        done.report.tree_size,
        done.report.export_entry
    );
    match &done.policy {
        Some(p) => crate::outln!(
            "it holds a copy of the policy bundle {}",
            terminal_safe::path(p)
        ),
        None => crate::outln!(
            "it holds no copy of the session's policy bundle (unreadable here): give --policy DIR to `stele session import`"
        ),
    }
    crate::outln!(
        "continue it on another machine with: stele session import {} --vkey '{}'",
        terminal_safe::path(&out),
        terminal_safe::line(&signer.verifier().to_string())
    );
    Ok(ExitCode::SUCCESS)
}
