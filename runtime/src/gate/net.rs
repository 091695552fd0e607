//! Connections asked for through an egress proxy, at the gate.
//!
//! The host arrives as the sandboxed client wrote it. It is canonicalised
//! with `stele_policy::canonical` (what `stele policy explain` uses), then
//! taken through [`stele_policy::Bundle::connect_step`]: a name is decided
//! by name alone and, unless that denies, resolved once; the request with
//! the address (and its class) is then authorised as usual — logged, and
//! asked where policy says. The proxy is told the one address that was
//! decided and connects to exactly that. Every refusal on the way (a host
//! that does not canonicalise, a session without network, a name refused
//! before resolution, a name that does not resolve) is a logged
//! `policy.decision` entry.

use std::net::IpAddr;

use stele_audit::Target;
use stele_policy::canonical::CanonicalHost;
use stele_policy::{Action, ConnectStep, Resolve, Resource, ToolArgs};
use stele_sandbox::{NetRequest, NetScheme};

use super::{ActionRequest, Authorization, Denial, Gate, GateError, Permit};

/// The gate's answer to a connection request.
#[derive(Debug)]
pub enum Connection {
    /// Connect to exactly `address` (on the requested port); report the
    /// close with `permit`.
    Permitted {
        /// The intent's permit.
        permit: Permit,
        /// The decided address.
        address: IpAddr,
    },
    /// Refused and logged.
    Denied(Denial),
}

/// A connection request whose host has been canonicalised.
#[derive(Debug, Clone)]
pub struct NetAttempt {
    /// The canonical host (a name not yet resolved, or an IP literal).
    pub host: CanonicalHost,
    /// What the entries carry in `data` (exec, pid, …).
    pub data: serde_json::Value,
}

/// The scheme policies see for a proxied request.
pub fn scheme_of(scheme: NetScheme) -> &'static str {
    match scheme {
        NetScheme::Connect => "https",
        NetScheme::Http => "http",
    }
}

impl Gate {
    /// Canonicalise the host of `req`; a host that cannot be canonicalised
    /// is refused with a logged decision naming it as written.
    pub fn net_attempt(
        &self,
        req: &NetRequest,
        mut data: serde_json::Value,
    ) -> Result<Result<NetAttempt, Denial>, GateError> {
        let scheme = scheme_of(req.scheme);
        match CanonicalHost::new(scheme, &req.host, Some(req.port)) {
            Ok(host) => {
                if host.name() != req.host {
                    data["requested_host"] = serde_json::json!(req.host);
                }
                Ok(Ok(NetAttempt { host, data }))
            }
            Err(e) => {
                data["requested_host"] = serde_json::json!(req.host);
                let reason = format!(
                    "net.connect refused: host {:?} is not a valid host name or address ({e})",
                    req.host
                );
                let target = Target {
                    port: Some(req.port),
                    scheme: Some(scheme.to_string()),
                    ..Target::default()
                };
                self.refuse_target(target, reason, Some(data)).map(Err)
            }
        }
    }

    /// Refuse `attempt` without asking policy (`reason` says why: a session
    /// without network, a configured limit below policy): a logged decision.
    pub fn net_refuse(&self, attempt: &NetAttempt, reason: String) -> Result<Denial, GateError> {
        self.refuse(&self.net_request(attempt, None), reason)
    }

    /// Decide `attempt`: by name, resolve once, decide with the address
    /// (asking where policy says), log the intent.
    pub fn net_connect(
        &self,
        attempt: NetAttempt,
        resolver: &dyn Resolve,
    ) -> Result<Connection, GateError> {
        let by_name = self.net_request(&attempt, None);
        let step = self
            .bundle
            .connect_step(&self.request(&by_name)?, resolver)?;
        match step {
            ConnectStep::RefusedByName(d) => self.deny(&by_name, &d).map(Connection::Denied),
            ConnectStep::Unresolvable { error, .. } => {
                let reason = format!("net.connect refused: {error}");
                self.refuse(&by_name, reason).map(Connection::Denied)
            }
            ConnectStep::Decide { resolution, .. } => {
                let Some(address) = resolution.host.address() else {
                    return self
                        .refuse(&by_name, "net.connect refused: no address".into())
                        .map(Connection::Denied);
                };
                let mut ar = self.net_request(&attempt, Some(&resolution.host));
                if let Some(d) = ar.data.as_mut() {
                    d["resolved"] = serde_json::json!(resolution
                        .all
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>());
                }
                Ok(match self.authorize(ar)? {
                    Authorization::Permitted(permit) => Connection::Permitted { permit, address },
                    Authorization::Denied(d) => Connection::Denied(d),
                })
            }
        }
    }

    /// The action request for `attempt`, with the resolved host if known.
    fn net_request(&self, attempt: &NetAttempt, resolved: Option<&CanonicalHost>) -> ActionRequest {
        let host = resolved.unwrap_or(&attempt.host);
        let mut ar = ActionRequest::new(Action::NetConnect, Resource::Host(host.clone()));
        ar.args = ToolArgs {
            host: Some(host.name().to_string()),
            port: Some(host.port()),
            ..ToolArgs::default()
        };
        let mut data = attempt.data.clone();
        if let (Some(a), Some(c)) = (host.address(), host.class()) {
            data["address"] = serde_json::json!(a.to_string());
            data["class"] = serde_json::json!(c.as_str());
        }
        ar.data = Some(data);
        ar
    }

    /// Whether the session's sandbox has a network (`--network proxy`).
    pub fn has_network(&self) -> bool {
        match self.sandbox.network {
            stele_policy::Network::ViaProxy => true,
            stele_policy::Network::Disabled => false,
        }
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
