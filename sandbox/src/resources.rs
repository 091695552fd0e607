//! Limits on *groups* of processes — one command's whole process tree, and
//! all of a session's commands together — and what such a group used.
//!
//! Per-process rlimits ([`crate::exec::Limits`]) cannot bound a command
//! that spreads its work over many processes (three processes of 1.5 GiB
//! each stay under a 4 GiB address-space limit apiece). These limits are
//! enforced with cgroups (`process::cgroup`) on the host and inside the
//! micro-VM's guest, and reported per command.

use std::time::Duration;

/// CPU bandwidth in thousandths of one CPU (1000 = one CPU busy all the
/// time, 1500 = one and a half).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MilliCpus(pub u32);

impl MilliCpus {
    /// The CFS period used for quotas, in microseconds (the kernel's default).
    pub const PERIOD_US: u64 = 100_000;

    /// The quota per [`MilliCpus::PERIOD_US`], in microseconds.
    pub fn quota_us(self) -> u64 {
        u64::from(self.0) * Self::PERIOD_US / 1000
    }
}

/// Limits on a group of processes; `None` means no limit at this level
/// (an enclosing level may still limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Memory of all the group's processes together (RAM; no swap is
    /// allowed beyond it), in bytes. Over it the kernel reclaims and then
    /// OOM-kills a process of the group.
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once; a fork beyond it fails (EAGAIN).
    pub processes: Option<u64>,
    /// CPU bandwidth; over it the group is throttled (not killed).
    pub cpu: Option<MilliCpus>,
}

impl GroupLimits {
    /// No limit at all.
    pub const NONE: GroupLimits = GroupLimits {
        memory_bytes: None,
        processes: None,
        cpu: None,
    };

    /// One command's default, sized for a 2-core, 24 GiB laptop-class
    /// machine: 4 GiB, 512 processes; no CPU bandwidth limit (see
    /// [`GroupLimits::SESSION_DEFAULT`]).
    pub const COMMAND_DEFAULT: GroupLimits = GroupLimits {
        memory_bytes: Some(4 << 30),
        processes: Some(512),
        cpu: None,
    };

    /// A session's default (all its commands, or its VM, together): 8 GiB
    /// (two thirds of the memory stay for the user and stele itself, whose
    /// file server and proxy run outside the session's group), 1024
    /// processes. No CPU bandwidth limit by default: a CPU group costs
    /// every command milliseconds of scheduling delay on a busy host
    /// (docs/sandbox.md, Resource limits); CPU time is accounted and
    /// reported anyway, per-process CPU time is bounded by `RLIMIT_CPU`,
    /// and a command by its wall-clock deadline. Configure one to cap a
    /// session's CPU share.
    pub const SESSION_DEFAULT: GroupLimits = GroupLimits {
        memory_bytes: Some(8 << 30),
        processes: Some(1024),
        cpu: None,
    };

    /// Check the values make sense (a group needs room for its init and
    /// the command; a CPU quota below 1 % would starve it).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if let Some(m) = self.memory_bytes {
            if m < 16 << 20 {
                return Err(format!("{what} memory limit {m} bytes is below 16 MiB"));
            }
        }
        if let Some(p) = self.processes {
            if p < 8 {
                return Err(format!("{what} process limit {p} is below 8"));
            }
        }
        if let Some(c) = self.cpu {
            if c.0 < 10 {
                return Err(format!(
                    "{what} CPU limit {} millicpus is below 10 (1 % of a CPU)",
                    c.0
                ));
            }
        }
        Ok(())
    }
}

/// Whether a sandbox may run without the cgroup layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupRequirement {
    /// No sandbox without cgroup limits (the default: fail closed).
    #[default]
    Required,
    /// Run with per-process rlimits only when cgroups are unusable; the
    /// session records that it ran without (explicit configuration only).
    AllowWithout,
}

/// The group limits of a session and of each of its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Each command's whole process tree.
    pub command: GroupLimits,
    /// All of the session's commands together (or its VM).
    pub session: GroupLimits,
    /// Whether to refuse when cgroups are unusable.
    pub requirement: CgroupRequirement,
    /// Where stele's cgroups go in the cgroup v2 hierarchy, relative to its
    /// mount [default: [`DEFAULT_CGROUP_PARENT`] at the root].
    pub cgroup_parent: Option<String>,
}

/// The cgroup v2 directory (under the hierarchy's root) holding stele's
/// session groups unless configured otherwise.
pub const DEFAULT_CGROUP_PARENT: &str = "stele.slice";

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            command: GroupLimits::COMMAND_DEFAULT,
            session: GroupLimits::SESSION_DEFAULT,
            requirement: CgroupRequirement::Required,
            cgroup_parent: None,
        }
    }
}

impl ResourceLimits {
    /// Check every value (see [`GroupLimits::validate`]) and the parent path.
    pub fn validate(&self) -> Result<(), String> {
        self.command.validate("command")?;
        self.session.validate("session")?;
        if let Some(p) = &self.cgroup_parent {
            let bad = p.is_empty()
                || p.starts_with('/')
                || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                || p.contains('\0');
            if bad {
                return Err(format!(
                    "cgroup parent {p:?} must be a relative path of plain names (no `..`, no leading `/`)"
                ));
            }
        }
        Ok(())
    }
}

/// Which limit a group reached while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitHit {
    /// Memory: the kernel had to reclaim at the limit or OOM-killed a process.
    Memory,
    /// Processes: a fork was refused.
    Processes,
    /// CPU: the group was throttled.
    Cpu,
}

impl LimitHit {
    /// The name used in logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            LimitHit::Memory => "memory",
            LimitHit::Processes => "processes",
            LimitHit::Cpu => "cpu",
        }
    }
}

/// What a group of processes used, as its cgroup accounted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupUsage {
    /// The limits that applied to the group itself.
    pub limits: Option<GroupLimits>,
    /// Largest memory use of the group as a whole, in bytes (RAM incl.
    /// page cache and tmpfs it wrote; `None` where not accounted).
    pub memory_peak_bytes: Option<u64>,
    /// Most processes and threads alive at once (`None` where the kernel
    /// does not track it).
    pub processes_peak: Option<u64>,
    /// User CPU time of all its processes.
    pub cpu_user: Duration,
    /// System CPU time of all its processes.
    pub cpu_system: Duration,
    /// Time the group was held back by its CPU limit.
    pub cpu_throttled: Duration,
    /// Periods in which it was throttled.
    pub cpu_throttled_periods: u64,
    /// Processes of the group killed by the kernel's OOM killer.
    pub oom_kills: u64,
    /// Times the group's memory use reached its limit.
    pub memory_limit_events: u64,
    /// Forks refused because the group was at its process limit.
    pub process_limit_events: u64,
}

impl GroupUsage {
    /// The limits that bound the group while it ran: its own (its peak
    /// reached it, or the kernel counted it) or an enclosing group's (the
    /// kernel refused a fork or OOM-killed one of its processes).
    pub fn limits_hit(&self) -> Vec<LimitHit> {
        let reached = |peak: Option<u64>, limit: Option<u64>| match (peak, limit) {
            (Some(p), Some(l)) => p >= l,
            _ => false,
        };
        let limits = self.limits.unwrap_or(GroupLimits::NONE);
        let mut hit = Vec::new();
        if self.oom_kills > 0
            || self.memory_limit_events > 0
            || reached(self.memory_peak_bytes, limits.memory_bytes)
        {
            hit.push(LimitHit::Memory);
        }
        if self.process_limit_events > 0 || reached(self.processes_peak, limits.processes) {
            hit.push(LimitHit::Processes);
        }
        if self.cpu_throttled_periods > 0 {
            hit.push(LimitHit::Cpu);
        }
        hit
    }

    /// What was used between `before` and `self` (counters subtracted; the
    /// peaks and limits are `self`'s).
    pub fn since(&self, before: &GroupUsage) -> GroupUsage {
        GroupUsage {
            limits: self.limits,
            memory_peak_bytes: self.memory_peak_bytes,
            processes_peak: self.processes_peak,
            cpu_user: self.cpu_user.saturating_sub(before.cpu_user),
            cpu_system: self.cpu_system.saturating_sub(before.cpu_system),
            cpu_throttled: self.cpu_throttled.saturating_sub(before.cpu_throttled),
            cpu_throttled_periods: self
                .cpu_throttled_periods
                .saturating_sub(before.cpu_throttled_periods),
            oom_kills: self.oom_kills.saturating_sub(before.oom_kills),
            memory_limit_events: self
                .memory_limit_events
                .saturating_sub(before.memory_limit_events),
            process_limit_events: self
                .process_limit_events
                .saturating_sub(before.process_limit_events),
        }
    }

    /// As plain JSON values (for `exec.end`, `--json` outputs); what is not
    /// known (or not limited) is left out rather than `null`.
    pub fn to_json(self) -> serde_json::Value {
        without_nulls(self.json_with_nulls())
    }

    fn json_with_nulls(self) -> serde_json::Value {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let limits = self.limits.map(|l| {
            serde_json::json!({
                "memory_bytes": l.memory_bytes,
                "processes": l.processes,
                "cpu_millicpus": l.cpu.map(|c| c.0),
            })
        });
        serde_json::json!({
            "limits": limits,
            "memory_peak_bytes": self.memory_peak_bytes,
            "processes_peak": self.processes_peak,
            "cpu_user_ms": ms(self.cpu_user),
            "cpu_system_ms": ms(self.cpu_system),
            "cpu_throttled_ms": ms(self.cpu_throttled),
            "oom_kills": self.oom_kills,
            "memory_limit_events": self.memory_limit_events,
            "process_limit_events": self.process_limit_events,
            "limits_hit": self.limits_hit().iter().map(|h| h.name()).collect::<Vec<_>>(),
        })
    }
}

/// `limits` as JSON: the limits set (unlimited ones left out).
pub fn limits_json(l: &GroupLimits) -> serde_json::Value {
    without_nulls(serde_json::json!({
        "memory_bytes": l.memory_bytes,
        "processes": l.processes,
        "cpu_millicpus": l.cpu.map(|c| c.0),
    }))
}

/// `v` with every `null` member of an object removed (recursively).
pub fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(without_nulls).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_and_validation() {
        assert_eq!(MilliCpus(1500).quota_us(), 150_000);
        assert_eq!(MilliCpus(250).quota_us(), 25_000);
        assert!(ResourceLimits::default().validate().is_ok());
        let mut l = ResourceLimits::default();
        l.command.processes = Some(3);
        assert!(l.validate().unwrap_err().contains("command process limit"));
        let mut l = ResourceLimits::default();
        l.session.memory_bytes = Some(1 << 20);
        assert!(l.validate().unwrap_err().contains("session memory"));
        for bad in ["", "/abs", "a/../b", "a//b", "."] {
            let l = ResourceLimits {
                cgroup_parent: Some(bad.into()),
                ..ResourceLimits::default()
            };
            assert!(l.validate().is_err(), "{bad:?} accepted");
        }
        let l = ResourceLimits {
            cgroup_parent: Some("system.slice/stele.service/sandboxes".into()),
            ..ResourceLimits::default()
        };
        assert!(l.validate().is_ok());
    }

    #[test]
    fn hits_and_differences() {
        let before = GroupUsage {
            oom_kills: 1,
            cpu_user: Duration::from_millis(100),
            ..GroupUsage::default()
        };
        let after = GroupUsage {
            oom_kills: 1,
            process_limit_events: 2,
            cpu_user: Duration::from_millis(350),
            ..GroupUsage::default()
        };
        let d = after.since(&before);
        assert_eq!(d.oom_kills, 0);
        assert_eq!(d.cpu_user, Duration::from_millis(250));
        assert_eq!(d.limits_hit(), vec![LimitHit::Processes]);
        assert_eq!(
            after.limits_hit(),
            vec![LimitHit::Memory, LimitHit::Processes]
        );
        let j = d.to_json();
        assert_eq!(j["limits_hit"], serde_json::json!(["processes"]));
        assert_eq!(j["cpu_user_ms"], serde_json::json!(250));
        // Unknown figures are left out, not null.
        assert!(j.get("memory_peak_bytes").is_none(), "{j}");
        assert!(j.get("limits").is_none(), "{j}");
        let l = limits_json(&GroupLimits::COMMAND_DEFAULT);
        assert_eq!(
            l,
            serde_json::json!({"memory_bytes": 4u64 << 30, "processes": 512})
        );
    }
}
