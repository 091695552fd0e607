//! What an API token may be used for: `read` (every GET: sessions,
//! events, approvals), `run` (start sessions, add and remove schedules), `approve` (answer
//! approvals), `admin` (anything else that changes state — a route not
//! mapped here needs `admin`, so a new route fails closed). Checked for
//! every request before the route runs; the role and the policy still
//! decide on top. Browser sessions and login tokens carry every scope.

use axum::http::Method;

/// One scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read sessions, events and approvals.
    Read,
    /// Start sessions, and upload files to workspaces.
    Run,
    /// Answer approvals.
    Approve,
    /// Everything else that changes state.
    Admin,
    /// A `stele worker`'s token: the worker API (`/api/v1/worker/…`) and
    /// nothing else; never given with another scope.
    Worker,
}

const ALL: [Scope; 4] = [Scope::Read, Scope::Run, Scope::Approve, Scope::Admin];

impl Scope {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Approve => "approve",
            Scope::Admin => "admin",
            Scope::Worker => "worker",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Run => 2,
            Scope::Approve => 4,
            Scope::Admin => 8,
            Scope::Worker => 16,
        }
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub fn all() -> Scopes {
        Scopes(ALL.iter().map(|s| s.bit()).sum())
    }

    /// Whether `s` is in the set.
    pub fn has(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// Parse `read,run,…` (or `worker` alone); an unknown or empty list is
    /// an error naming it.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        if text.trim() == Scope::Worker.as_str() {
            return Ok(Scopes(Scope::Worker.bit()));
        }
        if text.split(',').any(|w| w.trim() == Scope::Worker.as_str()) {
            return Err(
                "scope `worker` is given alone (a worker token can do nothing else)".into(),
            );
        }
        let mut bits = 0;
        for word in text.split(',').map(str::trim) {
            let s = ALL
                .iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| format!("unknown scope {word:?} (read, run, approve, admin)"))?;
            bits |= s.bit();
        }
        if bits == 0 {
            return Err("no scope given".into());
        }
        Ok(Scopes(bits))
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = ALL
            .iter()
            .chain([Scope::Worker].iter())
            .filter(|s| self.has(**s))
            .map(|s| s.as_str())
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The scope a request needs; None for logout (ending one's own credential).
pub fn required(method: &Method, path: &str) -> Option<Scope> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // The worker API is for worker tokens only; the listing of workers is administration.
    if let ["", "api", "v1", "worker", _, ..] = parts.as_slice() {
        return Some(Scope::Worker);
    }
    if let ["", "api", "v1", "worker"] = parts.as_slice() {
        return Some(Scope::Admin);
    }
    // The admin views (accounts, the bundle, health) are administration,
    // even read: a read-only token does not show them.
    if let ["", "api", "v1", "admin", ..] = parts.as_slice() {
        return Some(Scope::Admin);
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Scope::Read);
    }
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["", "api", "v1", "logout"]) => None,
        ("POST", ["", "api", "v1", "sessions"]) => Some(Scope::Run),
        // Putting work into a workspace is part of running it.
        ("PUT", ["", "api", "v1", "workspaces", _, "files", _, ..]) => Some(Scope::Run),
        // Steering a session (pause it, continue it) is running work.
        ("POST", ["", "api", "v1", "sessions", _, "resume" | "stop"]) => Some(Scope::Run),
        // A schedule starts sessions: making or removing one is `run`.
        ("POST", ["", "api", "v1", "schedules"])
        | ("POST", ["", "api", "v1", "schedules", _, "pause" | "unpause"])
        | ("DELETE", ["", "api", "v1", "schedules", _]) => Some(Scope::Run),
        ("POST", ["", "api", "v1", "approvals", _]) => Some(Scope::Approve),
        // Legal holds are audit administration: a token needs `admin`
        // (and the account `audit.hold` in the policy).
        ("POST", ["", "api", "v1", "audit", "holds"])
        | ("POST", ["", "api", "v1", "audit", "holds", _, "release"]) => Some(Scope::Admin),
        _ => Some(Scope::Admin),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_need_their_scope_and_unknown_ones_need_admin() {
        assert_eq!(
            required(&Method::PUT, "/api/v1/workspaces/books/files/reports/a.csv"),
            Some(Scope::Run)
        );
        assert_eq!(
            required(&Method::PUT, "/api/v1/workspaces/books"),
            Some(Scope::Admin)
        );
        assert_eq!(
            required(&Method::GET, "/api/v1/sessions"),
            Some(Scope::Read)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/sessions"),
            Some(Scope::Run)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/sessions/"),
            Some(Scope::Run)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/approvals/7"),
            Some(Scope::Approve)
        );
        for p in ["/api/v1/sessions/s-1/resume", "/api/v1/sessions/s-1/stop"] {
            assert_eq!(required(&Method::POST, p), Some(Scope::Run), "{p}");
        }
        assert_eq!(required(&Method::POST, "/api/v1/logout"), None);
        for p in [
            "/api/v1/schedules/s-1/pause",
            "/api/v1/schedules/s-1/unpause",
        ] {
            assert_eq!(required(&Method::POST, p), Some(Scope::Run), "{p}");
        }
        for p in [
            "/api/v1/admin/users",
            "/api/v1/admin/policy",
            "/api/v1/admin/health",
            "/api/v1/admin/workspaces",
            "/api/v1/admin",
        ] {
            assert_eq!(required(&Method::GET, p), Some(Scope::Admin), "{p}");
        }
        assert_eq!(
            required(&Method::POST, "/api/v1/schedules"),
            Some(Scope::Run)
        );
        assert_eq!(
            required(&Method::DELETE, "/api/v1/schedules/s-1"),
            Some(Scope::Run)
        );
        for (m, p) in [
            (Method::POST, "/api/v1/approvals"),
            (Method::POST, "/api/v1/schedules/s-1"),
            (Method::DELETE, "/api/v1/schedules"),
            (Method::PUT, "/api/v1/schedules/s-1"),
            (Method::DELETE, "/api/v1/sessions/x"),
            (Method::PUT, "/api/v1/approvals/7"),
            (Method::POST, "/api/v1/sessions/x/files"),
            (Method::POST, "/api/v1/sessions/x/resume/more"),
            (Method::POST, "/api/v1/sessions/resume"),
            (Method::POST, "/api/v1/audit/holds"),
            (Method::POST, "/api/v1/audit/holds/12/release"),
            (Method::POST, "/api/v1/schedules/s-1/pause/now"),
            (Method::POST, "/api/v1/schedules/pause"),
        ] {
            assert_eq!(required(&m, p), Some(Scope::Admin), "{m} {p}");
        }
    }

    #[test]
    fn the_worker_scope_stands_alone_and_opens_only_the_worker_api() {
        let w = Scopes::parse("worker").unwrap();
        assert!(w.has(Scope::Worker) && !w.has(Scope::Read) && !w.has(Scope::Admin));
        assert_eq!(w.to_string(), "worker");
        assert!(Scopes::parse("worker,read").unwrap_err().contains("alone"));
        assert!(!Scopes::all().has(Scope::Worker));
        assert_eq!(
            required(&Method::POST, "/api/v1/worker/claim"),
            Some(Scope::Worker)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/worker/jobs/3/events"),
            Some(Scope::Worker)
        );
        assert_eq!(required(&Method::GET, "/api/v1/worker"), Some(Scope::Admin));
        assert_eq!(
            required(&Method::GET, "/api/v1/sessions"),
            Some(Scope::Read)
        );
    }

    #[test]
    fn scope_lists_parse_and_print() {
        let s = Scopes::parse("run, read").unwrap();
        assert!(s.has(Scope::Read) && s.has(Scope::Run) && !s.has(Scope::Admin));
        assert_eq!(s.to_string(), "read,run");
        assert_eq!(
            Scopes::parse(&Scopes::all().to_string()).unwrap(),
            Scopes::all()
        );
        assert!(Scopes::parse("read,write").unwrap_err().contains("write"));
        assert!(Scopes::parse("").is_err());
    }
}
