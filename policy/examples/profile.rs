#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
use std::str::FromStr;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    stele_policy::synthetic::write_bundle(dir.path(), 1000).unwrap();
    let mut texts = vec![];
    for e in walk(dir.path()) { if e.extension().is_some_and(|x| x == "cedar") { texts.push(std::fs::read_to_string(e).unwrap()); } }
    let t = std::time::Instant::now();
    let sets: Vec<_> = texts.iter().map(|t| cedar_policy::PolicySet::from_str(t).unwrap()).collect();
    println!("parse {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut n = 0;
    for s in &sets { for p in s.policies() { std::hint::black_box(p.to_json().unwrap()); n += 1; } }
    println!("to_json {:?} for {n}", t.elapsed());
    let t = std::time::Instant::now();
    for s in &sets { for p in s.policies() { std::hint::black_box(p.to_pst().unwrap()); } }
    println!("to_pst {:?}", t.elapsed());
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let b = stele_policy::Bundle::load(dir.path()).unwrap();
        println!("load {:?} {}", t.elapsed(), b.policy_count());
    }
}
fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(p).unwrap() { let e = e.unwrap().path(); if e.is_dir() { v.extend(walk(&e)); } else { v.push(e); } }
    v
}
