//! A/B of warm per-command round trips with two guest agent binaries, in
//! two VMs measured alternately (on a shared machine, load drifts far more
//! between two runs of `stele vm bench` than the effects being measured).
//!
//! ```text
//! cargo build --release -p stele-sandbox --bin stele-guest --example vm_ab
//! cp target/release/stele-guest /tmp/agent-b      # …after a change
//! target/release/examples/vm_ab /tmp/agent-a /tmp/agent-b 20 /bin/sh -c true
//! ```
//!
//! Arguments: agent A, agent B, rounds (10 runs of each per round), the
//! command (default `/bin/true`). Needs the image `stele vm image build` made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use stele_sandbox::process::NetworkMode;
use stele_sandbox::vm::{AccelChoice, ImageStore, VmSandbox, VmSandboxConfig};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};

#[derive(Debug)]
struct AllowFiles;

impl Mediator for AllowFiles {
    fn file_access(&self, _: &FileRequest) -> Verdict {
        Verdict::Allow(Ticket(1))
    }
    fn file_closed(&self, _: &FileCloseReport) {}
    fn net_connect(&self, _: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("benchmark".into())
    }
    fn net_closed(&self, _: &NetCloseReport) {}
}

fn images() -> ImageStore {
    match std::env::var_os("STELE_VM_IMAGES") {
        Some(p) => ImageStore::at(PathBuf::from(p)),
        None => ImageStore::at(
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".local/state/stele/vm/images"),
        ),
    }
}

fn boot(tag: &str, agent: &str) -> VmSandbox {
    let ws = std::env::temp_dir().join(format!("vm-ab-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&ws).unwrap();
    let image = images().current().expect("a guest image");
    let mut cfg = VmSandboxConfig::new(&ws, Arc::new(AllowFiles), image, agent);
    cfg.accel = AccelChoice::Auto;
    cfg.network = NetworkMode::LoopbackOnly;
    let vm = VmSandbox::new(cfg).expect("the VM boots");
    eprintln!(
        "{tag}: {agent} up in {:?} ({})",
        vm.info().boot_time,
        vm.info().accel.name()
    );
    vm
}

fn once(vm: &VmSandbox, argv: &[String]) -> Duration {
    let t = Instant::now();
    let o = vm.exec(ExecRequest::new("ab", argv.to_vec())).unwrap();
    assert_eq!(o.status, ExitStatus::Exit(0), "{o:?}");
    t.elapsed()
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        args.len() >= 2,
        "usage: vm_ab AGENT_A AGENT_B [ROUNDS] [CMD…]"
    );
    let rounds: usize = args.get(2).map_or(10, |s| s.parse().expect("rounds"));
    let mut argv: Vec<String> = args.iter().skip(3).cloned().collect();
    if argv.is_empty() {
        argv.push("/bin/true".into());
    }
    let (a, b) = (boot("A", &args[0]), boot("B", &args[1]));
    for _ in 0..5 {
        once(&a, &argv);
        once(&b, &argv);
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..10 {
            ta.push(once(&a, &argv));
        }
        for _ in 0..10 {
            tb.push(once(&b, &argv));
        }
    }
    println!(
        "{argv:?}: A median {:.2} ms, B median {:.2} ms ({} runs each, interleaved)",
        median_ms(ta),
        median_ms(tb),
        rounds * 10
    );
}
