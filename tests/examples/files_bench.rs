#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures for workspace files over `stele serve` (docs/server.md
//! "Workspace files"): latency of a small download and a small upload
//! (each one files session, intent and result in the log, durably), and
//! the throughput of a large upload and download (streamed, hashed, the
//! upload synced and renamed into place). The real binary, a loopback
//! client.
//!
//! cargo build -p stele-cli && cargo run -p stele-tests --example files_bench [REQUESTS] [MIB]

#[path = "../tests/e2e_common/mod.rs"]
mod e2e_common;
#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::time::{Duration, Instant};

use server_support::{runtime, Server};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map_or(200, |a| a.parse().unwrap());
    let mib: usize = args.next().map_or(256, |a| a.parse().unwrap());
    let srv = Server::start("", "max_upload_bytes = 4294967296\n");
    let alice = srv.token("alice");
    let files = "/api/v1/workspaces/books/files";
    let rt = runtime();
    rt.block_on(async {
        let mut down = Vec::with_capacity(requests);
        let mut up = Vec::with_capacity(requests);
        for i in 0..requests {
            let t = Instant::now();
            let r = srv
                .http
                .get(srv.url(&format!("{files}/receipts/r1.txt")))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            down.push(t.elapsed());
            let t = Instant::now();
            let r = srv
                .http
                .put(srv.url(&format!("{files}/reports/r{}.csv", i % 10)))
                .bearer_auth(&alice)
                .body(format!("row,{i}\n"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            up.push(t.elapsed());
        }
        println!(
            "small download ({requests}): p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut down, 0.5),
            pct(&mut down, 0.99)
        );
        println!(
            "small upload ({requests}): p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut up, 0.5),
            pct(&mut up, 0.99)
        );
        let big = vec![0x5au8; mib << 20];
        let t = Instant::now();
        let r = srv
            .http
            .put(srv.url(&format!("{files}/reports/big.bin")))
            .bearer_auth(&alice)
            .body(big)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let s = t.elapsed().as_secs_f64();
        println!("upload {mib} MiB: {s:.2} s ({:.0} MiB/s)", mib as f64 / s);
    });
    // Finance may not read reports/: put the file where it may.
    std::fs::rename(
        srv.ws.join("reports/big.bin"),
        srv.ws.join("receipts/big.bin"),
    )
    .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let r = srv
            .http
            .get(srv.url(&format!("{files}/receipts/big.bin")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let n = r.bytes().await.unwrap().len();
        assert_eq!(n, mib << 20);
        let s = t.elapsed().as_secs_f64();
        println!("download {mib} MiB: {s:.2} s ({:.0} MiB/s)", mib as f64 / s);
    });
}
