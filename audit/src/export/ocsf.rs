//! The OCSF (1.x) JSON Lines view of leaves, for SIEMs.
//!
//! Derived, not authoritative: the leaves are. Each event carries the leaf
//! hash as `fingerprint` and the previous leaf hash as
//! `prev_event.fingerprint` (hex), so a SIEM can check adjacency without
//! Merkle code; `chain_uid` is the log origin. File events map to File System
//! Activity (1001), program starts and ends to Process Activity (1007), all
//! else to API Activity (6003); model calls carry `ai_operation`-profile
//! style model fields under `ai_model`.

#[cfg(feature = "store")]
use std::fs::File;
#[cfg(feature = "store")]
use std::io::{BufWriter, Write};
#[cfg(feature = "store")]
use std::path::{Path, PathBuf};

#[cfg(feature = "store")]
use flate2::write::GzEncoder;
#[cfg(feature = "store")]
use flate2::Compression;
use serde_json::{json, Map, Value};

#[cfg(feature = "store")]
use super::ExportError;

use crate::event::{Effect, EventKind, Status};
use crate::leaf::{parse_hash_b64, Leaf};
use crate::merkle::Hash;

/// OCSF schema version the view follows.
pub const OCSF_VERSION: &str = "1.3.0";

fn class_and_activity(kind: EventKind) -> (u32, u32) {
    match kind {
        EventKind::FileOpen => (1001, 14),
        EventKind::FileClose => (1001, 99),
        EventKind::ExecStart => (1007, 1),
        EventKind::ExecEnd => (1007, 2),
        EventKind::ModelRequest
        | EventKind::ToolIntent
        | EventKind::McpCall
        | EventKind::NetConnect => (6003, 1),
        EventKind::AuditRead | EventKind::AuditExport | EventKind::McpList => (6003, 2),
        EventKind::Redaction => (6003, 4),
        _ => (6003, 99),
    }
}

/// Milliseconds since the epoch of a leaf time string (0 when unparseable).
fn epoch_ms(ts: &str) -> i64 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// One OCSF event for a leaf.
pub fn event(leaf: &Leaf, hash: &Hash, origin: &str) -> Value {
    let (class_uid, activity_id) = class_and_activity(leaf.kind);
    let mut e = Map::new();
    e.insert("class_uid".into(), json!(class_uid));
    e.insert("category_uid".into(), json!(class_uid / 1000));
    e.insert("activity_id".into(), json!(activity_id));
    e.insert(
        "type_uid".into(),
        json!(u64::from(class_uid) * 100 + u64::from(activity_id)),
    );
    e.insert("severity_id".into(), json!(1));
    e.insert("time".into(), json!(epoch_ms(&leaf.ts)));
    e.insert(
        "metadata".into(),
        json!({"version": OCSF_VERSION, "uid": format!("{origin}/{}", leaf.seq),
               "product": {"name": "stele", "vendor_name": "stele", "version": leaf.actor.runtime},
               "log_name": origin, "sequence": leaf.seq, "profiles": ["ai_operation"]}),
    );
    e.insert("fingerprint".into(), json!(hex::encode(hash)));
    if let Some(p) = leaf.prev.as_deref().and_then(parse_hash_b64) {
        e.insert("prev_event".into(), json!({"fingerprint": hex::encode(p)}));
    }
    e.insert("chain_uid".into(), json!(origin));
    e.insert(
        "actor".into(),
        json!({"user": {"name": leaf.actor.principal, "groups": leaf.actor.teams.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()},
               "app_name": leaf.actor.runtime}),
    );
    e.insert("device".into(), json!({"hostname": leaf.actor.host}));
    e.insert("api".into(), json!({"operation": leaf.kind.as_str()}));
    if let Some(s) = &leaf.session {
        e.insert("session".into(), json!({"uid": s.id}));
    }
    if let Some(t) = &leaf.target {
        if let Some(p) = &t.path {
            e.insert(
                "file".into(),
                json!({"path": p, "name": p.rsplit('/').next().unwrap_or(p)}),
            );
        }
        if t.program.is_some() || t.argv.is_some() {
            e.insert("process".into(), json!({"file": {"path": t.program}, "cmd_line": t.argv.as_ref().map(|a| a.join(" "))}));
        }
        if t.model.is_some() {
            e.insert(
                "ai_model".into(),
                json!({"name": t.model, "provider": t.provider}),
            );
        }
        if let Some(h) = &t.host {
            e.insert(
                "dst_endpoint".into(),
                json!({"hostname": h, "port": t.port}),
            );
        }
        if let Some(tool) = &t.tool {
            e.insert(
                "resources".into(),
                json!([{"type": "tool", "name": tool, "owner": {"name": t.server}}]),
            );
        }
    }
    if let Some(d) = &leaf.decision {
        let (id, name) = match d.effect {
            Effect::Allow => (1, "Allowed"),
            Effect::Deny => (2, "Blocked"),
            Effect::Ask => (99, "Approval required"),
        };
        e.insert("disposition_id".into(), json!(id));
        e.insert("disposition".into(), json!(name));
        e.insert(
            "policy".into(),
            json!({"uid": d.bundle, "name": d.policies.join(","), "desc": d.reason}),
        );
    }
    if let Some(o) = &leaf.outcome {
        let ok = o.status == Status::Ok;
        e.insert("status_id".into(), json!(if ok { 1 } else { 2 }));
        e.insert(
            "status".into(),
            json!(if ok { "Success" } else { "Failure" }),
        );
        if let Some(d) = &o.detail {
            e.insert("status_detail".into(), json!(d));
        }
    }
    e.insert("unmapped".into(), json!({"stele_kind": leaf.kind.as_str(), "payload_commitments": leaf.payload.iter().map(|p| &p.commit).collect::<Vec<_>>()}));
    // Keys in sorted order whatever serde_json's features in the binary
    // (`preserve_order` keeps insertion order): the verifier, another
    // binary, recomputes the same bytes.
    let mut v = Value::Object(e);
    v.sort_all_objects();
    v
}

#[cfg(feature = "store")]
/// Writes the OCSF view: one event per line, gzip-compressed, the SHA-256
/// of the compressed bytes kept as they are written.
pub struct OcsfWriter {
    path: PathBuf,
    gz: GzEncoder<HashingWriter<BufWriter<File>>>,
    line: Vec<u8>,
}

#[cfg(feature = "store")]
impl OcsfWriter {
    /// Create the file at `path`.
    pub fn create(path: &Path) -> Result<Self, ExportError> {
        let file =
            stele_attest::private_fs::create_file(path).map_err(|e| ExportError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            // Fast compression: about a tenth of the JSON's size at a few
            // hundred MB/s.
            gz: GzEncoder::new(
                HashingWriter::new(BufWriter::new(file)),
                Compression::fast(),
            ),
            line: Vec::with_capacity(1024),
        })
    }

    /// Append the event of one leaf.
    pub fn push(&mut self, leaf: &Leaf, hash: &Hash, origin: &str) -> Result<(), ExportError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &event(leaf, hash, origin))
            .map_err(|e| ExportError::Invalid(format!("OCSF event of entry {}: {e}", leaf.seq)))?;
        self.line.push(b'\n');
        self.gz
            .write_all(&self.line)
            .map_err(|e| ExportError::io(&self.path, e))
    }

    /// Finish the gzip stream, fsync the file and return its SHA-256.
    pub fn finish(self) -> Result<[u8; 32], ExportError> {
        let io = |e| ExportError::io(&self.path, e);
        let (buffered, digest) = self.gz.finish().map_err(io)?.finish();
        buffered
            .into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        Ok(digest)
    }
}

#[cfg(feature = "store")]
impl std::fmt::Debug for OcsfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcsfWriter")
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(feature = "store")]
/// Passes bytes on to `inner` and keeps their SHA-256 (the digest of a file
/// as written, without reading it back).
struct HashingWriter<W> {
    inner: W,
    hash: ring::digest::Context,
}

#[cfg(feature = "store")]
impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// The writer and the digest of everything written to it.
    fn finish(self) -> (W, [u8; 32]) {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.hash.finish().as_ref());
        (self.inner, d)
    }
}

#[cfg(feature = "store")]
impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
