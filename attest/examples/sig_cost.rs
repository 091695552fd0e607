//! CPU cost of one checkpoint signature check, three ways: `verify_strict`,
//! stele's strict check with the key's multiples precomputed
//! (`NoteVerifier::verify`), and (for comparison only: it is not strict)
//! Ed25519 batch verification per signature.
//!
//! `cargo run --release -p stele-attest --example sig_cost [N]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use stele_attest::NoteVerifier;

fn cpu_ns() -> u64 {
    let mut ts = libc_timespec();
    // Thread CPU time (the machine may be busy with other work).
    unsafe { clock_gettime(3, &mut ts) };
    ts.0 as u64 * 1_000_000_000 + ts.1 as u64
}

#[repr(C)]
struct Timespec(i64, i64);
fn libc_timespec() -> Timespec {
    Timespec(0, 0)
}
extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N"))
        .unwrap_or(20_000);
    let sk = SigningKey::from_bytes(&[9; 32]);
    let vk = sk.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!("audit.example/log\n{i}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
                .into_bytes()
        })
        .collect();
    let sigs: Vec<Signature> = msgs.iter().map(|m| sk.sign(m)).collect();
    let nv = NoteVerifier::new("audit.example/log", vk.to_bytes());

    for round in 0..3 {
        let t = cpu_ns();
        for (m, s) in msgs.iter().zip(&sigs) {
            assert!(vk.verify_strict(m, s).is_ok());
        }
        let strict = (cpu_ns() - t) as f64 / n as f64;

        let t = cpu_ns();
        for (m, s) in msgs.iter().zip(&sigs) {
            assert!(nv.verify(m, &s.to_bytes()));
        }
        let pre = (cpu_ns() - t) as f64 / n as f64;

        let t = cpu_ns();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let keys = vec![vk; n];
        ed25519_dalek::verify_batch(&refs, &sigs, &keys).unwrap();
        let batch = (cpu_ns() - t) as f64 / n as f64;
        println!(
            "round {round}: verify_strict {:.1} µs, precomputed strict {:.1} µs, batch (not strict) {:.1} µs per signature",
            strict / 1e3,
            pre / 1e3,
            batch / 1e3
        );
    }
}
