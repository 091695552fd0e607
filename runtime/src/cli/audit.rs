//! `stele audit …`.

use std::process::ExitCode;

/// Arguments of `stele audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

/// Run `stele audit`.
pub fn run(_args: AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
