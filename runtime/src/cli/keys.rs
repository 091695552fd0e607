//! `stele keys …`.

use std::process::ExitCode;

/// Arguments of `stele keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {}

/// Run `stele keys`.
pub fn run(_args: KeysArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
