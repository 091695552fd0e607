//! The `stele` binary.

use std::process::ExitCode;

use clap::Parser;
use stele_runtime::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Keys(args) => cli::keys::run(args),
        Command::Audit(args) => cli::audit::run(args),
        Command::Policy(args) => cli::policy::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Session(args) => cli::session::run(args),
        Command::Sandbox(args) => cli::sandbox::run(args),
        Command::Vm(args) => cli::vm::run(args),
        Command::Witness(args) => cli::witness::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stele: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STELE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,fuse_backend_rs::transport=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
