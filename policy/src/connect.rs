//! Deciding a connection: the steps every enforcement point (the runtime's
//! gate behind the egress proxies) and `stele policy explain` take, in one
//! function so they cannot drift apart. See [`crate::resolve`] for why a
//! name is decided by name before it is resolved.

use crate::bundle::Bundle;
use crate::decision::{Decision, Effect};
use crate::error::PolicyError;
use crate::request::{Request, Resource};
use crate::resolve::{resolve_host, Resolution, Resolve, ResolveError};

/// Where deciding a `net.connect` request got to before the final decision.
#[derive(Debug, Clone)]
pub enum ConnectStep {
    /// Decide `request`, whose host now has its address (an IP literal, or
    /// a name resolved once); connect to exactly `resolution.host.address()`.
    Decide {
        /// The request with the resolved host.
        request: Box<Request>,
        /// The address chosen and all the resolver returned.
        resolution: Resolution,
        /// The decision by name alone, for a name (`None` for a literal).
        by_name: Option<Box<Decision>>,
    },
    /// Refused by name alone: the name was never resolved.
    RefusedByName(Box<Decision>),
    /// Not refused by name, but the name does not resolve.
    Unresolvable {
        /// The decision by name alone.
        by_name: Box<Decision>,
        /// Why it did not resolve.
        error: ResolveError,
    },
}

impl Bundle {
    /// Take a `net.connect` request up to its final decision: an IP literal
    /// (or a host that already has its address) goes straight to
    /// [`ConnectStep::Decide`]; a name is decided by name alone, and unless
    /// that is a Deny, resolved once with `resolver`. A request whose
    /// resource is not a host is refused as invalid.
    pub fn connect_step(
        &self,
        request: &Request,
        resolver: &dyn Resolve,
    ) -> Result<ConnectStep, PolicyError> {
        let Resource::Host(host) = request.resource() else {
            return Err(PolicyError::Request(format!(
                "a connection's resource is a Host, not a {}",
                request.resource().type_name()
            )));
        };
        if host.address().is_some() {
            return Ok(ConnectStep::Decide {
                request: Box::new(request.clone()),
                resolution: Resolution {
                    host: host.clone(),
                    all: host.address().into_iter().collect(),
                },
                by_name: None,
            });
        }
        let by_name = Box::new(self.decide(request));
        if by_name.effect == Effect::Deny {
            return Ok(ConnectStep::RefusedByName(by_name));
        }
        Ok(match resolve_host(host, resolver) {
            Ok(resolution) => {
                let mut resolved = request.clone();
                resolved.resource = Resource::Host(resolution.host.clone());
                ConnectStep::Decide {
                    request: Box::new(resolved),
                    resolution,
                    by_name: Some(by_name),
                }
            }
            Err(error) => ConnectStep::Unresolvable { by_name, error },
        })
    }
}
