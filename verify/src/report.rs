//! The verification report.

use std::fmt;

use stele_audit::check::commit_hash;
use stele_audit::export::layout::{Selection, PAYLOADS_DIR};

use crate::account::{self, Account, AccountBuilder, PayloadText, Verification, Witnessed};
use crate::manifest::{Checkpoints, Manifest};
use crate::stream::Streamed;
use crate::{Bundle, Options};

/// Schema identifier of `stele-verify --json` output.
pub const VERIFY_SCHEMA: &str = "https://stele.dev/stele-verify/v1";

/// What a successful verification established.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// RFC 3161 timestamp tokens over checkpoints.
    pub timestamps: Vec<TimestampLine>,
    /// Log origin.
    pub origin: String,
    /// Entries verified (the whole prefix).
    pub entries: u64,
    /// Root (base64).
    pub root: String,
    /// The selection.
    pub selection: String,
    /// Selected entries.
    pub selected: u64,
    /// Time span of the selection.
    pub time_span: Option<(String, String)>,
    /// Sessions in the log prefix, and how many have no end.
    pub sessions: (u64, u64),
    /// Checkpoint sizes whose signature verified.
    pub checkpoints: Vec<u64>,
    /// Witness → largest size it cosigned.
    pub cosigned: Vec<(String, u64)>,
    /// Held checkpoints matched (size, source).
    pub anchors: Vec<(u64, String)>,
    /// Payloads checked against their commitments.
    pub payloads_verified: u64,
    /// Payloads erased by a redaction entry.
    pub payloads_redacted: u64,
    /// Payloads left out on purpose by the exporter.
    pub payloads_withheld: u64,
    /// Redaction entries (index, count, reason).
    pub redactions: Vec<(u64, usize, String)>,
    /// Inclusion proofs verified.
    pub proofs: u64,
    /// Policy bundles (name, files digest, engine digest).
    pub policies: Vec<(String, String, Option<String>)>,
    /// Sessions with a verified attestation.
    pub attestations: Vec<String>,
    /// Intents without a result (index, kind).
    pub unfinished: Vec<(u64, String)>,
    /// Who exported, and the entry recording it.
    pub exporter: String,
    /// Bytes of entry bundles read.
    pub entry_bytes: u64,
    /// Seconds spent in total.
    pub seconds: f64,
    /// CPU seconds spent in total (this thread; the wall time where the
    /// platform does not say).
    pub cpu_seconds: f64,
    /// Seconds spent streaming entries and tiles (the per-entry work).
    pub stream_seconds: f64,
    /// CPU seconds of that phase (this thread only; equals the wall time on
    /// an idle machine, and is the honest figure on a shared one).
    pub stream_cpu_seconds: f64,
    /// The reviewer's account, derived from the verified entries.
    pub account: Account,
    /// What proved the entries: every tile of the log prefix, or (a
    /// session bundle) the session's entries with inclusion proofs.
    pub layout: stele_audit::export::layout::BundleLayout,
    /// A bundle that starts past 0: entries `0 … start.size−1` are
    /// archived and not in it.
    pub start: Option<crate::start::StartFacts>,
    /// Base64 leaf hash of the last entry (tiled bundles).
    pub last_leaf: Option<String>,
    /// The log's key schedule at the bundle's tree size, as verified.
    pub keys: Vec<stele_audit::keys::KeyRange>,
    /// The revocations the log's entries (or, below a start, its archive
    /// record) made, as verified.
    pub revoked: Vec<stele_audit::keys::Revocation>,
    /// A session that moved between logs: the earlier slices verified
    /// (each with its own log's key) and linked, newest first.
    pub earlier: Vec<crate::EarlierSlice>,
}

/// The reviewer's account: the sessions collected from the verified
/// leaves, their payload texts read from verified payload files, and the
/// verification facts, including what could not be checked.
pub(crate) fn account(
    b: AccountBuilder,
    bundle: &Bundle,
    m: &Manifest,
    s: &Streamed,
    r: &Report,
    opts: &Options,
) -> Account {
    let text = |commit: &str| -> PayloadText {
        let Some(c) = commit_hash(commit) else {
            return PayloadText::None;
        };
        if s.checker.redacted_by.contains_key(&c) {
            return PayloadText::Redacted;
        }
        // Present payloads were checked against their commitments already.
        match m.read(bundle, &format!("{PAYLOADS_DIR}{}", hex::encode(c))) {
            Ok(b) if b.len() >= 32 => {
                PayloadText::Present(String::from_utf8_lossy(&b[32..]).into_owned())
            }
            _ => PayloadText::Withheld,
        }
    };
    let (sessions, redactions, retention) = b.finish(text);
    let mut unchecked = Vec::new();
    if opts.witnesses.is_empty() {
        unchecked.push("no witness key given (--witness): that no other version of this log was shown to others is not established".to_string());
    }
    if opts.anchors.is_empty() {
        unchecked.push("no checkpoint held elsewhere given (--checkpoint): a log truncated before export would not be caught".to_string());
    }
    if r.payloads_withheld > 0 {
        unchecked.push(format!(
            "{} payload(s) withheld by the exporter: their text is not shown",
            r.payloads_withheld
        ));
    }
    if r.policies.is_empty() {
        unchecked.push(
            "no policy files in the export: rule texts are as recorded in each decision"
                .to_string(),
        );
    }
    Account {
        schema: account::SCHEMA,
        origin: r.origin.clone(),
        selection: r.selection.clone(),
        verification: Verification {
            result: "verified",
            entries: r.entries,
            selected: r.selected,
            root: r.root.clone(),
            checkpoints: r.checkpoints.clone(),
            witnesses: r
                .cosigned
                .iter()
                .map(|(w, n)| Witnessed {
                    witness: w.clone(),
                    size: *n,
                })
                .collect(),
            payloads_verified: r.payloads_verified,
            payloads_redacted: r.payloads_redacted,
            payloads_withheld: r.payloads_withheld,
            proofs: r.proofs,
            derived_files_match: true,
            unchecked,
            source: account::Source::Export,
            exporter: Some(r.exporter.clone()),
            log_file: None,
        },
        period: crate::export_period::period(bundle, m, r, &sessions),
        sessions,
        redactions,
        retention,
    }
}

/// One RFC 3161 token in the export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimestampLine {
    /// The checkpoint size it stamps.
    pub size: u64,
    /// The TSA's time (when checked).
    pub gen_time: Option<String>,
    /// The TSA certificate's subject (when checked).
    pub tsa: Option<String>,
    /// Whether it was checked against a TSA certificate (`--tsa-cert`).
    pub checked: bool,
}

impl Report {
    pub(crate) fn new(m: &Manifest, c: &Checkpoints, s: &Streamed) -> Self {
        let p = &m.predicate;
        Self {
            origin: p.origin.clone(),
            entries: s.checker.size(),
            root: p.root.clone(),
            selection: match &p.range {
                Selection::All => "all entries".into(),
                Selection::Session { id } => format!("session {id}"),
                Selection::Time { since, until } => format!("{since} .. {until}"),
            },
            selected: s.selected,
            time_span: s.span.clone(),
            sessions: (
                s.checker.sessions.len() as u64,
                s.checker.sessions.values().filter(|x| !x.ended).count() as u64,
            ),
            checkpoints: c.checked.clone(),
            cosigned: c.cosigned.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            anchors: c.anchors.clone(),
            redactions: s
                .checker
                .redactions
                .iter()
                .map(|r| (r.seq, r.count, r.reason.clone()))
                .collect(),
            unfinished: s
                .checker
                .unfinished()
                .iter()
                .map(|u| (u.seq, u.kind.to_string()))
                .collect(),
            exporter: format!(
                "{}@{} ({}), recorded as entry {}",
                p.exporter.principal, p.exporter.host, p.exporter.runtime, p.exporter.entry
            ),
            entry_bytes: s.entries_bytes,
            stream_seconds: s.seconds,
            stream_cpu_seconds: s.cpu_seconds,
            start: s.start.clone(),
            last_leaf: s.last_leaf.as_ref().map(stele_audit::leaf::hash_b64),
            keys: m.keys.ranges().to_vec(),
            revoked: p.revoked.clone(),
            ..Default::default()
        }
    }

    /// The verification result as JSON (`stele-verify --json`; the shape is
    /// documented in `docs/review-report.md`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": VERIFY_SCHEMA,
            "result": "verified",
            "origin": self.origin,
            "entries": self.entries,
            "root": self.root,
            "start": self.start.as_ref().map(|s| serde_json::json!({
                "size": s.size,
                "root": s.root,
                "prev": s.prev,
                "archive_entry": s.archive_entry,
                "archive_bundle": s.archive_bundle,
                "note": format!("entries 0..{} are archived, not in this bundle", s.size),
            })),
            "selection": self.selection,
            "selected": self.selected,
            "time_span": self.time_span.as_ref().map(|(a, b)| serde_json::json!({"first": a, "last": b})),
            "sessions": self.sessions.0,
            "sessions_without_end": self.sessions.1,
            "checkpoints": self.checkpoints,
            "timestamps": self.timestamps.iter().map(|t| serde_json::json!({"size": t.size, "gen_time": t.gen_time, "tsa": t.tsa, "checked": t.checked})).collect::<Vec<_>>(),
            "witnesses": self.cosigned.iter().map(|(w, n)| serde_json::json!({"witness": w, "size": n})).collect::<Vec<_>>(),
            "anchors": self.anchors.iter().map(|(n, src)| serde_json::json!({"size": n, "source": src})).collect::<Vec<_>>(),
            "payloads": {"verified": self.payloads_verified, "redacted": self.payloads_redacted, "withheld": self.payloads_withheld},
            "redactions": self.redactions.iter().map(|(seq, n, why)| serde_json::json!({"entry": seq, "count": n, "reason": why})).collect::<Vec<_>>(),
            "proofs": self.proofs,
            "policies": self.policies.iter().map(|(n, d, b)| serde_json::json!({"name": n, "files_digest": d, "bundle_digest": b})).collect::<Vec<_>>(),
            "attestations": self.attestations,
            "unfinished": self.unfinished.iter().map(|(seq, k)| serde_json::json!({"entry": seq, "kind": k})).collect::<Vec<_>>(),
            "derived_files": "recomputed and matched",
            "exporter": self.exporter,
            "earlier": self.earlier.iter().map(|e| serde_json::json!({"origin": e.origin, "key": e.key, "tree_size": e.tree_size, "root": e.root, "entries": e.entries, "arrival": match &e.arrival { crate::Arrival::Moved => serde_json::json!({"kind": "moved"}), crate::Arrival::Failover { why, unknown } => serde_json::json!({"kind": "failover", "why": why, "unknown_intents": unknown}) }})).collect::<Vec<_>>(),
            "seconds": self.seconds,
        })
    }

    /// Entries verified per second, whole run.
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.seconds.max(1e-9)
    }

    /// Entries verified per CPU second, whole run.
    pub fn overall_cpu_rate(&self) -> f64 {
        self.entries as f64 / self.cpu_seconds.max(1e-9)
    }

    /// Entries per CPU second of the streaming phase.
    pub fn cpu_rate(&self) -> f64 {
        self.entries as f64 / self.stream_cpu_seconds.max(1e-9)
    }

    /// Entries per second of the streaming phase (leaves, chains, tiles).
    pub fn stream_rate(&self) -> f64 {
        self.entries as f64 / self.stream_seconds.max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "OK: export of {} verified", self.origin)?;
        match self.layout {
            stele_audit::export::layout::BundleLayout::Tiles => match &self.start {
                None => writeln!(
                    f,
                    "  entries:      {} (root {}), every leaf, chain, session sub-chain and tile checked",
                    self.entries, self.root
                )?,
                Some(s) => writeln!(
                    f,
                    "  entries:      {}..{} ({} in this bundle; tree of {}, root {}), every leaf from {} on, chain, session sub-chain and tile checked",
                    s.size,
                    self.entries,
                    self.entries - s.size,
                    self.entries,
                    self.root,
                    s.size
                )?,
            },
            stele_audit::export::layout::BundleLayout::Session => writeln!(
                f,
                "  entries:      {} of the session (and its redactions), each proven included at the checkpoint (root {}); its sub-chain complete from session.start to its end; the rest of the log is not in the bundle",
                self.entries, self.root
            )?,
        }
        for e in &self.earlier {
            match &e.arrival {
                crate::Arrival::Moved => writeln!(
                    f,
                    "  moved from:   {} ({} entries of the session at size {}, root {}), verified with its key {} and linked",
                    e.origin, e.entries, e.tree_size, e.root, e.key
                )?,
                crate::Arrival::Failover { why, unknown } => writeln!(
                    f,
                    "  continued from: {} after its worker stopped ({why}): the {} entries of the session a team server held at size {}, root {}, verified with its key {} and linked; anything that worker wrote later is not shown; {unknown} unfinished intent(s) whose result is unknown, not run again",
                    e.origin, e.entries, e.tree_size, e.root, e.key
                )?,
            }
        }
        if let Some(s) = &self.start {
            writeln!(
                f,
                "  archived:     entries 0..{} are archived, not in this bundle; it starts at {} (root {} signed there; log.archive entry {} names archive {})",
                s.size, s.size, s.root, s.archive_entry, s.archive_bundle
            )?;
        }
        writeln!(
            f,
            "  selection:    {} ({} entries)",
            self.selection, self.selected
        )?;
        if let Some((a, b)) = &self.time_span {
            writeln!(f, "  time span:    {a} .. {b}")?;
        }
        writeln!(
            f,
            "  sessions:     {} in the log prefix ({} without an end)",
            self.sessions.0, self.sessions.1
        )?;
        writeln!(
            f,
            "  checkpoints:  {} verified (sizes {:?})",
            self.checkpoints.len(),
            self.checkpoints
        )?;
        for (w, s) in &self.cosigned {
            writeln!(f, "  witness:      {w} cosigned size {s}")?;
        }
        for t in &self.timestamps {
            match (&t.gen_time, &t.tsa) {
                (Some(g), Some(tsa)) if t.checked => writeln!(
                    f,
                    "  timestamp:    checkpoint {} stamped {g} by {tsa} (RFC 3161, verified)",
                    t.size
                )?,
                _ => writeln!(
                    f,
                    "  timestamp:    checkpoint {} has an RFC 3161 token, NOT checked (give --tsa-cert)",
                    t.size
                )?,
            }
        }
        for (s, src) in &self.anchors {
            writeln!(f, "  anchor:       consistent with {src} (size {s})")?;
        }
        writeln!(
            f,
            "  payloads:     {} verified, {} redacted, {} withheld by the exporter",
            self.payloads_verified, self.payloads_redacted, self.payloads_withheld
        )?;
        for (seq, n, why) in &self.redactions {
            writeln!(
                f,
                "  redaction:    entry {seq} erased {n} payload(s): {why}"
            )?;
        }
        writeln!(
            f,
            "  proofs:       {} inclusion proofs verified",
            self.proofs
        )?;
        for (n, d, b) in &self.policies {
            writeln!(
                f,
                "  policy:       {n} files {d}{}",
                b.as_ref()
                    .map(|b| format!(", bundle {b}"))
                    .unwrap_or_default()
            )?;
        }
        for s in &self.attestations {
            writeln!(f, "  attestation:  session {s} attestation verified")?;
        }
        for (seq, k) in self.unfinished.iter().take(20) {
            writeln!(f, "  unfinished:   intent {seq} ({k}) has no result")?;
        }
        writeln!(f, "  exporter:     {}", self.exporter)?;
        // A rate only when the run was long enough for one to mean
        // something (a small export verifies in microseconds).
        let rate = |secs: f64, what: &str| {
            stele_audit::cpu_time::meaningful_rate(self.entries, secs)
                .map(|r| format!(" ({r:.0} entries/s {what}per CPU second)"))
                .unwrap_or_default()
        };
        writeln!(
            f,
            "  took {:.3} s wall, {:.3} s on CPU{}; entries and tiles: {:.3} s wall, {:.3} s on CPU{} ({:.1} MB)",
            self.seconds,
            self.cpu_seconds,
            rate(self.cpu_seconds, "overall "),
            self.stream_seconds,
            self.stream_cpu_seconds,
            rate(self.stream_cpu_seconds, ""),
            self.entry_bytes as f64 / 1e6
        )
    }
}
