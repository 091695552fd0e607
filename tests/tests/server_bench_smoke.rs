#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The server benchmark (tests/examples/server_bench.rs, `scripts/bench-server`)
//! runs at a tiny size and prints figures of the documented shape: every
//! figure there and positive, percentiles ordered, counts consistent with
//! what it was asked to do, every stream client got every event, and the
//! server really opened the prefilled log. No timing is asserted.

use std::process::Command;

use serde_json::Value;

fn num(v: &Value, path: &str) -> f64 {
    let mut x = v;
    for k in path.split('.') {
        x = &x[k];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

#[test]
fn the_server_benchmark_prints_consistent_figures() {
    let exe = stele_tests::stele_bin()
        .parent()
        .unwrap()
        .join("examples/server_bench");
    assert!(
        exe.exists(),
        "{} missing: cargo build -p stele-tests --example server_bench (scripts/test builds all targets)",
        exe.display()
    );
    let (sessions, clients, entries, requests, asks, denials): (
        usize,
        usize,
        u64,
        usize,
        usize,
        usize,
    ) = (2, 6, 500, 10, 1, 2);
    let o = Command::new(&exe)
        .args(["--json", "--sessions", &sessions.to_string()])
        .args(["--clients", &clients.to_string()])
        .args(["--entries", &entries.to_string()])
        .args(["--requests", &requests.to_string()])
        .args(["--asks", &asks.to_string()])
        .args(["--denials", &denials.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let f: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(f["entries"], entries);
    // The server's own count of its start is within the spawn-to-ready one.
    assert!(
        num(&f, "server_ready_ms") <= num(&f, "start_to_ready_ms"),
        "{f:#}"
    );
    assert_eq!(f["sessions"], sessions);
    // The server opened the prefilled log and wrote on after it.
    assert!(num(&f, "log_entries_after") > entries as f64, "{f:#}");
    for p in ["start_to_ready_ms", "rss_ready_kib", "many_clients.rss_kib"] {
        assert!(num(&f, p) > 0.0, "{p}: {f:#}");
    }
    // Per-session memory is a difference of two readings: finite, not
    // necessarily positive at this size.
    for p in [
        "rss_per_running_session_kib",
        "rss_per_idle_session_kib",
        "many_clients.rss_growth_kib",
    ] {
        assert!(num(&f, p).is_finite(), "{p}: {f:#}");
    }
    let per = clients.div_ceil(sessions);
    for (p, n) in [
        ("list_sessions_ms", requests),
        ("approve_ms", sessions * asks),
        ("event_ms", sessions * denials),
        ("many_clients.event_ms", sessions * per * denials),
    ] {
        assert_eq!(num(&f, &format!("{p}.n")) as usize, n, "{p}: {f:#}");
        let (p50, p99) = (num(&f, &format!("{p}.p50")), num(&f, &format!("{p}.p99")));
        assert!(p50 > 0.0 && p50 <= p99, "{p}: {f:#}");
    }
    assert_eq!(num(&f, "event_ms.clients") as usize, sessions);
    assert_eq!(num(&f, "many_clients.clients") as usize, sessions * per);
    assert_eq!(f["many_clients"]["every_client_got_every_event"], true);
    // start, steps, tool calls and results, decisions, end: more than the decisions.
    assert!(num(&f, "many_clients.events_per_session") > (asks + denials) as f64);
}
