//! The `stele` command line: one module per top-level subcommand.

pub mod audit;
pub mod audit_export;
pub mod backend;
pub mod bench;
pub mod bench_tool_call;
pub mod chat;
pub mod demo;
pub mod entry_line;
pub mod keys;
pub mod policy;
pub mod resources;
pub mod run;
pub mod sandbox;
pub mod sandbox_check;
pub mod session;
pub mod setup;
pub mod vm;
pub mod witness;

use clap::{Parser, Subcommand};

/// stele: an audit-first agent runtime.
#[derive(Debug, Parser)]
#[command(name = "stele", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage signing keys.
    Keys(keys::KeysArgs),
    /// Inspect, verify, prove, redact and benchmark the audit log.
    Audit(audit::AuditArgs),
    /// Validate, test and explain policy bundles.
    Policy(policy::PolicyArgs),
    /// The whole product in one command: sample receipts, a finance policy, a scripted session, a verified log.
    Demo(demo::DemoArgs),
    /// An interactive session: each line is a request, in one session and sandbox.
    Chat(run::RunArgs),
    /// Run one task with an agent, under policy and audit.
    Run(run::RunArgs),
    /// Measure the gate's overhead.
    Bench(bench::BenchArgs),
    /// List, show and resume sessions.
    Session(session::SessionArgs),
    /// Run commands in the sandbox and check what this host supports.
    Sandbox(sandbox::SandboxArgs),
    /// Build and inspect the micro-VM backend's guest image.
    Vm(vm::VmArgs),
    /// Run a C2SP witness that cosigns stele logs' checkpoints.
    Witness(witness::WitnessArgs),
}
