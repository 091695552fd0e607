#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Figures for `stele serve` (docs/server.md): start to ready (process
//! spawn → first 200 from /readyz), and the latency of `GET
//! /api/v1/sessions` with SESSIONS sessions in the index, from one client
//! and from 8 at once. The real binary, the mock model, the process sandbox.
//!
//! cargo build -p stele-cli && cargo run -p stele-tests --example server_bench [SESSIONS] [REQUESTS]

#[path = "../tests/e2e_common/mod.rs"]
mod e2e_common;
#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::time::{Duration, Instant};

use serde_json::json;
use server_support::{runtime, Server};
use stele_tests::mock_model::Turn;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map_or(20, |a| a.parse().unwrap());
    let requests: usize = args.next().map_or(500, |a| a.parse().unwrap());
    let srv = Server::start("", "max_sessions = 64\n");
    println!(
        "start to ready: {:.1} ms",
        srv.started.as_secs_f64() * 1000.0
    );
    for _ in 0..sessions {
        srv.mock.push(
            Turn::new()
                .tool_use("f", "final_answer", json!({"answer": "ok"}))
                .into(),
        );
    }
    let alice = srv.token("alice");
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..sessions {
            let r = srv
                .http
                .post(srv.url("/api/v1/sessions"))
                .bearer_auth(&alice)
                .json(&json!({"workspace": "books", "task": "bench"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            // Wait for its end (the stream closes with the session).
            let _ = srv
                .http
                .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap()
                .text()
                .await;
        }
        let list = |c: reqwest::Client| {
            let (url, t) = (srv.url("/api/v1/sessions"), alice.clone());
            async move {
                let began = Instant::now();
                let r = c.get(url).bearer_auth(t).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                began.elapsed()
            }
        };
        let mut one = Vec::new();
        for _ in 0..requests {
            one.push(list(srv.http.clone()).await);
        }
        println!(
            "GET /api/v1/sessions ({sessions} sessions), 1 client, {requests} requests: p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut one, 0.5),
            pct(&mut one, 0.99)
        );
        let mut many = Vec::new();
        for _ in 0..requests / 8 {
            let batch: Vec<_> = (0..8)
                .map(|_| tokio::spawn(list(srv.http.clone())))
                .collect();
            for b in batch {
                many.push(b.await.unwrap());
            }
        }
        println!(
            "GET /api/v1/sessions ({sessions} sessions), 8 clients at once, {} requests: p50 {:.2} ms, p99 {:.2} ms",
            many.len(),
            pct(&mut many, 0.5),
            pct(&mut many, 0.99)
        );
    });
}
