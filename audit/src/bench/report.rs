//! The benchmark's figures and how they are printed.

use std::path::PathBuf;
use std::time::Duration;

/// Appends by some writers, each waiting for its durable acknowledgement.
#[derive(Debug, Clone)]
pub struct AppendFigures {
    /// Concurrent writers.
    pub writers: usize,
    /// Timed appends.
    pub entries: u64,
    /// Acknowledged appends per second (wall clock).
    pub per_second: f64,
    /// Append → acknowledged (durable, signed checkpoint) latency, median.
    pub p50: Duration,
    /// The same, 99th percentile.
    pub p99: Duration,
    /// Group commits (one fsync and one signed checkpoint each).
    pub commits: u64,
    /// The checkpoint signatures made during this run.
    pub signing: super::SigningFigures,
    /// Bytes written to storage per appended entry (WAL frames and
    /// checkpoints into the database file), where the platform says.
    pub bytes_written_per_entry: Option<f64>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Where the signing key is, in words (`Signer::describe`).
    pub signer: String,
    /// The verifier key of the measured log.
    pub verifier: String,
    /// Entries in the log before the measured appends.
    pub existing: u64,
    /// Seconds spent building the cached log of that size (0 when it was
    /// cached already).
    pub built_seconds: f64,
    /// Seconds to open (create) the log: the start-up check.
    pub open_seconds: f64,
    /// Seconds to open the log when its full verification is due (it runs
    /// before the first write), after the measured appends.
    pub full_start_seconds: Option<f64>,
    /// Many writers at once.
    pub concurrent: AppendFigures,
    /// One writer, one append at a time (bounded by fsync).
    pub serial: AppendFigures,
    /// Entries verified afterwards (0 when not asked).
    pub verified_entries: u64,
    /// Verification wall seconds.
    pub verify_seconds: f64,
    /// Verification CPU seconds of the verifying thread.
    pub verify_cpu_seconds: f64,
    /// Average leaf size.
    pub leaf_bytes: f64,
    /// Integrity bytes per entry: leaf hash + tree nodes + checkpoints.
    pub integrity_bytes: f64,
    /// Database file size per entry, everything included.
    pub file_bytes: f64,
    /// Where the log is, if kept.
    pub kept: Option<PathBuf>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "stele audit bench, on a log holding {} entries",
            self.existing
        )?;
        writeln!(f, "  signing key: {} ({})", self.signer, self.verifier)?;
        if self.built_seconds > 0.0 {
            writeln!(
                f,
                "  (built that log in {:.0} s; cached for the next run)",
                self.built_seconds
            )?;
        }
        writeln!(
            f,
            "  start-up (open, integrity check):       {:.1} ms",
            self.open_seconds * 1e3
        )?;
        if let Some(s) = self.full_start_seconds {
            writeln!(
                f,
                "  start-up with the full verification due: {:.0} ms (every entry, checkpoint and payload, SQLite quick_check; afterwards)",
                s * 1e3
            )?;
        }
        for a in [&self.concurrent, &self.serial] {
            writeln!(
                f,
                "  durable appends, {:>2} writer{}:           {:.0} entries/s, latency p50 {:.2} ms, p99 {:.2} ms ({} entries)",
                a.writers,
                if a.writers == 1 { " " } else { "s" },
                a.per_second,
                ms(a.p50),
                ms(a.p99),
                a.entries
            )?;
            let io = a
                .bytes_written_per_entry
                .map(|b| format!(", {b:.0} bytes written per entry"))
                .unwrap_or_default();
            writeln!(
                f,
                "                                          {} commits ({:.1} entries each){io}",
                a.commits,
                a.entries as f64 / a.commits.max(1) as f64
            )?;
            writeln!(
                f,
                "                                          checkpoint signing p50 {:.3} ms, p99 {:.3} ms ({} signatures)",
                ms(a.signing.p50),
                ms(a.signing.p99),
                a.signing.signatures
            )?;
        }
        if self.verified_entries > 0 {
            match crate::cpu_time::meaningful_rate(self.verified_entries, self.verify_cpu_seconds) {
                Some(rate) => writeln!(
                    f,
                    "  full verification:                      {rate:.0} entries/s per CPU second, one core ({:.2} s CPU, {:.2} s wall; {} entries)",
                    self.verify_cpu_seconds, self.verify_seconds, self.verified_entries
                )?,
                None => writeln!(
                    f,
                    "  full verification:                      {} entries in {:.3} s CPU (too little to give a rate)",
                    self.verified_entries, self.verify_cpu_seconds
                )?,
            }
        }
        writeln!(
            f,
            "  leaf size:                              {:.0} bytes/entry",
            self.leaf_bytes
        )?;
        writeln!(f, "  integrity data beyond the leaf:         {:.1} bytes/entry (leaf hash + tree nodes + checkpoints)", self.integrity_bytes)?;
        writeln!(f, "  database file:                          {:.0} bytes/entry (everything, SQLite overhead included)", self.file_bytes)?;
        if let Some(k) = &self.kept {
            writeln!(f, "  log kept at {}", k.display())?;
            writeln!(
                f,
                "  verifier key in {}.vkey (stele audit verify --db {} --vkey \"$(cat {}.vkey)\")",
                k.with_extension("").display(),
                k.display(),
                k.with_extension("").display()
            )?;
        }
        Ok(())
    }
}

/// One line per log size, and how far the fastest and slowest differ:
/// the figure for "an entry costs the same however large the log is".
pub fn summary(reports: &[BenchReport]) -> String {
    let mut out = String::from(
        "\nappends at size (entries/s; latency p50 / p99 in ms)\n  existing      many writers                 one writer\n",
    );
    for r in reports {
        out.push_str(&format!(
            "  {:>10}  {:>7.0}  {:>6.2} / {:>6.2}      {:>6.0}  {:>6.2} / {:>6.2}\n",
            r.existing,
            r.concurrent.per_second,
            ms(r.concurrent.p50),
            ms(r.concurrent.p99),
            r.serial.per_second,
            ms(r.serial.p50),
            ms(r.serial.p99)
        ));
    }
    let spread = |f: &dyn Fn(&BenchReport) -> f64| {
        let v: Vec<f64> = reports.iter().map(f).collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        if hi > 0.0 {
            (hi - lo) / hi * 100.0
        } else {
            0.0
        }
    };
    out.push_str(&format!(
        "  spread (slowest vs fastest): many writers {:.0}% of appends/s, one writer {:.0}%\n",
        spread(&|r| r.concurrent.per_second),
        spread(&|r| r.serial.per_second)
    ));
    out
}
