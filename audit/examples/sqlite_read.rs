#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Cost of reading every entry row, under different connection settings:
//! `cargo run --release -p stele-audit --example sqlite_read -- DB [mmap|nommap]`.
fn main() {
    let db = std::env::args().nth(1).unwrap();
    let mode = std::env::args().nth(2).unwrap_or_else(|| "mmap".into());
    let store = stele_audit::Store::open(std::path::Path::new(&db)).unwrap();
    match mode.as_str() {
        "mmap" => store
            .conn()
            .pragma_update(None, "mmap_size", 1i64 << 40)
            .unwrap(),
        _ => store
            .conn()
            .pragma_update(None, "cache_size", -65536i64)
            .unwrap(),
    }
    let cpu0 = stele_audit::cpu_time::thread_cpu_ns();
    let t = std::time::Instant::now();
    let mut c = 0u64;
    store
        .for_each_entry(0, u64::MAX, |_, b, h| {
            c += b.len() as u64 + h.len() as u64;
            Ok(())
        })
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{mode}: {:.3} s wall, {:.3} s CPU ({c} bytes)",
        wall,
        stele_audit::cpu_time::cpu_seconds_since(cpu0, wall)
    );
}
