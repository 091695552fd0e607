//! The opt-in process sandbox of a stdio server, as configured:
//! `sandbox = true`, or a `[mcp.NAME.sandbox]` table; and the managed
//! file's `[mcp_settings] require_sandbox = true`, which puts every stdio
//! server in one.
//!
//! ```toml
//! [mcp.files.sandbox]
//! hosts = ["api.example.com:443"]   # the only destinations (through the proxy)
//! read = ["/srv/reference"]         # host paths, read-only, at the same path
//! write = ["/srv/shared"]           # host paths, read-write
//! memory_mib = 4096                 # address space per process [4096]
//! cpu_seconds = 3600                # CPU time per process [3600]
//! processes = 256                   # processes and threads [256]
//! tmp_mib = 256                     # private /tmp [256]
//! ```

use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use stele_policy::canonical::CanonicalHost;
use stele_sandbox::process::service::ServiceLimits;

/// `sandbox = true|false` or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxSetting {
    /// `sandbox = false`: run on the host (refused when the managed file
    /// requires sandboxing).
    Off,
    /// `sandbox = true` (defaults) or a table.
    On(McpSandboxConfig),
}

impl<'de> Deserialize<'de> for SandboxSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SandboxSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or a table (hosts, read, write, …)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SandboxSetting, E> {
                Ok(if v {
                    SandboxSetting::On(McpSandboxConfig::default())
                } else {
                    SandboxSetting::Off
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SandboxSetting, A::Error> {
                McpSandboxConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(SandboxSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[mcp.NAME.sandbox]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSandboxConfig {
    /// Destinations the server may connect to, `host:port` (port 443 when
    /// left out); every connection is also a `net.connect` decision.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Host paths the server may read (absolute), at the same path.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Host paths the server may read and write (absolute).
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// Address space per process, MiB.
    pub memory_mib: Option<u64>,
    /// CPU seconds per process.
    pub cpu_seconds: Option<u64>,
    /// Processes and threads.
    pub processes: Option<u64>,
    /// Size of the private `/tmp`, MiB.
    pub tmp_mib: Option<u64>,
}

/// The `[mcp_settings]` table (its `require_sandbox` counts only in the
/// managed file or to tighten in the user's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// Every stdio server runs in the process sandbox; `sandbox = false`
    /// is refused.
    #[serde(default)]
    pub require_sandbox: bool,
}

/// One destination a sandboxed server may reach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllowedHost {
    /// Canonical host name or IP literal.
    pub name: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.contains(':') {
            write!(f, "[{}]:{}", self.name, self.port)
        } else {
            write!(f, "{}:{}", self.name, self.port)
        }
    }
}

/// A server's validated sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The only destinations.
    pub hosts: Vec<AllowedHost>,
    /// Read-only host paths from the configuration.
    pub read: Vec<PathBuf>,
    /// Read-write host paths from the configuration.
    pub write: Vec<PathBuf>,
    /// Limits.
    pub limits: ServiceLimits,
    /// The managed file that requires sandboxing, when it does.
    pub required_by: Option<String>,
    /// stele's own state (the audit log and its siblings, the signing key,
    /// the state directory), which no grant may expose; set by the session.
    pub protected: Vec<PathBuf>,
}

impl SandboxSpec {
    /// Whether `host:port` (canonical) is among the configured hosts.
    pub fn allows(&self, name: &str, port: u16) -> bool {
        self.hosts.iter().any(|h| h.name == name && h.port == port)
    }

    /// What the log records about the sandbox as configured.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "hosts": self.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "read": self.read,
            "write": self.write,
            "address_space_bytes": self.limits.address_space_bytes,
            "cpu_seconds": self.limits.cpu_seconds,
            "processes": self.limits.processes,
            "tmp_bytes": self.limits.tmp_bytes,
            "required_by": self.required_by,
        })
    }
}

/// One `hosts` entry: `name[:port]` or `[v6]:port`.
fn parse_host(entry: &str) -> Result<AllowedHost, String> {
    let h = CanonicalHost::parse(&format!("https://{entry}"))
        .map_err(|e| format!("hosts entry {entry:?}: {e}"))?;
    Ok(AllowedHost {
        name: h.name().to_string(),
        port: h.port(),
    })
}

/// Validate a sandbox table (`required_by`: the managed file requiring it).
pub fn validate(
    cfg: &McpSandboxConfig,
    required_by: Option<String>,
) -> Result<SandboxSpec, String> {
    let mut hosts = cfg
        .hosts
        .iter()
        .map(|h| parse_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    hosts.sort();
    hosts.dedup();
    for p in cfg.read.iter().chain(&cfg.write) {
        if !p.is_absolute() {
            return Err(format!("sandbox paths must be absolute: {}", p.display()));
        }
    }
    let d = ServiceLimits::default();
    let mib = |v: Option<u64>, default: u64| v.map_or(default, |m| m.clamp(16, 1 << 20) << 20);
    let limits = ServiceLimits {
        address_space_bytes: mib(cfg.memory_mib, d.address_space_bytes),
        cpu_seconds: cfg.cpu_seconds.map_or(d.cpu_seconds, |c| c.max(1)),
        processes: cfg.processes.map_or(d.processes, |p| p.clamp(4, 65536)),
        tmp_bytes: mib(cfg.tmp_mib, d.tmp_bytes),
        ..d
    };
    Ok(SandboxSpec {
        hosts,
        read: cfg.read.clone(),
        write: cfg.write.clone(),
        limits,
        required_by,
        protected: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        sandbox: SandboxSetting,
    }

    #[test]
    fn bool_or_table() {
        let t: T = toml::from_str("sandbox = true").unwrap();
        assert_eq!(t.sandbox, SandboxSetting::On(McpSandboxConfig::default()));
        let t: T = toml::from_str("sandbox = false").unwrap();
        assert_eq!(t.sandbox, SandboxSetting::Off);
        let t: T = toml::from_str(
            "[sandbox]\nhosts = [\"API.Example.com\", \"[::1]:8443\"]\nwrite = [\"/srv/x\"]",
        )
        .unwrap();
        let SandboxSetting::On(c) = t.sandbox else {
            panic!("a table is on")
        };
        let s = validate(&c, None).unwrap();
        assert!(s.allows("api.example.com", 443));
        assert!(s.allows("::1", 8443));
        assert!(!s.allows("api.example.com", 80));
        let e = toml::from_str::<T>("[sandbox]\nhost = [\"x\"]")
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown field `host`"), "{e}");
        let c = McpSandboxConfig {
            read: vec!["relative".into()],
            ..Default::default()
        };
        assert!(validate(&c, None).unwrap_err().contains("absolute"));
        let c = McpSandboxConfig {
            hosts: vec!["bad host:1".into()],
            ..Default::default()
        };
        assert!(validate(&c, None).is_err());
    }
}
