//! A scratch state for the whole-process benchmarks (`stele bench workload`,
//! `stele bench exec`): its own state folder and signing key, optionally a
//! log that already holds N entries, and the `stele` command set up to use
//! it — so a benchmark measures what a user runs, on a log of a given size,
//! without touching the user's own state.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

/// A scratch folder holding a state dir; removed on drop.
pub struct Scratch {
    dir: PathBuf,
    exe: PathBuf,
}

impl Scratch {
    /// A new scratch folder named after `what`, with a state whose log key
    /// is initialised and whose log holds `existing` entries (signed by that
    /// key; built once per size into the benchmark cache, then copied).
    pub fn new(what: &str, existing: u64) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("stele-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch folder {}", dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the stele executable")?;
        let s = Self { dir, exe };
        let o = s
            .stele(&["keys", "init", "--origin", "bench.stele.invalid/workload"])
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "stele keys init: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if existing > 0 {
            let ticker = super::ticker::Ticker::start(&format!(
                "bench {what}: filling the audit log with {existing} entries"
            ));
            let key = stele_attest::load_key_file(&s.state().join("keys/log.key"))?;
            stele_audit::bench::prefill(&s.state().join("audit.db"), existing, Arc::new(key))?;
            drop(ticker);
        }
        Ok(s)
    }

    /// The scratch folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its state folder.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `stele ARGS` on the scratch state (its own configuration home and
    /// user name, no standard input).
    pub fn stele(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args)
            .env("STELE_STATE_DIR", self.state())
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("USER", "bench")
            .stdin(Stdio::null());
        c
    }

    /// `stele sandbox exec --workspace WS --backend BACKEND -- COMMAND…` on
    /// the scratch state.
    pub fn sandbox_exec(&self, ws: &str, backend: &str, command: &[&str]) -> Command {
        let mut c = self.stele(&[
            "sandbox",
            "exec",
            "--workspace",
            ws,
            "--backend",
            backend,
            "--",
        ]);
        c.args(command);
        c
    }

    /// Entries in the scratch log.
    pub fn log_size(&self) -> anyhow::Result<u64> {
        let db = self.state().join("audit.db");
        if !db.exists() {
            return Ok(0);
        }
        Ok(stele_audit::Store::open(&db)?.size()?)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The median of sorted durations.
pub fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Durations as a comma-separated list of whole milliseconds.
pub fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}
