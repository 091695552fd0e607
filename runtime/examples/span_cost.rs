//! What tracing adds per tool call: one `execute_tool` span with its audit
//! attributes (intent, result, outcome) set through the active context, as
//! the agent loop does, with no exporter (no-op) and with the OTLP batch
//! exporter installed (sending to a local sink that answers 200).
//!
//! `cargo run --release -p stele-runtime --example span_cost [CALLS]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_audit::Receipt;
use stele_runtime::telemetry::spans::{self, RunTrace};
use stele_runtime::telemetry::{start, Endpoint};

fn one_call(trace: &RunTrace, i: u64, receipt: &Receipt) {
    let span = trace.tool("file_read", "call-1");
    {
        let _active = span.context().attach();
        spans::note_intent(i, &[7; 32]);
        spans::note_outcome(stele_audit::Status::Ok);
        spans::note_result(receipt);
    }
    span.end();
}

fn measure(calls: u64) -> (Duration, Duration) {
    let trace = RunTrace::start(
        "s-bench",
        "anthropic",
        "m",
        "http://127.0.0.1:1",
        (0, [0; 32]),
    );
    let receipt = Receipt {
        seq: 1,
        leaf_hash: [9; 32],
        size: 2,
        checkpoint: Arc::from(""),
    };
    let mut t: Vec<Duration> = (0..calls)
        .map(|i| {
            let s = Instant::now();
            one_call(&trace, i, &receipt);
            s.elapsed()
        })
        .collect();
    trace.finish("answered", None);
    t.sort();
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

/// A sink that answers every request with an empty 200.
fn sink() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    format!("http://{addr}/v1/traces")
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let ms = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99) = measure(calls);
    println!(
        "no exporter:   p50 {:6.2} µs  p99 {:6.2} µs per tool call ({calls} calls)",
        ms(p50),
        ms(p99)
    );
    let t = start(Endpoint::Configured(sink()), "stele-bench").unwrap();
    let (p50, p99) = measure(calls);
    println!(
        "OTLP exporter: p50 {:6.2} µs  p99 {:6.2} µs per tool call ({calls} calls)",
        ms(p50),
        ms(p99)
    );
    t.shutdown();
}
