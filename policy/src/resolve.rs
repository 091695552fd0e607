//! Resolving a host name once, for a connection decision.
//!
//! `net.connect` to a DNS name is decided in two steps, by every
//! enforcement point and by `stele policy explain` alike:
//!
//! 1. decide the request by name alone (`resource has address` is false):
//!    if that is a Deny, the name is never resolved — a DNS query would
//!    itself carry the name (and anything encoded in it) off the machine;
//! 2. otherwise resolve the name once ([`resolve_host`]), take the first
//!    address the resolver returns, and decide again with that address and
//!    its class. That decision is the one logged and acted on, and the
//!    connection goes to exactly that address: nothing resolves the name a
//!    second time, so DNS cannot swap the destination (rebinding).
//!
//! An IP literal needs no step 1: its address is known.

use std::net::{IpAddr, ToSocketAddrs};

use crate::canonical::CanonicalHost;

/// Why a name could not be resolved to an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The resolver failed (no such name, no answer, no resolver).
    #[error("cannot resolve {name}: {message}")]
    Lookup {
        /// The name.
        name: String,
        /// The resolver's message.
        message: String,
    },
    /// The resolver answered with no address.
    #[error("{0} has no address")]
    NoAddress(String),
}

/// Turns a host name into addresses.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `name` (an ASCII, canonical DNS name), in the order
    /// the resolver prefers them.
    fn resolve(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The host's resolver (`getaddrinfo`: `/etc/hosts`, then DNS, as
/// configured in `/etc/nsswitch.conf`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        (name, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| ResolveError::Lookup {
                name: name.to_owned(),
                message: e.to_string(),
            })
    }
}

/// A name resolved for one connection: the host with its decided address,
/// and everything the resolver returned (for the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The host with [`CanonicalHost::address`] set: decide and connect with this.
    pub host: CanonicalHost,
    /// Every address the resolver returned, canonicalised, in its order.
    pub all: Vec<IpAddr>,
}

/// Resolve `host` (a name) once and pick the address to decide on and
/// connect to: the resolver's first. An IP literal resolves to itself
/// without asking the resolver.
pub fn resolve_host(
    host: &CanonicalHost,
    resolver: &dyn Resolve,
) -> Result<Resolution, ResolveError> {
    if let Some(address) = host.address() {
        return Ok(Resolution {
            host: host.clone(),
            all: vec![address],
        });
    }
    let all: Vec<IpAddr> = resolver
        .resolve(host.name(), host.port())?
        .into_iter()
        .map(crate::canonical::canonical_ip)
        .collect();
    let first = *all
        .first()
        .ok_or_else(|| ResolveError::NoAddress(host.name().to_owned()))?;
    let host = host.resolved(first).map_err(|e| ResolveError::Lookup {
        name: host.name().to_owned(),
        message: e.to_string(),
    })?;
    Ok(Resolution { host, all })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fixed table, for deterministic tests of the selection rule.
    #[derive(Debug)]
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Table {
        fn resolve(&self, name: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::Lookup {
                    name: name.to_owned(),
                    message: "NXDOMAIN".into(),
                })
        }
    }

    #[test]
    fn first_address_canonicalised_and_literals_untouched() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t = Table(HashMap::from([
            (
                "mixed.example",
                vec![ip("::ffff:10.0.0.7"), ip("93.184.216.34")],
            ),
            ("empty.example", vec![]),
        ]));
        let h = CanonicalHost::new("https", "Mixed.Example", None).unwrap();
        let r = resolve_host(&h, &t).unwrap();
        assert_eq!(r.host.address(), Some(ip("10.0.0.7")));
        assert_eq!(r.all, vec![ip("10.0.0.7"), ip("93.184.216.34")]);
        let lit = CanonicalHost::new("https", "[::ffff:7f00:1]", None).unwrap();
        assert_eq!(resolve_host(&lit, &t).unwrap().all, vec![ip("127.0.0.1")]);
        let e = CanonicalHost::new("https", "empty.example", None).unwrap();
        assert!(matches!(
            resolve_host(&e, &t),
            Err(ResolveError::NoAddress(_))
        ));
        let n = CanonicalHost::new("https", "nx.example", None).unwrap();
        assert!(matches!(
            resolve_host(&n, &t),
            Err(ResolveError::Lookup { .. })
        ));
    }

    #[test]
    fn the_system_resolver_knows_localhost() {
        let h = CanonicalHost::new("http", "localhost", Some(80)).unwrap();
        let r = resolve_host(&h, &SystemResolver).unwrap();
        assert_eq!(
            r.host.class(),
            Some(crate::canonical::AddressClass::Loopback)
        );
    }
}
