#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Exports are written atomically, recorded in the log before any file, and
//! hold the tiles, checkpoints, payloads and proofs the format promises.

mod common;

use common::*;
use stele_attest::dsse::Envelope;
use stele_attest::intoto::Statement;
use stele_audit::export::layout::{ExportPredicate, Selection, MANIFEST, PREDICATE_TYPE};
use stele_audit::export::tiles::{split_bundle, tile_paths};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::leaf::Leaf;
use stele_audit::EventKind;

fn opts(selection: Selection) -> ExportOptions {
    ExportOptions {
        selection,
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    }
}

#[test]
fn session_export_layout_and_logging() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s-1");
    sample_session(&log, "s-2");
    let out = f.dir.path().join("exp");
    let r = export(
        &log,
        f.signer.as_ref(),
        &opts(Selection::Session { id: "s-1".into() }),
        &out,
    )
    .unwrap();
    // The export entry is inside the exported prefix, and recorded before the files.
    let store = log.store().unwrap();
    let e = store.entry(r.export_entry).unwrap();
    let leaf = Leaf::parse_canonical(&e.leaf).unwrap();
    assert_eq!(leaf.kind, EventKind::AuditExport);
    assert_eq!(leaf.data.unwrap()["selection"]["id"], "s-1");
    assert_eq!(r.tree_size, r.export_entry + 1);
    // A session bundle: no tiles (the session's entries are proven one by
    // one), whatever the size of the log.
    let files = stele_audit::export::list_files(&out).unwrap();
    assert!(!files.iter().any(|f| f.starts_with("tile/")), "{files:?}");
    let _ = (split_bundle, tile_paths);
    // Proofs for the 4 session entries, 2 payloads, no leftovers.
    assert_eq!(std::fs::read_dir(out.join("proofs")).unwrap().count(), 4);
    assert_eq!(std::fs::read_dir(out.join("payloads")).unwrap().count(), 2);
    let ocsf = gunzip(&out.join("ocsf/events.jsonl.gz"));
    assert_eq!(ocsf.lines().count(), 4);
    let first: serde_json::Value = serde_json::from_str(ocsf.lines().nth(1).unwrap()).unwrap();
    assert_eq!(first["class_uid"], 6003);
    assert!(first["prev_event"]["fingerprint"].is_string());
    // The manifest is a DSSE envelope over an in-toto statement listing every other file.
    let env = Envelope::from_json(&std::fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    let st = Statement::open(&env, &f.verifier(), PREDICATE_TYPE).unwrap();
    let p: ExportPredicate = serde_json::from_value(st.predicate).unwrap();
    assert_eq!(p.tree_size, r.tree_size);
    assert_eq!(p.sessions.len(), 1);
    assert!(p.sessions[0].ended);
    assert_eq!(p.layout, stele_audit::export::layout::BundleLayout::Session);
    assert_eq!(st.subject.len(), files.len() - 1);
    // Nothing temporary left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    log.close().unwrap();
}

#[test]
fn failed_export_leaves_nothing() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s-1");
    let out = f.dir.path().join("exp");
    // An unknown session is refused after the export entry, and no folder is left.
    let e = export(
        &log,
        f.signer.as_ref(),
        &opts(Selection::Session { id: "nope".into() }),
        &out,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no session"), "{e}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(f.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .count(),
        0
    );
    // An open session is refused by default.
    log.append_blocking(
        stele_audit::Event::new(EventKind::SessionStart, actor()).in_session("open"),
    )
    .unwrap();
    let e = export(
        &log,
        f.signer.as_ref(),
        &opts(Selection::Session { id: "open".into() }),
        &out,
    )
    .unwrap_err();
    assert!(e.to_string().contains("has not ended"), "{e}");
    assert!(!out.exists());
    log.close().unwrap();
}

/// The OCSF view, decompressed (one gzip member, as SIEM collectors read it).
fn gunzip(path: &std::path::Path) -> String {
    use std::io::Read as _;
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}
