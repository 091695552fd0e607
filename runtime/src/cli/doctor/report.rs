//! The shape of `stele doctor`'s report (`--json` is plain serialisation
//! of [`DoctorReport`]; its schema is docs/json/doctor.schema.json).

use serde::Serialize;

use super::grants::Grant;

/// Everything `stele doctor` found.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoctorReport {
    /// True when no problem was found.
    pub ok: bool,
    /// Who you are here.
    pub you: You,
    /// The policy bundle in force for you.
    pub policy: PolicyState,
    /// What the policy lets you do (probed; see `grants`).
    pub grants: Vec<Grant>,
    /// The sandbox layers this host has.
    pub sandbox: SandboxState,
    /// The log's signing key.
    pub key: KeyState,
    /// The audit log.
    pub log: LogState,
    /// The model provider configured.
    pub model: ModelState,
    /// Each problem with its fix, most important first.
    pub problems: Vec<Problem>,
}

/// Who stele acts for.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct You {
    /// The principal (`--user`, else `$USER`, else `$LOGNAME`).
    pub principal: Option<String>,
    /// Your teams in the bundle's members file.
    pub teams: Vec<String>,
}

/// The policy bundle.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyState {
    /// Where it is.
    pub path: Option<String>,
    /// Where that came from (flag, config, the built-in default).
    pub source: Option<String>,
    /// Its digest (in every decision of the log).
    pub digest: Option<String>,
    /// The teams it defines.
    pub teams: Vec<String>,
    /// Why it did not load.
    pub error: Option<String>,
}

/// One sandbox layer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerState {
    /// The layer.
    pub name: String,
    /// Present and working.
    pub available: bool,
    /// What the probe saw when it is missing.
    pub detail: Option<String>,
}

/// The sandbox backends.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxState {
    /// The process sandbox would start.
    pub process_ready: bool,
    /// Each layer it needs.
    pub layers: Vec<LayerState>,
    /// Landlock ABI version (0: none).
    pub landlock_abi: u8,
    /// The micro-VM backend would start now.
    pub microvm_ready: bool,
    /// Why not (e.g. no image yet: built on first use).
    pub microvm_detail: Option<String>,
}

/// The signing key.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// The key file.
    pub path: String,
    /// It exists and loads.
    pub present: bool,
    /// Its verifier key (give it to reviewers).
    pub verifier: Option<String>,
    /// Why it does not load.
    pub error: Option<String>,
}

/// The audit log.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    /// The database.
    pub path: String,
    /// It exists.
    pub present: bool,
    /// Entries in it.
    pub entries: Option<u64>,
    /// Entries the newest signed checkpoint covers.
    pub checkpoint_size: Option<u64>,
    /// Why it cannot be read.
    pub error: Option<String>,
}

/// The model provider.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelState {
    /// `PROVIDER:NAME`, from `--model` or the config.
    pub spec: Option<String>,
    /// The endpoint requests go to.
    pub endpoint: Option<String>,
    /// The environment variable holding the API key (`[provider.NAME]`
    /// `api_key_env` in the config names another).
    pub api_key_variable: Option<String>,
    /// That variable is set (its value is never shown).
    pub api_key_set: bool,
    /// A TCP connection to the endpoint succeeded (`None`: not tried).
    pub reachable: Option<bool>,
    /// What was seen.
    pub detail: Option<String>,
}

/// A problem and how to fix it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// Which part (`you`, `policy`, `sandbox`, `key`, `log`, `model`).
    pub area: String,
    /// What is wrong.
    pub what: String,
    /// What to do.
    pub fix: String,
}
