//! `stele vm …`: the micro-VM backend's guest image, its state on this
//! host, and its benchmark.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use stele_sandbox::process::{NetworkMode, ProcessSandbox, ProcessSandboxConfig};
use stele_sandbox::vm::{
    build_image, AccelChoice, ImageStore, VmReport, VmSandbox, VmSandboxConfig,
};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};

/// Arguments of `stele vm`.
#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VmCommand,
}

/// `stele vm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VmCommand {
    /// Build or inspect the guest image.
    Image(ImageArgs),
    /// Report whether a micro-VM can run here (QEMU, KVM, TCG, image, agent).
    Check(CheckArgs),
    /// Measure boot time, warm per-command round trips and a file-heavy workload.
    Bench(BenchArgs),
}

/// Arguments of `stele vm check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `stele vm bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Cold boots to measure.
    #[arg(long, default_value_t = 3)]
    pub boots: usize,
    /// Warm round trips to measure.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Skip the file-heavy workload.
    #[arg(long)]
    pub no_files: bool,
    /// Accelerator.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
}

/// Accelerator choice on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AccelArg {
    /// KVM when usable, else TCG.
    Auto,
    /// KVM only.
    Kvm,
    /// TCG only.
    Tcg,
}

impl AccelArg {
    fn choice(self) -> AccelChoice {
        match self {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
}

/// Arguments of `stele vm image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `stele vm image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Build the guest image from Debian packages (cached by the hash of its inputs) and print its digest.
    Build(StoreArgs),
    /// Print the current image's manifest.
    Show(StoreArgs),
}

/// Where images are kept.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Image store [default: $STELE_VM_IMAGES, else $STATE/vm/images].
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// The image store: `$STELE_VM_IMAGES`, else `$STATE/vm/images`. Kept apart
/// from per-session state so that tests with a private state directory still
/// find the image the setup script built.
pub fn default_store() -> ImageStore {
    ImageStore::at(crate::paths::vm_image_store())
}

fn store(args: &StoreArgs) -> ImageStore {
    match &args.store {
        Some(p) => ImageStore::at(p.clone()),
        None => default_store(),
    }
}

/// The `stele-guest` binary: beside the running `stele`.
pub fn agent_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("stele-guest")))
        .unwrap_or_else(|| PathBuf::from("stele-guest"))
}

/// The micro-VM section of `stele sandbox check`.
pub fn probe() -> VmReport {
    VmReport::probe(&default_store(), &agent_path())
}

/// The report as JSON.
pub fn report_json(r: &VmReport) -> serde_json::Value {
    json!({
        "qemu": r.qemu.as_ref().ok(),
        "kvm_usable": r.kvm == stele_sandbox::vm::KvmProbe::Usable,
        "kvm_detail": match &r.kvm {
            stele_sandbox::vm::KvmProbe::Usable => None,
            stele_sandbox::vm::KvmProbe::Unusable(why) => Some(why.clone()),
        },
        "tcg": r.tcg,
        "image_digest": r.image.as_ref().ok().map(|(d, _)| d.clone()),
        "image_error": r.image.as_ref().err(),
        "agent": r.agent.as_ref().ok().map(|p| p.display().to_string()),
        "ready": r.ready(),
    })
}

/// Run `stele vm`.
pub fn run(args: VmArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        VmCommand::Check(a) => {
            let r = probe();
            if a.json {
                crate::outln!("{}", serde_json::to_string_pretty(&report_json(&r))?);
            } else {
                crate::out!("{}", r.render());
                crate::outln!(
                    "\nmicro-VM backend: {}",
                    if r.ready() { "READY" } else { "NOT AVAILABLE" }
                );
            }
            Ok(if r.ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        VmCommand::Bench(a) => bench(&a),
        VmCommand::Image(ImageArgs {
            command: ImageCommand::Build(a),
        }) => {
            let store = store(&a);
            // A new store is private (0700); the images inside stay
            // readable by the jailed QEMU, which gets them as mounts.
            crate::paths::ensure_private_dir(store.root())?;
            let started = Instant::now();
            let report = build_image(&store, &mut |step| crate::errln!("vm image: {step}"))?;
            let m = &report.image.manifest;
            if report.cached {
                crate::errln!("vm image: cached ({})", report.image.dir.display());
            } else {
                crate::errln!(
                    "vm image: built in {:.1} s ({})",
                    started.elapsed().as_secs_f64(),
                    report.image.dir.display()
                );
            }
            crate::errln!(
                "vm image: kernel {} ({}), root {} + {}",
                m.kernel_release,
                m.kernel_package,
                m.suite,
                m.packages.join(", ")
            );
            crate::outln!("{}", m.digest);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Image(ImageArgs {
            command: ImageCommand::Show(a),
        }) => {
            let image = store(&a).current()?;
            crate::outln!("{}", serde_json::to_string_pretty(&image.manifest)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The benchmark's mediator: allows the scratch workspace, no network.
#[derive(Debug, Default)]
struct BenchMediator {
    next: AtomicU64,
}

impl Mediator for BenchMediator {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        Verdict::Allow(Ticket(self.next.fetch_add(1, Ordering::Relaxed)))
    }
    fn file_closed(&self, _report: &FileCloseReport) {}
    fn net_connect(&self, _req: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("benchmark".into())
    }
    fn net_closed(&self, _report: &NetCloseReport) {}
}

/// The file-heavy workload of the sandbox benchmarks (sandbox/examples/fs_bench.rs):
/// read 10,000 small files in 100 folders, write 1,000.
const FILE_WORKLOAD: &str = r#"
import os, sys
root = sys.argv[1]
total = 0
for d in range(100):
    base = os.path.join(root, "in", "d%03d" % d)
    for i in range(100):
        with open(os.path.join(base, "f%03d.txt" % i), "rb") as f:
            total += len(f.read())
out = os.path.join(root, "out")
os.makedirs(out, exist_ok=True)
for i in range(1000):
    with open(os.path.join(out, "w%04d.txt" % i), "wb") as f:
        f.write(b"x" * 700 + b"%d\n" % i)
print(total)
"#;

fn populate(root: &std::path::Path) -> anyhow::Result<()> {
    for d in 0..100 {
        let dir = root.join("in").join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir)?;
        for i in 0..100 {
            let body = format!("{}{d}-{i}\n", "line of receipt data\n".repeat(20));
            std::fs::write(dir.join(format!("f{i:03}.txt")), body)?;
        }
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let idx = ((v.len().saturating_sub(1)) as f64 * 0.99).round() as usize;
    v.get(idx).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(sandbox: &dyn Sandbox, argv: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let o = sandbox.exec(ExecRequest::new(
        "bench",
        argv.iter().map(|s| (*s).to_owned()).collect(),
    ))?;
    let took = t.elapsed();
    anyhow::ensure!(
        o.status == ExitStatus::Exit(0),
        "{argv:?}: {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr.bytes)
    );
    Ok(took)
}

fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let image = default_store().current()?;
    let scratch = std::env::temp_dir().join(format!("stele-vm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = bench_in(args, image, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench_in(
    args: &BenchArgs,
    image: stele_sandbox::vm::GuestImage,
    scratch: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mediator: Arc<dyn Mediator> = Arc::new(BenchMediator::default());
    let mut cfg = VmSandboxConfig::new(scratch, mediator.clone(), image, agent_path());
    cfg.accel = args.accel.choice();
    cfg.network = NetworkMode::LoopbackOnly;
    crate::outln!("micro-VM benchmark (image {})", cfg.image.manifest.digest);
    let mut boots = Vec::new();
    let mut warm = None;
    for i in 0..args.boots.max(1) {
        let sb = VmSandbox::new(cfg.clone())?;
        crate::outln!(
            "boot {}: {:8.1} ms to agent ready ({})",
            i + 1,
            ms(sb.info().boot_time),
            sb.info().accel.name()
        );
        boots.push(sb.info().boot_time);
        warm = Some(sb);
    }
    let Some(vm) = warm else {
        anyhow::bail!("no VM booted");
    };
    crate::outln!("boot to agent ready: median {:8.1} ms", ms(median(boots)));
    let mut pings = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        pings.push(vm.ping()?);
    }
    crate::outln!(
        "channel round trip (no command)    median {:7.2} ms   p99 {:7.2} ms   ({} runs)",
        ms(median(pings.clone())),
        ms(p99(pings)),
        args.runs
    );
    for argv in [&["/bin/true"][..], &["/bin/sh", "-c", "true"][..]] {
        for _ in 0..3 {
            timed(&vm, argv)?;
        }
        let mut t = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            t.push(timed(&vm, argv)?);
        }
        crate::outln!(
            "warm round trip {:<18} median {:7.2} ms   p99 {:7.2} ms   ({} runs; goal <= 10 ms)",
            argv.join(" "),
            ms(median(t.clone())),
            ms(p99(t)),
            args.runs
        );
    }
    if !args.no_files {
        populate(scratch)?;
        let in_vm = timed(&vm, &["python3", "-c", FILE_WORKLOAD, "/workspace"])?;
        crate::outln!(
            "file workload (10,000 reads + 1,000 writes): micro-VM      {:8.1} ms",
            ms(in_vm)
        );
        drop(vm);
        let _ = std::fs::remove_dir_all(scratch.join("out"));
        let mut pcfg = ProcessSandboxConfig::new(scratch, mediator);
        pcfg.network = NetworkMode::LoopbackOnly;
        match ProcessSandbox::new(pcfg) {
            Ok(p) => {
                let in_proc = timed(&p, &["python3", "-c", FILE_WORKLOAD, "/workspace"])?;
                crate::outln!(
                    "file workload (10,000 reads + 1,000 writes): process sandbox {:8.1} ms   (micro-VM / process = {:.1}x)",
                    ms(in_proc),
                    in_vm.as_secs_f64() / in_proc.as_secs_f64()
                );
            }
            Err(e) => crate::outln!("process sandbox unavailable for comparison: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub use super::backend::BackendChoice;

/// A micro-VM sandbox for `workspace`, mediated by `mediator`. Booting
/// fails (never falls back) when the VM does not come up in time.
pub fn vm_sandbox(
    workspace: &std::path::Path,
    mediator: Arc<dyn Mediator>,
    network: NetworkMode,
    boot_timeout: Option<Duration>,
    quota: stele_sandbox::fs::WriteQuota,
    resources: &stele_sandbox::resources::ResourceLimits,
) -> anyhow::Result<VmSandbox> {
    let image = default_store().current()?;
    let mut cfg = VmSandboxConfig::new(workspace, mediator, image, agent_path());
    cfg.network = network;
    cfg.workspace_quota = quota;
    cfg.resources = resources.clone();
    if let Some(t) = boot_timeout {
        cfg.boot_timeout = t;
    }
    // Its message already names the cause (printing the chain would repeat it).
    let vm = VmSandbox::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = vm.info();
    crate::errln!(
        "stele: micro-VM up in {:.0} ms ({}, image {}, kernel {})",
        ms(info.boot_time),
        info.accel.name(),
        info.image_digest,
        info.kernel
    );
    Ok(vm)
}
