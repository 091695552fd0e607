//! The OCSF (1.x) JSON Lines view of leaves, for SIEMs.
//!
//! Derived, not authoritative: the leaves are. Each event carries the leaf
//! hash as `fingerprint` and the previous leaf hash as
//! `prev_event.fingerprint` (hex), so a SIEM can check adjacency without
//! Merkle code; `chain_uid` is the log origin. File events map to File System
//! Activity (1001), program starts and ends to Process Activity (1007),
//! network connections to Network Activity (4001), model requests to HTTP
//! Activity (4002), all else to API Activity (6003), policy decisions and
//! approvals with their outcome in `actor.authorizations`; model calls carry
//! `ai_operation`-profile style model fields under `ai_model`.

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
use crate::leaf_view::{JsonStr, LeafText};
use crate::merkle::Hash;

pub use super::ocsf_mapping::OcsfMapping;

/// OCSF schema version the view follows.
pub const OCSF_VERSION: &str = "1.3.0";

/// OCSF Network Activity: `net.connect` (Open) and `net.close` (Close).
const NETWORK_ACTIVITY: u32 = 4001;
/// OCSF HTTP Activity: a model request is an HTTP POST to the provider.
const HTTP_ACTIVITY: u32 = 4002;

/// The OCSF class and activity of each kind (docs/siem.md, "Field mapping").
/// Exhaustive, so a new kind must be placed.
pub fn class_and_activity(kind: EventKind) -> (u32, u32) {
    match kind {
        EventKind::FileOpen => (1001, 14),
        EventKind::FileClose => (1001, 99),
        EventKind::ExecStart => (1007, 1),
        EventKind::ExecEnd => (1007, 2),
        EventKind::NetConnect => (NETWORK_ACTIVITY, 1),
        EventKind::NetClose => (NETWORK_ACTIVITY, 2),
        EventKind::ModelRequest => (HTTP_ACTIVITY, 6),
        EventKind::ToolIntent | EventKind::McpCall => (6003, 1),
        EventKind::AuditRead | EventKind::AuditExport | EventKind::McpList => (6003, 2),
        EventKind::Redaction => (6003, 4),
        // retention, legal hold and archival: expiry and archival remove
        // (Delete); a hold is placed (Create) or released (Update)
        EventKind::PayloadExpiry | EventKind::LogArchive => (6003, 4),
        EventKind::HoldPlace => (6003, 1),
        EventKind::HoldRelease => (6003, 3),
        // Policy decisions and approvals stay API Activity, their outcome
        // in `actor.authorizations` (OCSF's Authorization Result): Authorize
        // Session (3003) records privileges given to a session at logon,
        // not a decision on one request (docs/siem.md).
        EventKind::PolicyDecision
        | EventKind::PolicyLoad
        | EventKind::ApprovalRequest
        | EventKind::ApprovalGrant
        | EventKind::ApprovalDeny
        | EventKind::LogGenesis
        | EventKind::LogOpen
        | EventKind::LogClose
        | EventKind::Heartbeat
        | EventKind::ClockState
        | EventKind::ClockStep
        | EventKind::SessionStart
        | EventKind::SessionEnd
        | EventKind::SessionInterrupted
        | EventKind::Interrupted
        | EventKind::ModelResponse
        | EventKind::ToolResult
        | EventKind::McpResult
        | EventKind::KeyRotation
        | EventKind::KeyRevocation
        | EventKind::AuditAlert => (6003, 99),
    }
}

/// The authorization outcome of a leaf (`actor.authorizations[0].decision`):
/// its policy decision's, else what an approval entry says.
fn authorization(
    mapping: OcsfMapping,
    kind: EventKind,
    effect: Option<Effect>,
) -> Option<&'static str> {
    if !mapping.has_authorizations() {
        return None;
    }
    match (effect, kind) {
        (Some(Effect::Allow), _) => Some("Allowed"),
        (Some(Effect::Deny), _) => Some("Denied"),
        (Some(Effect::Ask), _) => Some("Approval required"),
        (None, EventKind::ApprovalRequest) => Some("Approval required"),
        (None, EventKind::ApprovalGrant) => Some("Approved"),
        (None, EventKind::ApprovalDeny) => Some("Denied"),
        (None, _) => None,
    }
}

/// Milliseconds since the epoch of a leaf time string (0 when unparseable).
fn epoch_ms(ts: &str) -> i64 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// [`epoch_ms`] of a valid leaf time (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) by
/// arithmetic; anything else (or before 1970, where `time` rounds toward
/// zero) by `time`, so the two always agree (a property test checks it).
fn epoch_ms_fast(ts: &str) -> i64 {
    let b = ts.as_bytes();
    if crate::rules::check_ts(ts).is_err() {
        return epoch_ms(ts);
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
    };
    let (y, m, d) = (num(0, 4), num(5, 7), num(8, 10));
    if y < 1970 {
        return epoch_ms(ts);
    }
    // Days from civil (H. Hinnant's algorithm), for years from 1970.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400_000
        + num(11, 13) * 3_600_000
        + num(14, 16) * 60_000
        + num(17, 19) * 1000
        + num(20, 26) / 1000
}

/// The log origin, escaped once for every event of an export.
#[derive(Debug, Clone)]
pub struct OcsfOrigin {
    /// The origin as the content of a JSON string.
    escaped: Vec<u8>,
    /// The mapping the events follow.
    mapping: OcsfMapping,
}

impl OcsfOrigin {
    /// For the log `origin`.
    pub fn new(origin: &str) -> Self {
        let mut escaped = Vec::with_capacity(origin.len());
        crate::leaf_view::escape_into(origin, &mut escaped);
        Self {
            escaped,
            mapping: OcsfMapping::CURRENT,
        }
    }

    /// The same, for events under `mapping` (an export's manifest says
    /// which; older exports follow [`OcsfMapping::V1`]).
    pub fn with_mapping(mut self, mapping: OcsfMapping) -> Self {
        self.mapping = mapping;
        self
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(&self.escaped);
        out.push(b'"');
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Byte by byte: a few digits, where a call to `memcpy` cost more.
    for &d in &buf[i..] {
        out.push(d);
    }
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_hex(out: &mut Vec<u8>, h: &Hash) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in h {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
    out.push(b'"');
}

fn opt_str(out: &mut Vec<u8>, s: Option<JsonStr<'_>>) {
    match s {
        Some(s) => s.write_json(out),
        None => out.extend_from_slice(b"null"),
    }
}

/// Append the OCSF event of a leaf to `out` as one line of JSON (no
/// newline): the bytes `serde_json` writes for [`event`], keys sorted,
/// written directly from the borrowed fields. The exporter and the
/// verifier both write events with this.
pub fn write_event(l: &LeafText<'_>, hash: &Hash, origin: &OcsfOrigin, out: &mut Vec<u8>) {
    let (class_uid, activity_id) = origin.mapping.class_and_activity(l.kind);
    let kind = l.kind.as_str().as_bytes();
    let put = |out: &mut Vec<u8>, s: &[u8]| out.extend_from_slice(s);
    put(out, b"{\"activity_id\":");
    push_u64(out, u64::from(activity_id));
    put(out, b",\"actor\":{\"app_name\":");
    l.actor.runtime.write_json(out);
    if let Some(a) = authorization(
        origin.mapping,
        l.kind,
        l.decision.as_ref().map(|d| d.effect),
    ) {
        put(out, b",\"authorizations\":[{\"decision\":\"");
        put(out, a.as_bytes());
        out.push(b'"');
        if let Some(d) = &l.decision {
            put(out, b",\"policy\":{\"desc\":");
            opt_str(out, d.reason);
            put(out, b",\"name\":");
            d.policies.write_joined(",", out);
            put(out, b",\"uid\":");
            d.bundle.write_json(out);
            out.push(b'}');
        }
        put(out, b"}]");
    }
    put(out, b",\"user\":{\"groups\":[");
    for (i, t) in l.actor.teams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put(out, b"{\"name\":");
        t.write_json(out);
        out.push(b'}');
    }
    put(out, b"],\"name\":");
    l.actor.principal.write_json(out);
    put(out, b"}}");
    let t = l.target.unwrap_or_default();
    if let Some(model) = t.model {
        put(out, b",\"ai_model\":{\"name\":");
        model.write_json(out);
        put(out, b",\"provider\":");
        opt_str(out, t.provider);
        out.push(b'}');
    }
    put(out, b",\"api\":{\"operation\":\"");
    put(out, kind);
    put(out, b"\"},\"category_uid\":");
    push_u64(out, u64::from(class_uid / 1000));
    put(out, b",\"chain_uid\":");
    origin.write_json(out);
    put(out, b",\"class_uid\":");
    push_u64(out, u64::from(class_uid));
    if class_uid == NETWORK_ACTIVITY {
        put(
            out,
            b",\"connection_info\":{\"direction\":\"Outbound\",\"direction_id\":2}",
        );
    }
    put(out, b",\"device\":{\"hostname\":");
    l.actor.host.write_json(out);
    out.push(b'}');
    if let Some(d) = &l.decision {
        let (id, name): (u64, &[u8]) = match d.effect {
            Effect::Allow => (1, b"Allowed"),
            Effect::Deny => (2, b"Blocked"),
            Effect::Ask => (99, b"Approval required"),
        };
        put(out, b",\"disposition\":\"");
        put(out, name);
        put(out, b"\",\"disposition_id\":");
        push_u64(out, id);
    }
    let networked = class_uid == NETWORK_ACTIVITY || class_uid == HTTP_ACTIVITY;
    if t.host.is_some() || networked {
        put(out, b",\"dst_endpoint\":{\"hostname\":");
        opt_str(out, t.host);
        put(out, b",\"port\":");
        match t.port {
            Some(p) => push_u64(out, u64::from(p)),
            None => put(out, b"null"),
        }
        out.push(b'}');
    }
    if let Some(p) = t.path {
        put(out, b",\"file\":{\"name\":");
        p.last_segment().write_json(out);
        put(out, b",\"path\":");
        p.write_json(out);
        out.push(b'}');
    }
    put(out, b",\"fingerprint\":");
    push_hex(out, hash);
    if class_uid == HTTP_ACTIVITY {
        put(
            out,
            b",\"http_request\":{\"http_method\":\"POST\",\"url\":{\"hostname\":",
        );
        opt_str(out, t.host);
        put(out, b",\"port\":");
        match t.port {
            Some(p) => push_u64(out, u64::from(p)),
            None => put(out, b"null"),
        }
        put(out, b",\"scheme\":");
        opt_str(out, t.scheme);
        put(out, b"}}");
    }
    put(out, b",\"metadata\":{\"log_name\":");
    origin.write_json(out);
    put(
        out,
        b",\"product\":{\"name\":\"stele\",\"vendor_name\":\"stele\",\"version\":",
    );
    l.actor.runtime.write_json(out);
    put(out, b"},\"profiles\":[\"ai_operation\"],\"sequence\":");
    push_u64(out, l.seq);
    put(out, b",\"uid\":\"");
    put(out, &origin.escaped);
    out.push(b'/');
    push_u64(out, l.seq);
    put(out, b"\",\"version\":\"");
    put(out, OCSF_VERSION.as_bytes());
    put(out, b"\"}");
    if let Some(d) = &l.decision {
        put(out, b",\"policy\":{\"desc\":");
        opt_str(out, d.reason);
        put(out, b",\"name\":");
        d.policies.write_joined(",", out);
        put(out, b",\"uid\":");
        d.bundle.write_json(out);
        out.push(b'}');
    }
    if let Some(p) = l.prev.and_then(|p| parse_hash_b64(&p.text())) {
        put(out, b",\"prev_event\":{\"fingerprint\":");
        push_hex(out, &p);
        out.push(b'}');
    }
    if t.program.is_some() || t.argv.is_some() {
        put(out, b",\"process\":{\"cmd_line\":");
        match t.argv {
            Some(a) => a.write_joined(" ", out),
            None => put(out, b"null"),
        }
        put(out, b",\"file\":{\"path\":");
        opt_str(out, t.program);
        put(out, b"}}");
    }
    if let Some(tool) = t.tool {
        put(out, b",\"resources\":[{\"name\":");
        tool.write_json(out);
        put(out, b",\"owner\":{\"name\":");
        opt_str(out, t.server);
        put(out, b"},\"type\":\"tool\"}]");
    }
    if let Some(s) = l.session {
        put(out, b",\"session\":{\"uid\":");
        s.write_json(out);
        out.push(b'}');
    }
    put(out, b",\"severity_id\":1");
    if networked {
        put(out, b",\"src_endpoint\":{\"hostname\":");
        l.actor.host.write_json(out);
        out.push(b'}');
    }
    if let Some(o) = &l.outcome {
        let ok = o.status == Status::Ok;
        put(
            out,
            if ok {
                b",\"status\":\"Success\""
            } else {
                b",\"status\":\"Failure\""
            },
        );
        if let Some(d) = o.detail {
            put(out, b",\"status_detail\":");
            d.write_json(out);
        }
        put(
            out,
            if ok {
                b",\"status_id\":1"
            } else {
                b",\"status_id\":2"
            },
        );
    }
    put(out, b",\"time\":");
    push_i64(out, epoch_ms_fast(&l.ts.text()));
    put(out, b",\"type_uid\":");
    push_u64(out, u64::from(class_uid) * 100 + u64::from(activity_id));
    put(out, b",\"unmapped\":{\"payload_commitments\":[");
    let mut commits = l.payload.commits();
    if let Some(c) = commits.next() {
        JsonStr::Text(&c).write_json(out);
        for c in commits {
            out.push(b',');
            JsonStr::Text(&c).write_json(out);
        }
    }
    put(out, b"],\"stele_kind\":\"");
    put(out, kind);
    put(out, b"\"}}");
}

/// One OCSF event for a leaf, as a JSON value: the straightforward
/// construction, kept as the reference [`write_event`] is tested against
/// and for naming the first difference when an exported event differs.
pub fn event(leaf: &Leaf, hash: &Hash, origin: &str) -> Value {
    event_in(leaf, hash, origin, OcsfMapping::CURRENT)
}

/// [`event`] under `mapping`.
pub fn event_in(leaf: &Leaf, hash: &Hash, origin: &str, mapping: OcsfMapping) -> Value {
    let (class_uid, activity_id) = mapping.class_and_activity(leaf.kind);
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
    let mut actor = json!({"user": {"name": leaf.actor.principal, "groups": leaf.actor.teams.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()},
               "app_name": leaf.actor.runtime});
    if let Some(a) = authorization(mapping, leaf.kind, leaf.decision.as_ref().map(|d| d.effect)) {
        let mut auth = json!({"decision": a});
        if let Some(d) = &leaf.decision {
            auth["policy"] =
                json!({"uid": d.bundle, "name": d.policies.join(","), "desc": d.reason});
        }
        actor["authorizations"] = json!([auth]);
    }
    e.insert("actor".into(), actor);
    e.insert("device".into(), json!({"hostname": leaf.actor.host}));
    let networked = class_uid == NETWORK_ACTIVITY || class_uid == HTTP_ACTIVITY;
    if networked {
        e.insert("src_endpoint".into(), json!({"hostname": leaf.actor.host}));
        if leaf.target.is_none() {
            e.insert(
                "dst_endpoint".into(),
                json!({"hostname": null, "port": null}),
            );
            if class_uid == HTTP_ACTIVITY {
                e.insert(
                    "http_request".into(),
                    json!({"http_method": "POST", "url": {"hostname": null, "port": null, "scheme": null}}),
                );
            }
        }
    }
    if class_uid == NETWORK_ACTIVITY {
        e.insert(
            "connection_info".into(),
            json!({"direction": "Outbound", "direction_id": 2}),
        );
    }
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
        if t.host.is_some() || networked {
            e.insert(
                "dst_endpoint".into(),
                json!({"hostname": t.host, "port": t.port}),
            );
        }
        if class_uid == HTTP_ACTIVITY {
            e.insert(
                "http_request".into(),
                json!({"http_method": "POST", "url": {"hostname": t.host, "port": t.port, "scheme": t.scheme}}),
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
    /// The origin of the events, escaped once.
    origin: Option<(String, OcsfOrigin)>,
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
            origin: None,
        })
    }

    /// Append the event of one leaf.
    pub fn push(&mut self, leaf: &Leaf, hash: &Hash, origin: &str) -> Result<(), ExportError> {
        if self.origin.as_ref().is_none_or(|(o, _)| o != origin) {
            self.origin = Some((origin.to_string(), OcsfOrigin::new(origin)));
        }
        self.line.clear();
        if let Some((_, o)) = &self.origin {
            write_event(&LeafText::of(leaf), hash, o, &mut self.line);
        }
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
