//! `stele audit show|tail`: print the entries a reviewer asks for, each
//! read recorded in the log (or verified read-only with `--vkey`;
//! `audit_read.rs`). Filters: `entry_filter.rs`.

use std::process::ExitCode;

use stele_audit::leaf::Leaf;

use super::audit::LogArgs;
use super::entry_filter::{EntryFilter, FilterInput};
use crate::terminal_safe;

/// Filters for reading.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Only this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only this kind (e.g. tool.intent).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only entries of this principal (the person the session ran for).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only entries about this workspace path or anything under it
    /// (whole components: `phi` covers `phi/a.pdf`, not `phil.txt`).
    #[arg(long)]
    pub path: Option<String>,
    /// Only entries carrying a policy decision with this effect.
    #[arg(long, value_name = "allow|deny|ask")]
    pub decision: Option<String>,
    /// Only entries at or after this time: a date (UTC) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before this time; a date means up to the end of that day.
    #[arg(long)]
    pub until: Option<String>,
    /// One JSON leaf per line.
    #[arg(long)]
    pub json: bool,
    /// Who is reading [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Read without recording, with the log's verifier key instead of its
    /// signing key (`stele keys show` prints it): the log is verified first
    /// and only verified entries are shown; nothing is written.
    #[arg(long)]
    pub vkey: Option<String>,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

impl ReadArgs {
    fn filter(&self) -> anyhow::Result<EntryFilter> {
        Ok(EntryFilter::parse(&FilterInput {
            session: self.session.as_deref(),
            kind: self.kind.as_deref(),
            principal: self.principal.as_deref(),
            path: self.path.as_deref(),
            decision: self.decision.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        })?)
    }
}

/// Run `stele audit show` (`tail`: only the newest `tail` matching entries).
pub fn read(f: &ReadArgs, tail: Option<u64>) -> anyhow::Result<ExitCode> {
    let (db, key) = (&f.log.db(), &f.log.key());
    // Every filter is checked before the log is opened (and the read recorded).
    let filter = f.filter()?;
    let mut what = filter.describe();
    what["command"] = serde_json::json!(if tail.is_some() { "tail" } else { "show" });
    let reader = super::audit_read::open(db, key, f.vkey.as_deref(), f.user.clone(), what)?;
    let mut out: std::collections::VecDeque<(Vec<u8>, Leaf)> = std::collections::VecDeque::new();
    reader.with_store(|store, size| {
        let mut scratch = Vec::new();
        store.for_each_entry(0, size, |_, bytes, _| {
            let leaf = Leaf::decode_canonical(bytes, &mut scratch)?;
            if filter.matches(&leaf) {
                out.push_back((bytes.to_vec(), leaf));
                if let Some(n) = tail {
                    if out.len() as u64 > n {
                        out.pop_front();
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    })?;
    reader.close()?;
    // Filtered by session: the id is said once, not on every line.
    let column = match &f.session {
        Some(id) => {
            if !f.json {
                crate::outln!("session {}", terminal_safe::line(id));
            }
            super::entry_line::SessionColumn::Implied
        }
        None => super::entry_line::SessionColumn::Shown,
    };
    for (bytes, leaf) in &out {
        // The reader has gone (`| head`): formatting the rest is waste.
        if crate::printing::closed(crate::printing::Stream::Out) {
            break;
        }
        if f.json {
            // The leaf as stored, with the characters a terminal would act
            // on as JSON escapes (the same value for any JSON reader).
            crate::outln!(
                "{}",
                terminal_safe::json_text(&String::from_utf8_lossy(bytes))
            );
        } else {
            crate::outln!("{}", super::entry_line::line(leaf, column));
        }
    }
    Ok(ExitCode::SUCCESS)
}
