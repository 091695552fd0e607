//! Which mapping of entries to OCSF classes an export's `ocsf.jsonl.gz`
//! follows. The manifest names it (`ocsf_mapping`), so a verifier
//! recomputes an export made by an older stele with that stele's mapping:
//! a reviewer's export stays verifiable after stele changes its view.

use serde::{Deserialize, Serialize};

use crate::event::EventKind;

/// A version of the entry → OCSF class mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum OcsfMapping {
    /// Until 2026-12 (an export whose manifest names no mapping): files as
    /// File System Activity, programs as Process Activity, everything else
    /// as API Activity; no `actor.authorizations`.
    #[default]
    #[serde(rename = "1")]
    V1,
    /// Also Network Activity (`net.*`), HTTP Activity (`model.request`) and
    /// each decision's outcome in `actor.authorizations`.
    #[serde(rename = "2")]
    V2,
}

impl OcsfMapping {
    /// The mapping this stele writes.
    pub const CURRENT: OcsfMapping = OcsfMapping::V2;

    /// The OCSF class and activity of `kind` under this mapping.
    pub fn class_and_activity(self, kind: EventKind) -> (u32, u32) {
        match self {
            OcsfMapping::V1 => v1_class_and_activity(kind),
            OcsfMapping::V2 => super::ocsf::class_and_activity(kind),
        }
    }

    /// Whether decisions carry their outcome in `actor.authorizations`.
    pub fn has_authorizations(self) -> bool {
        match self {
            OcsfMapping::V1 => false,
            OcsfMapping::V2 => true,
        }
    }

    /// Its name in manifests and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            OcsfMapping::V1 => "1",
            OcsfMapping::V2 => "2",
        }
    }
}

/// Mapping 1, as exports written before mapping 2 carry it: mapping 2
/// but for the three kinds mapping 2 moved out of API Activity (mapping 2
/// added no kind, so every other kind is placed as it was).
fn v1_class_and_activity(kind: EventKind) -> (u32, u32) {
    match kind {
        EventKind::ModelRequest | EventKind::NetConnect => (6003, 1),
        EventKind::NetClose => (6003, 99),
        other => super::ocsf::class_and_activity(other),
    }
}

impl TryFrom<String> for OcsfMapping {
    type Error = String;

    /// A manifest's `ocsf_mapping`; an unknown one is refused by name (a
    /// newer stele's export needs a newer stele-verify).
    fn try_from(name: String) -> Result<Self, String> {
        [OcsfMapping::V1, OcsfMapping::V2]
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "ocsf_mapping: unknown mapping {name:?} (this stele-verify knows \"1\" and \"2\"; a newer stele's export needs a newer stele-verify)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mapping 1 as docs/export-format.md states it, written apart from
    /// the code: a change to the current mapping must not move it.
    fn documented_v1(k: EventKind) -> (u32, u32) {
        use EventKind as K;
        match k {
            K::FileOpen => (1001, 14),
            K::FileClose => (1001, 99),
            K::ExecStart => (1007, 1),
            K::ExecEnd => (1007, 2),
            K::ModelRequest | K::ToolIntent | K::McpCall | K::NetConnect | K::HoldPlace => {
                (6003, 1)
            }
            K::AuditRead | K::AuditExport | K::McpList => (6003, 2),
            K::HoldRelease => (6003, 3),
            K::Redaction | K::PayloadExpiry | K::LogArchive => (6003, 4),
            _ => (6003, 99),
        }
    }

    #[test]
    fn mapping_1_stays_as_exports_made_under_it_carry_it() {
        for k in EventKind::ALL {
            assert_eq!(
                OcsfMapping::V1.class_and_activity(k),
                documented_v1(k),
                "{k:?}"
            );
        }
    }
}
