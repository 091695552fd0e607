//! The `stele` binary.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;
use stele_runtime::cli::{self, Cli, Command};
use stele_runtime::witnessing::WitnessingError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // Only commands that run an agent produce spans.
    let traced = matches!(
        cli.command,
        Command::Run(_) | Command::Chat(_) | Command::Demo(_) | Command::Session(_)
    );
    let telemetry = if traced { init_telemetry() } else { None };
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
    // Flush the spans before exiting.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    // Output that could not be written (other than to a closed pipe) must
    // not pass for a complete answer.
    if let Some(why) = stele_runtime::printing::failure() {
        stele_runtime::errln!("stele: error: {why}");
        return ExitCode::from(stele_runtime::printing::EXIT_OUTPUT_FAILED);
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            // Errors quote paths, names and text from the log, the model
            // and the workspace: shown escaped, on one line.
            stele_runtime::errln!(
                "stele: error: {}",
                stele_runtime::terminal_safe::line(&format!("{err:#}"))
            );
            match err.downcast_ref::<WitnessingError>() {
                // A witness saw another history, or too few cosigned: as for a tampered log.
                Some(
                    WitnessingError::HistoryConflict(_) | WitnessingError::QuorumNotMet { .. },
                ) => ExitCode::from(cli::audit::EXIT_TAMPERED),
                Some(WitnessingError::Config { .. } | WitnessingError::Load(_)) | None => {
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// OpenTelemetry export when configured; a problem with it is a warning, not fatal.
fn init_telemetry() -> Option<stele_runtime::telemetry::Telemetry> {
    match stele_runtime::telemetry::init() {
        Ok(t) => t,
        // The command itself reports a configuration it cannot read.
        Err(stele_runtime::telemetry::TelemetryError::Config(_)) => None,
        Err(e) => {
            stele_runtime::errln!("stele: warning: traces are not exported: {e}");
            None
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STELE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,fuse_backend_rs::transport=off")
    });
    // Colour codes only for a terminal: a log file or a pipe gets plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
