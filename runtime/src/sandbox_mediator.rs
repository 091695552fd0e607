//! The Mediator the runtime hands to the sandbox (owned by the lead; the gate
//! will implement it with policy decisions and durable audit entries).

use std::path::Path;
use std::sync::Arc;

use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, Verdict,
};

/// Options for building the mediator used by `stele sandbox exec`.
#[derive(Debug, Clone)]
pub struct MediatorOptions<'a> {
    /// The granted workspace folder on the host.
    pub workspace: &'a Path,
    /// Policy bundle folder; `None` means the shipped strict default.
    pub policy: Option<&'a Path>,
    /// The principal (user) on whose behalf the command runs.
    pub user: &'a str,
}

/// Build the mediator for one `stele sandbox exec` invocation.
pub fn build(_opts: &MediatorOptions<'_>) -> anyhow::Result<Arc<dyn Mediator>> {
    Ok(Arc::new(DenyAll))
}

/// Placeholder until the gate exists: refuses everything (fail closed).
#[derive(Debug)]
struct DenyAll;

impl Mediator for DenyAll {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        Verdict::Deny("no policy gate is wired in this build".into())
    }
    fn file_closed(&self, _report: &FileCloseReport) {}
    fn net_connect(&self, _req: &NetRequest) -> Verdict {
        Verdict::Deny("no policy gate is wired in this build".into())
    }
    fn net_closed(&self, _report: &NetCloseReport) {}
}
