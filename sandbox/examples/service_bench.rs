//! Start-up cost of a sandboxed service (`process::service`) against a
//! plain child: the time from spawn to the first line echoed back by
//! `/bin/cat`, and the time to stop it, alternating runs.
//!
//! `cargo run --release -p stele-sandbox --example service_bench [RUNS] [proxy|none]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_sandbox::process::service::{ServiceNetwork, ServiceProcess, ServiceSpec};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Verdict,
};

#[derive(Debug)]
struct DenyAll;

impl Mediator for DenyAll {
    fn file_access(&self, _: &FileRequest) -> Verdict {
        Verdict::Deny("bench".into())
    }
    fn file_closed(&self, _: &FileCloseReport) {}
    fn net_connect(&self, _: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("bench".into())
    }
    fn net_closed(&self, _: &NetCloseReport) {}
}

fn echo(stdin: &mut impl Write, stdout: &mut impl Read) {
    stdin.write_all(b"x\n").unwrap();
    let mut b = [0u8; 2];
    stdout.read_exact(&mut b).unwrap();
}

fn plain() -> (Duration, Duration) {
    let t = Instant::now();
    let mut c = Command::new("/bin/cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    echo(c.stdin.as_mut().unwrap(), c.stdout.as_mut().unwrap());
    let started = t.elapsed();
    let t = Instant::now();
    c.kill().unwrap();
    c.wait().unwrap();
    (started, t.elapsed())
}

fn sandboxed(proxy: bool) -> (Duration, Duration) {
    let network = if proxy {
        ServiceNetwork::EgressProxy(Arc::new(DenyAll))
    } else {
        ServiceNetwork::LoopbackOnly
    };
    let t = Instant::now();
    let mut svc =
        ServiceProcess::start(ServiceSpec::new("bench", vec!["/bin/cat".into()], network)).unwrap();
    let io = svc.take_io().unwrap();
    let (mut i, mut o) = (
        std::fs::File::from(io.stdin),
        std::fs::File::from(io.stdout),
    );
    echo(&mut i, &mut o);
    let started = t.elapsed();
    let t = Instant::now();
    svc.stop();
    (started, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let proxy = args.next().as_deref() != Some("none");
    let (mut ps, mut pk, mut ss, mut sk) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (s, k) = plain();
        ps.push(s);
        pk.push(k);
        let (s, k) = sandboxed(proxy);
        ss.push(s);
        sk.push(k);
    }
    println!(
        "runs {runs}, network {}: start to first echo: plain {:.2} ms, sandboxed {:.2} ms; stop: plain {:.2} ms, sandboxed {:.2} ms",
        if proxy { "egress proxy" } else { "loopback only" },
        median(ps),
        median(ss),
        median(pk),
        median(sk)
    );
}
