//! The cgroup layer: memory, process and CPU limits on a command's whole
//! process tree and on a session's commands together, `cgroup.kill` of a
//! command's tree, and the figures reported in `exec.end`.
//!
//! * `layout`: where the controllers live (v2, hybrid v1+v2, …);
//! * `control`: limits and usage in each hierarchy's dialect;
//! * `tree`: stele's subtree, removal, clean-up of dead sessions' groups;
//! * `session`: the session group and its janitor;
//! * `leaf`: one command's group.

mod control;
pub mod layout;
mod leaf;
mod session;
mod slots;
mod tree;

use std::path::PathBuf;

pub use layout::{Controller, Layout, Placement, Version};
pub use leaf::{LeafGroup, ThreadInLeaf};
pub use session::SessionGroup;

/// Why the cgroup layer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CgroupUnavailable(pub String);

use crate::resources::{ResourceLimits, DEFAULT_CGROUP_PARENT};

/// What `stele sandbox check` reports about cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupReport {
    /// The host's layout (`None` when it could not be read).
    pub layout: Option<Layout>,
    /// Where stele's session groups go in the v2 hierarchy.
    pub subtree: Option<PathBuf>,
    /// The controllers the probed limits use (cpu only with a CPU limit).
    pub used: Vec<Controller>,
    /// Whether a session group with the default limits and a command leaf
    /// could be created (and were removed again), or why not.
    pub usable: Result<(), String>,
}

impl CgroupReport {
    /// Probe by doing: create (and remove) a session group and a leaf with
    /// `limits` under `limits.cgroup_parent`.
    pub fn probe(limits: &ResourceLimits) -> CgroupReport {
        let layout = Layout::discover().ok();
        let parent = limits
            .cgroup_parent
            .as_deref()
            .unwrap_or(DEFAULT_CGROUP_PARENT);
        let subtree = layout
            .as_ref()
            .and_then(|l| l.unified.as_ref())
            .map(|u| u.mount.join(parent));
        let usable = SessionGroup::create(limits)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.leaf(&limits.command)
                    .map(|leaf| {
                        leaf.finish();
                    })
                    .map_err(|e| format!("creating a command's cgroup: {e}"))
            });
        CgroupReport {
            layout,
            subtree,
            used: tree::used_controllers(limits),
            usable,
        }
    }

    /// Where each controller is, as `(name, "v2" | "v1 <path>" | "missing")`.
    pub fn placements(&self) -> Vec<(&'static str, String)> {
        let Some(l) = &self.layout else {
            return Vec::new();
        };
        l.controllers
            .iter()
            .map(|(c, p)| {
                let at = match p {
                    Placement::Unified => "v2".to_string(),
                    Placement::V1(h) => format!("v1 {}", h.own.display()),
                    Placement::Missing => "missing".to_string(),
                };
                if self.used.contains(c) {
                    (c.name(), at)
                } else {
                    (c.name(), format!("{at} (not used: no limit configured)"))
                }
            })
            .collect()
    }

    /// As plain JSON values.
    pub fn to_json(&self) -> serde_json::Value {
        let controllers: serde_json::Map<String, serde_json::Value> = self
            .layout
            .iter()
            .flat_map(|l| l.controllers.iter())
            .map(|(c, p)| {
                let v = match p {
                    Placement::Unified => serde_json::json!({ "hierarchy": "v2" }),
                    Placement::V1(h) => serde_json::json!({
                        "hierarchy": "v1",
                        "own_cgroup": h.own.display().to_string(),
                    }),
                    Placement::Missing => serde_json::json!({ "hierarchy": null }),
                };
                let mut v = v;
                v["used"] = serde_json::json!(self.used.contains(c));
                (c.name().to_string(), v)
            })
            .collect();
        serde_json::json!({
            "layout": self.layout.as_ref().map(|l| l.kind()),
            "v2_mount": self.layout.as_ref().and_then(|l| l.unified.as_ref()).map(|u| u.mount.display().to_string()),
            "subtree": self.subtree.as_ref().map(|p| p.display().to_string()),
            "controllers": controllers,
            "usable": self.usable.is_ok(),
            "error": self.usable.as_ref().err(),
        })
    }
}
