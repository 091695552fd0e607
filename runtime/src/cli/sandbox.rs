//! `stele sandbox …` (placeholder until the sandbox crate lands).

use std::process::ExitCode;

/// Arguments of `stele sandbox`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {}

/// Run `stele sandbox`.
pub fn run(_args: SandboxArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("stele sandbox is not available in this build")
}
