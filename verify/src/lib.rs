//! Offline verification of stele audit exports (`docs/export-format.md`).
//!
//! Deliberately small: no database, no async runtime, no policy engine. The
//! per-leaf rules come from `stele_audit::check`, the same code the runtime's
//! own `stele audit verify` runs, so both agree on what a valid log is.

pub mod account;
pub mod bundle;
pub mod chain;
mod derived;
mod earlier;
mod export_period;
mod extras;
mod keys;
mod manifest;
mod report;
mod session_stream;
pub mod slice;
pub mod start;
mod stream;
pub mod timestamps;

use std::collections::BTreeMap;

use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::NoteVerifier;
use stele_audit::merkle::Hash;

pub use bundle::Bundle;
pub use earlier::{Arrival, EarlierSlice};
pub use report::{Report, VERIFY_SCHEMA};

/// The first problem found: which file, which entry, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FAILED: {file}{}: {reason}", .index.map(|i| format!(" (entry {i})")).unwrap_or_default())]
pub struct Failure {
    /// Bundle-relative file (or the bundle path).
    pub file: String,
    /// Entry index, when one is concerned.
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl Failure {
    /// A failure in `file`.
    pub fn new(file: impl Into<String>, index: Option<u64>, reason: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            index,
            reason: reason.into(),
        }
    }
}

/// What the reviewer trusts.
#[derive(Debug, Clone)]
pub struct Options {
    /// The log's verifier key (obtained out of band).
    pub log_key: NoteVerifier,
    /// More trusted keys of the same log (earlier or later keys of a
    /// rotated log; after a revocation every key of the log must be given).
    pub more_keys: Vec<NoteVerifier>,
    /// Keys not to be trusted from a tree size on (compromised), besides
    /// those the log's own `key.revocation` entries name.
    pub revoked: Vec<stele_audit::keys::Revocation>,
    /// The manifest signing key; `None` means the log key signs manifests.
    pub export_key: Option<NoteVerifier>,
    /// Witness keys.
    pub witnesses: Vec<CosignatureVerifier>,
    /// Cosignatures required (default: all given witnesses).
    pub quorum: Option<usize>,
    /// Checkpoints the reviewer already holds (note text, source name).
    pub anchors: Vec<(String, String)>,
    /// Current time (POSIX seconds) for cosignature timestamps.
    pub now: u64,
    /// The TSA certificate(s) RFC 3161 tokens must chain to; without it
    /// tokens are listed, not checked.
    pub tsa: Option<stele_attest::timestamp::TsaTrust>,
}

/// Roots that the recomputed tree must match at given sizes, with where each came from.
pub(crate) type Expect = BTreeMap<u64, (Hash, String)>;

/// What a verification produces besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produce {
    /// The result and facts only (`Report::account` stays empty): what a
    /// verification without `--report` needs, at full speed.
    Result,
    /// Also the reviewer's account (`Report::account`).
    ResultAndAccount,
}

/// Verify a bundle and build the reviewer's account. Stops at the first
/// failure.
pub fn verify(bundle: &Bundle, opts: &Options) -> Result<Report, Failure> {
    verify_producing(bundle, opts, Produce::ResultAndAccount)
}

/// Verify a bundle, producing what `produce` asks for. Stops at the first
/// failure.
pub fn verify_producing(
    bundle: &Bundle,
    opts: &Options,
    produce: Produce,
) -> Result<Report, Failure> {
    verify_with(bundle, opts, produce, Completeness::Whole)
}

/// Whether a session bundle must hold its session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// The session must end in the bundle (export-format §8 step 4): the
    /// end is what shows that nothing of the session is left out.
    Whole,
    /// The session may stop without an end: the bundle is what a team
    /// server held of a stopped worker's log, checked as the earlier slice
    /// of a session that continued elsewhere (§8a, failover). Every other
    /// rule holds; what the worker wrote after it is not shown.
    Prefix,
}

/// Verify a session bundle whose session may be unfinished
/// ([`Completeness::Prefix`]); any other bundle is refused.
pub fn verify_session_prefix(bundle: &Bundle, opts: &Options) -> Result<Report, Failure> {
    verify_with(bundle, opts, Produce::Result, Completeness::Prefix)
}

fn verify_with(
    bundle: &Bundle,
    opts: &Options,
    produce: Produce,
    completeness: Completeness,
) -> Result<Report, Failure> {
    let started = std::time::Instant::now();
    let cpu0 = stele_audit::cpu_time::thread_cpu_ns();
    let m = manifest::check(bundle, opts)?;
    manifest::derived_files(bundle, &m)?;
    let mut expect: Expect = BTreeMap::new();
    let cps = manifest::checkpoints(bundle, opts, &m, &mut expect)?;
    let atts = extras::read_attestations(bundle, opts, &m, &mut expect)?;
    if m.predicate.layout == stele_audit::export::layout::BundleLayout::Session {
        let mut report =
            session_stream::verify(bundle, opts, &m, &cps, &atts, &expect, completeness)?;
        report.timestamps = timestamps::check(bundle, opts, &m)?;
        report.seconds = started.elapsed().as_secs_f64();
        report.cpu_seconds = stele_audit::cpu_time::cpu_seconds_since(cpu0, report.seconds);
        return Ok(report);
    }
    if completeness == Completeness::Prefix {
        return Err(Failure::new(
            "manifest.intoto.jsonl",
            None,
            "not a session bundle: only a session bundle is checked as a prefix",
        ));
    }
    let builder = match produce {
        Produce::Result => None,
        Produce::ResultAndAccount => Some(account::AccountBuilder::default()),
    };
    let from = start::check(bundle, &m, &expect)?;
    let mut s = stream::run(bundle, &m, &expect, builder, from.as_ref())?;
    if let Some(d) = s.derived.take() {
        d.finish(bundle, &m)?;
    }
    let mut report = Report::new(&m, &cps, &s);
    extras::sessions(&m, &s)?;
    extras::payloads(bundle, &m, &s, &mut report)?;
    extras::proofs(bundle, opts, &m, &s, &mut report)?;
    extras::policies(bundle, &m, &mut report)?;
    extras::check_attestations(&atts, &s.checker.sessions, &mut report)?;
    report.timestamps = timestamps::check(bundle, opts, &m)?;
    if let Some(account) = s.account.take() {
        report.account = report::account(account, bundle, &m, &s, &report, opts);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.cpu_seconds = stele_audit::cpu_time::cpu_seconds_since(cpu0, report.seconds);
    Ok(report)
}
