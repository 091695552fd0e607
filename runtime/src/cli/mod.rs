//! The `stele` command line: one module per top-level subcommand.

pub mod audit;
pub mod audit_archive;
pub mod audit_bench;
pub mod audit_export;
pub mod audit_feed;
pub mod audit_period;
pub mod audit_read;
pub mod audit_report;
pub mod audit_retention;
pub mod audit_show;
pub mod audit_timestamp;
pub mod backend;
pub mod bench;
pub mod bench_exec;
pub mod bench_scratch;
pub mod bench_tool_call;
pub mod bench_workload;
pub mod chat;
pub mod demo;
pub mod denial_words;
pub mod doctor;
pub mod entry_filter;
pub mod entry_line;
pub mod exit;
pub mod json;
pub mod keys;
pub mod keys_rotate;
pub mod policy;
pub mod policy_json;
pub mod resources;
pub mod run;
pub mod sandbox;
pub mod sandbox_check;
pub mod session;
mod session_export;
mod session_import;
pub mod setup;
pub mod state;
pub mod ticker;
pub mod vm;
pub mod vm_image;
pub mod witness;

use clap::Subcommand;

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who you are here, what the policy lets you do, and whether the sandbox, key, log and model are ready (each problem with its fix).
    Doctor(doctor::DoctorArgs),
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
    /// Measure the gate's overhead per tool call and a whole tool call's latency.
    Bench(bench::BenchArgs),
    /// List, show and resume sessions.
    Session(session::SessionArgs),
    /// Run commands in the sandbox and check what this host supports.
    Sandbox(sandbox::SandboxArgs),
    /// The micro-VM backend: its guest image, whether a VM can run here, its timings.
    Vm(vm::VmArgs),
    /// Run a C2SP witness that cosigns stele logs' checkpoints.
    Witness(witness::WitnessArgs),
}
