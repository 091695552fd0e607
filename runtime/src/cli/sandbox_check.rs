//! `stele sandbox check`: what this host enforces, probed by doing (the
//! layers, the cgroup layout and a session group made and removed with the
//! limits in force), as text or plain JSON.

use std::process::ExitCode;

use serde_json::json;
use stele_sandbox::check::{LayerReport, Requirements};
use stele_sandbox::process::{Enforcement, LandlockStatus};
use stele_sandbox::resources::{limits_json, CgroupRequirement};

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
        match &verdict {
            Ok(()) => crate::outln!("\nprocess sandbox: READY (all required layers present)"),
            Err(e) => crate::outln!("\nprocess sandbox: REFUSES TO START: {e}"),
        }
        let vm = super::vm::probe();
        crate::out!("\n{}", vm.render());
        let state = if vm.ready() { "READY" } else { "NOT AVAILABLE" };
        crate::outln!("\nmicro-VM backend: {state} (`--backend vm`)");
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
