//! `stele sandbox check`: what this host enforces, probed by doing (the
//! layers, the cgroup layout and a session group made and removed with the
//! limits in force), as text or plain JSON.

use std::process::ExitCode;

use serde_json::json;
use stele_sandbox::check::{LayerReport, Requirements};
use stele_sandbox::process::SystemRoot;
use stele_sandbox::process::{Enforcement, LandlockStatus};
use stele_sandbox::resources::{limits_json, CgroupRequirement};
use stele_sandbox::vm::ImageIntegrity;

use super::sandbox::CheckArgs;

/// An optional Landlock feature as a plain JSON value.
fn enforced(e: Enforcement) -> bool {
    match e {
        Enforcement::Enforced => true,
        Enforcement::NotSupportedByKernel => false,
    }
}

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // The limits and cgroup place this host's sessions would get.
    let layers = crate::config::load()?;
    let limits = super::resources::resource_limits(&layers, &[])?;
    let quota = super::backend::workspace_quota(&layers, None);
    let report = LayerReport::probe_with(&limits);
    let verdict = report.require(&Requirements {
        cgroups: limits.requirement,
        ..Requirements::default()
    });
    let ll = LandlockStatus::for_abi(report.landlock_abi);
    let root = RootCheck::probe(super::backend::sandbox_root(&layers)?);
    if args.json {
        let ns: serde_json::Map<String, serde_json::Value> = report
            .namespaces
            .iter()
            .map(|(l, a)| (l.to_string(), json!(a.is_available())))
            .collect();
        let mut cgroup = report.cgroup.to_json();
        cgroup["required"] = json!(limits.requirement == CgroupRequirement::Required);
        cgroup["command_limits"] = limits_json(&limits.command);
        cgroup["session_limits"] = limits_json(&limits.session);
        let v = json!({
            "namespaces": ns,
            "landlock_abi": report.landlock_abi,
            "landlock_tcp": enforced(ll.tcp),
            "landlock_scoping": enforced(ll.scoping),
            "seccomp": report.seccomp.is_available(),
            "fuse": report.fuse.is_available(),
            "mount_setattr": report.mount_setattr.is_available(),
            "pidfd": report.pidfd.is_available(),
            "cgroup": cgroup,
            "running_as_root": report.running_as_root,
            "ready": verdict.is_ok(),
            "error": verdict.as_ref().err().map(|e| e.to_string()),
            "root": root.json(),
            "microvm": super::vm::report_json(&super::vm::probe()),
            "workspace_write_quota": quota.as_ref().ok().map(|q| q.limit()),
            "workspace_write_quota_error": quota.as_ref().err().map(|e| format!("{e:#}")),
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        crate::out!("{}", report.render());
        crate::outln!(
            "{:<22} per command: {}",
            "cgroup limits",
            super::resources::describe(&limits.command)
        );
        crate::outln!(
            "{:<22} per session: {}",
            "",
            super::resources::describe(&limits.session)
        );
        if limits.requirement == CgroupRequirement::AllowWithout {
            crate::outln!(
                "{:<22} cgroups = \"optional\": sessions run with rlimits only where cgroups are unusable",
                ""
            );
        }
        match &quota {
            Ok(q) => crate::outln!(
                "workspace write quota: {q} per session (`workspace_write_quota`, --workspace-quota)"
            ),
            Err(e) => crate::outln!("workspace write quota: configuration error: {e:#}"),
        }
        crate::out!("{}", root.render());
        match &verdict {
            Ok(()) if !root.ok() => {
                crate::outln!("\nprocess sandbox: REFUSES TO START: its root (above)")
            }
            Ok(()) => crate::outln!("\nprocess sandbox: READY (all required layers present)"),
            Err(e) => crate::outln!("\nprocess sandbox: REFUSES TO START: {e}"),
        }
        let vm = super::vm::probe();
        crate::out!("\n{}", vm.render());
        let state = if vm.ready() { "READY" } else { "NOT AVAILABLE" };
        crate::outln!("\nmicro-VM backend: {state} (`--backend vm`)");
    }
    Ok(if verdict.is_ok() && root.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::SANDBOX_UNAVAILABLE)
    })
}

/// The process sandbox's root as `stele sandbox check` sees it: which one
/// is configured and, for the image, its digest and whether every file
/// still hashes as built (the whole tree is re-hashed: seconds).
struct RootCheck {
    configured: super::backend::RootChoice,
    image: Result<(String, ImageIntegrity), String>,
}

impl RootCheck {
    fn probe(configured: super::backend::RootChoice) -> RootCheck {
        let image = SystemRoot::image(&super::vm::default_store())
            .map_err(|e| e.to_string())
            .and_then(|root| {
                let digest = root.digest().unwrap_or_default().to_owned();
                super::vm::default_store()
                    .current()
                    .and_then(|i| i.verify())
                    .map(|v| (digest, v))
                    .map_err(|e| e.to_string())
            });
        RootCheck { configured, image }
    }

    /// Whether the configured root can be used.
    fn ok(&self) -> bool {
        match self.configured {
            super::backend::RootChoice::Host => true,
            super::backend::RootChoice::Image => {
                matches!(self.image, Ok((_, ImageIntegrity::Intact)))
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        let (digest, integrity, changed, error) = match &self.image {
            Ok((d, ImageIntegrity::Intact)) => (Some(d.clone()), Some("intact"), vec![], None),
            Ok((d, ImageIntegrity::Changed(c))) => {
                (Some(d.clone()), Some("changed"), c.clone(), None)
            }
            Err(e) => (None, None, vec![], Some(e.clone())),
        };
        json!({
            "configured": match self.configured {
                super::backend::RootChoice::Image => "image",
                super::backend::RootChoice::Host => "host",
            },
            "image_digest": digest,
            "image_integrity": integrity,
            "image_changed": changed,
            "image_error": error,
            "ready": self.ok(),
        })
    }

    fn render(&self) -> String {
        let configured = match self.configured {
            super::backend::RootChoice::Image => "tool image (sandbox_root = \"image\")",
            super::backend::RootChoice::Host => {
                "HOST system directories (sandbox_root = \"host\"; recorded as such)"
            }
        };
        let mut out = format!("{:<22} {configured}\n", "sandbox root");
        let image = match &self.image {
            Ok((d, ImageIntegrity::Intact)) => format!("{d} (re-hashed: intact)"),
            Ok((d, ImageIntegrity::Changed(c))) => format!(
                "{d} CHANGED SINCE BUILT: {}",
                crate::terminal_safe::line(&c.join("; "))
            ),
            Err(e) => format!("MISSING ({})", crate::terminal_safe::line(e)),
        };
        out.push_str(&format!("{:<22} {image}\n", "tool image"));
        out
    }
}
