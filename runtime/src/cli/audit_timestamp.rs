//! `stele audit timestamp`: stamp the log's newest checkpoint now with the
//! configured `[tsa]` — for operators and cron, between sessions or beside
//! a long one. The token is verified and stored exactly as at a session's
//! end (`stele audit export` carries it, `stele-verify --tsa-cert` checks
//! it); unlike there, a failure is the command's error (exit 1), since
//! stamping is all it does.

use std::process::ExitCode;

use anyhow::Context as _;

use super::audit::LogArgs;
use crate::terminal_safe;
use crate::timestamping::Timestamping;

/// Run `stele audit timestamp`.
pub fn run(log: &LogArgs) -> anyhow::Result<ExitCode> {
    let t = Timestamping::load()?.context(
        "the configuration has no [tsa] table (url, cert; docs/audit-format.md, timestamps)",
    )?;
    let (db, key) = (log.db(), log.key());
    super::state::existing_log(&db)?;
    let verifier = super::state::signing_key(&key)?.verifier();
    let s = t
        .stamp_now(&db, &verifier)
        .with_context(|| format!("timestamping {}", terminal_safe::path(&db)))?;
    crate::outln!(
        "checkpoint {} timestamped {} by {} ({} ms)",
        s.size,
        s.stamp.gen_time,
        terminal_safe::line(&s.stamp.tsa),
        s.round_trip.as_millis()
    );
    Ok(ExitCode::SUCCESS)
}
