//! Group limits (memory, processes, CPU per command and per session) from
//! the `[resources]` configuration section and `--limit KEY=VALUE` flags.
//!
//! ```toml
//! [resources]
//! command_memory = "4G"       # bytes, or with K/M/G/T (binary); "none" = no limit
//! command_processes = 512
//! command_cpu = 1.5           # CPUs; "none" (the default) = no bandwidth limit
//! session_memory = "8G"
//! session_processes = 1024
//! session_cpu = "none"
//! cgroups = "required"        # or "optional": run with rlimits only where cgroups are unusable
//! cgroup_parent = "stele.slice"
//! ```
//!
//! Values come from the defaults (`stele_sandbox::resources`), then the
//! user's file, then flags; a key the managed file sets wins, and a flag
//! asking for another value is refused.

use serde::Deserialize;
use stele_sandbox::resources::{
    CgroupRequirement, GroupLimits, MilliCpus, ResourceLimits, DEFAULT_CGROUP_PARENT,
};

use crate::config::{ConfigError, Layers};

/// A limit as written: a number, a string with a unit, or `"none"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    /// A plain number (bytes, processes, CPUs).
    Number(f64),
    /// `"4G"`, `"512M"`, `"1.5"`, or `"none"`.
    Text(String),
}

// A configuration value compares as written (a NaN never is one).
impl Eq for LimitValue {}

/// Whether the sandbox may run without cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupsMode {
    /// Refuse to run without (the default).
    Required,
    /// Run with per-process rlimits only where cgroups are unusable (recorded).
    Optional,
}

/// The `[resources]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Memory of one command's whole process tree.
    pub command_memory: Option<LimitValue>,
    /// Processes and threads of one command at once.
    pub command_processes: Option<LimitValue>,
    /// CPUs one command may use.
    pub command_cpu: Option<LimitValue>,
    /// Memory of all the session's commands (or its VM) together.
    pub session_memory: Option<LimitValue>,
    /// Processes and threads of the session at once.
    pub session_processes: Option<LimitValue>,
    /// CPUs the session may use.
    pub session_cpu: Option<LimitValue>,
    /// `required` (default) or `optional`.
    pub cgroups: Option<CgroupsMode>,
    /// The cgroup v2 directory (relative to the hierarchy's root) stele's
    /// session groups go under [default: stele.slice].
    pub cgroup_parent: Option<String>,
}

/// The keys of `[resources]` and `--limit`.
const KEYS: [&str; 8] = [
    "command_memory",
    "command_processes",
    "command_cpu",
    "session_memory",
    "session_processes",
    "session_cpu",
    "cgroups",
    "cgroup_parent",
];

impl ResourcesConfig {
    fn get(&self, key: &str) -> Option<String> {
        let text = |v: &Option<LimitValue>| {
            v.as_ref().map(|v| match v {
                LimitValue::Number(n) => n.to_string(),
                LimitValue::Text(t) => t.clone(),
            })
        };
        match key {
            "command_memory" => text(&self.command_memory),
            "command_processes" => text(&self.command_processes),
            "command_cpu" => text(&self.command_cpu),
            "session_memory" => text(&self.session_memory),
            "session_processes" => text(&self.session_processes),
            "session_cpu" => text(&self.session_cpu),
            "cgroups" => self.cgroups.map(|m| match m {
                CgroupsMode::Required => "required".to_string(),
                CgroupsMode::Optional => "optional".to_string(),
            }),
            "cgroup_parent" => self.cgroup_parent.clone(),
            _ => None,
        }
    }
}

/// `"none"` → no limit; else `parse`.
fn limit<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    if text.eq_ignore_ascii_case("none") {
        return Some(None);
    }
    parse(text).map(Some)
}

/// Bytes: a whole number, optionally with K, M, G or T (powers of 1024,
/// an optional trailing `B`/`iB`).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 10),
        'M' | 'm' => (&t[..t.len() - 1], 20),
        'G' | 'g' => (&t[..t.len() - 1], 30),
        'T' | 't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

fn parse_cpus(text: &str) -> Option<MilliCpus> {
    let v: f64 = text.trim().parse().ok()?;
    (v.is_finite() && v > 0.0 && v <= 4096.0).then(|| MilliCpus((v * 1000.0).round() as u32))
}

fn level<'a>(limits: &'a mut ResourceLimits, key: &str) -> &'a mut GroupLimits {
    if key.starts_with("command_") {
        &mut limits.command
    } else {
        &mut limits.session
    }
}

/// Apply `key = value` to `limits`; the error names the key and what is wrong.
fn apply(limits: &mut ResourceLimits, key: &str, value: &str) -> Result<(), String> {
    let bad = |what: &str| format!("{key} = {value:?}: {what}");
    match key {
        "command_memory" | "session_memory" => {
            level(limits, key).memory_bytes = limit(value, parse_bytes)
                .ok_or_else(|| bad("expected bytes (4G, 512M, 1073741824) or \"none\""))?;
        }
        "command_processes" | "session_processes" => {
            level(limits, key).processes = limit(value, |t| t.trim().parse().ok())
                .ok_or_else(|| bad("expected a whole number of processes or \"none\""))?;
        }
        "command_cpu" | "session_cpu" => {
            level(limits, key).cpu = limit(value, parse_cpus)
                .ok_or_else(|| bad("expected a number of CPUs (0.5, 1.5, 2) or \"none\""))?;
        }
        "cgroups" => {
            limits.requirement = match value {
                "required" => CgroupRequirement::Required,
                "optional" => CgroupRequirement::AllowWithout,
                _ => return Err(bad("expected \"required\" or \"optional\"")),
            }
        }
        "cgroup_parent" => limits.cgroup_parent = Some(value.to_string()),
        _ => {
            return Err(format!(
                "unknown resource limit {key:?} (known: {})",
                KEYS.join(", ")
            ))
        }
    }
    Ok(())
}

/// Parse `--limit KEY=VALUE` flags.
fn flag_pairs(flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|f| {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--limit {f:?}: expected KEY=VALUE, e.g. command_memory=2G")
            })?;
            let k = k.trim().replace(['.', '-'], "_");
            Ok((k, v.trim().to_string()))
        })
        .collect()
}

/// The limits in force: defaults, the user's `[resources]`, the flags, and
/// the managed `[resources]` over all (a flag that contradicts it is an error).
pub fn resource_limits(layers: &Layers, flags: &[String]) -> anyhow::Result<ResourceLimits> {
    let mut limits = ResourceLimits::default();
    let section = |f: &crate::config::ConfigFile| f.resources.clone().unwrap_or_default();
    if let Some((path, user)) = &layers.user {
        let sec = section(user);
        for key in KEYS {
            if let Some(v) = sec.get(key) {
                apply(&mut limits, key, &v)
                    .map_err(|e| anyhow::anyhow!("config {}, [resources]: {e}", path.display()))?;
            }
        }
    }
    let flags = flag_pairs(flags)?;
    if flags.iter().any(|(k, _)| k == "cgroups") {
        // Running without the layer is a decision for the configuration
        // (where a managed file can fix it), not for one invocation.
        anyhow::bail!(
            "--limit cgroups=…: whether sessions may run without cgroups is set in the \
             [resources] configuration only"
        );
    }
    for (k, v) in &flags {
        apply(&mut limits, k, v).map_err(|e| anyhow::anyhow!("--limit {e}"))?;
    }
    if let Some((path, managed, _)) = &layers.managed {
        let sec = section(managed);
        for key in KEYS {
            let Some(v) = sec.get(key) else { continue };
            if let Some((_, given)) = flags.iter().find(|(k, _)| k == key) {
                if *given != v {
                    return Err(ConfigError::Managed {
                        field: "limit",
                        managed: format!("{key}={v}"),
                        given: format!("{key}={given}"),
                        path: path.clone(),
                    }
                    .into());
                }
            }
            apply(&mut limits, key, &v)
                .map_err(|e| anyhow::anyhow!("config {}, [resources]: {e}", path.display()))?;
        }
    }
    limits
        .validate()
        .map_err(|e| anyhow::anyhow!("resource limits: {e}"))?;
    Ok(limits)
}

/// `--limit KEY=VALUE`, shared by the commands that open a session.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// A group limit for this session, e.g. `command_memory=2G`,
    /// `session_cpu=1.5`, `command_processes=none` (repeatable; see the
    /// `[resources]` configuration keys).
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    pub limits: Vec<String>,
}

/// The limits as one line for people (`stele sandbox check`).
pub fn describe(l: &GroupLimits) -> String {
    let mem = l.memory_bytes.map_or("no memory limit".to_string(), |b| {
        format!("memory {}", human_bytes(b))
    });
    let procs = l
        .processes
        .map_or("no process limit".to_string(), |p| format!("{p} processes"));
    let cpu = l
        .cpu
        .map_or("no CPU limit (CPU time accounted)".to_string(), |c| {
            format!("{:.2} CPUs", f64::from(c.0) / 1000.0)
        });
    format!("{mem}, {procs}, {cpu}")
}

/// `4 GiB`, `512 MiB`, or bytes.
pub fn human_bytes(b: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{} {unit}", b >> shift);
        }
    }
    format!("{b} bytes")
}

/// The cgroup parent in force, for reports.
pub fn parent(l: &ResourceLimits) -> &str {
    l.cgroup_parent.as_deref().unwrap_or(DEFAULT_CGROUP_PARENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("4G"), Some(4 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1073741824"), Some(1 << 30));
        assert_eq!(parse_bytes("2 K"), Some(2048));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1G"), None);
        assert_eq!(parse_cpus("1.5"), Some(MilliCpus(1500)));
        assert_eq!(parse_cpus("0"), None);
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn keys_values_and_errors() {
        let mut l = ResourceLimits::default();
        apply(&mut l, "command_memory", "2G").unwrap();
        apply(&mut l, "session_cpu", "1.5").unwrap();
        apply(&mut l, "command_processes", "none").unwrap();
        apply(&mut l, "cgroups", "optional").unwrap();
        assert_eq!(l.command.memory_bytes, Some(2 << 30));
        assert_eq!(l.session.cpu, Some(MilliCpus(1500)));
        assert_eq!(l.command.processes, None);
        assert_eq!(l.requirement, CgroupRequirement::AllowWithout);
        let e = apply(&mut l, "command_memory", "much").unwrap_err();
        assert!(e.contains("command_memory") && e.contains("much"), "{e}");
        let e = apply(&mut l, "memory", "1G").unwrap_err();
        assert!(e.contains("unknown resource limit"), "{e}");
        let e = apply(&mut l, "cgroups", "maybe").unwrap_err();
        assert!(e.contains("required"), "{e}");
        let pairs = flag_pairs(&["command.memory=1G".into()]).unwrap();
        assert_eq!(
            pairs,
            vec![("command_memory".to_string(), "1G".to_string())]
        );
        assert!(flag_pairs(&["command_memory".into()]).is_err());
    }

    #[test]
    fn layers_and_managed_values() {
        let user: crate::config::ConfigFile =
            toml::from_str("[resources]\ncommand_memory = \"1G\"\nsession_processes = 99\n")
                .unwrap();
        let managed: crate::config::ConfigFile =
            toml::from_str("[resources]\nsession_memory = \"2G\"\n").unwrap();
        let layers = Layers {
            managed: Some(("/etc/stele/config.toml".into(), managed, String::new())),
            user: Some(("/u/config.toml".into(), user)),
        };
        let l = resource_limits(&layers, &["command_memory=3G".into()]).unwrap();
        assert_eq!(
            l.command.memory_bytes,
            Some(3 << 30),
            "a flag beats the user's file"
        );
        assert_eq!(l.session.processes, Some(99));
        assert_eq!(l.session.memory_bytes, Some(2 << 30));
        let e = resource_limits(&layers, &["cgroups=optional".into()]).unwrap_err();
        assert!(e.to_string().contains("configuration only"), "{e}");
        let e = resource_limits(&layers, &["session_memory=4G".into()]).unwrap_err();
        assert!(e.to_string().contains("managed"), "{e}");
        // The same value as the managed one is fine.
        assert!(resource_limits(&layers, &["session_memory=2G".into()]).is_ok());
        let bad: crate::config::ConfigFile =
            toml::from_str("[resources]\ncommand_memory = \"lots\"\n").unwrap();
        let layers = Layers {
            managed: None,
            user: Some(("/u/config.toml".into(), bad)),
        };
        let e = resource_limits(&layers, &[]).unwrap_err().to_string();
        assert!(
            e.contains("/u/config.toml") && e.contains("command_memory"),
            "{e}"
        );
        // Unknown keys in the section are refused by the parser itself.
        assert!(toml::from_str::<crate::config::ConfigFile>("[resources]\nmemory = 1\n").is_err());
    }
}
