//! `stele-verify A1 --then A2 … --then LIVE`: the archive chain, each
//! bundle verified on its own and joined to the one before
//! (`stele_verify::chain`). Exit 0 when the whole chain holds, 3 at the
//! first failure (naming the bundle, its file and entry, and what), 4 when
//! a bundle cannot be opened.

use std::process::ExitCode;

use stele_verify::chain::verify_chain;
use stele_verify::{Bundle, Options};

use crate::output::{err, out};
use crate::Args;

/// Verify the chain `args.bundle`, then each `--then`.
pub(crate) fn run(args: &Args, opts: &Options) -> ExitCode {
    let mut bundles = Vec::with_capacity(args.then.len() + 1);
    for p in std::iter::once(&args.bundle).chain(&args.then) {
        match Bundle::open(p) {
            Ok(b) => bundles.push((p.display().to_string(), b)),
            Err(f) => return crate::unreadable(args, &format!("cannot open {}: {f}", p.display())),
        }
    }
    let links = match verify_chain(&bundles, opts) {
        Ok(l) => l,
        Err(e) => {
            if args.json {
                let v = serde_json::json!({
                    "schema": stele_verify::VERIFY_SCHEMA, "result": "failed",
                    "bundle": e.name, "position": e.position,
                    "file": e.failure.file, "entry": e.failure.index, "reason": e.failure.reason,
                });
                out(format_args!("{v}\n"));
            }
            err(format_args!("{e}\n"));
            return ExitCode::from(3);
        }
    };
    let (origin, end) = links
        .last()
        .map(|l| (l.report.origin.clone(), l.report.entries))
        .unwrap_or_default();
    if args.json {
        let v = serde_json::json!({
            "schema": stele_verify::VERIFY_SCHEMA,
            "result": "verified",
            "chain": links.iter().map(|l| {
                let mut r = l.report.to_json();
                r["bundle"] = serde_json::json!(l.name);
                r["manifest"] = serde_json::json!(l.digest);
                r
            }).collect::<Vec<_>>(),
            "origin": origin,
            "entries": end,
        });
        out(format_args!("{v}\n"));
        return ExitCode::SUCCESS;
    }
    out(format_args!(
        "OK: archive chain of {origin} verified: {} bundles, entries 0..{end}, each joined to the one before (size, root, last leaf hash, the recorded manifest digest, keys)\n",
        links.len()
    ));
    for (i, l) in links.iter().enumerate() {
        let from = l.report.start.as_ref().map_or(0, |s| s.size);
        out(format_args!(
            "  bundle {}:     {} entries {from}..{} (manifest {})\n",
            i + 1,
            l.name,
            l.report.entries,
            l.digest
        ));
    }
    if args.bench {
        let secs: f64 = links.iter().map(|l| l.report.seconds).sum();
        out(format_args!(
            "entries/s: {:.0} over the chain ({end} entries in {secs:.2} s)\n",
            end as f64 / secs.max(1e-9)
        ));
    }
    ExitCode::SUCCESS
}
