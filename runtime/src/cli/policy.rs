//! `stele policy …` (placeholder until the policy crate lands).

use std::process::ExitCode;

/// Arguments of `stele policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {}

/// Run `stele policy`.
pub fn run(_args: PolicyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("stele policy is not available in this build")
}
