//! Canonical network endpoints: the one host canonicalisation that the
//! egress proxy (through the runtime's mediator), MCP servers' proxies and
//! `stele policy explain` all use.
//!
//! A host is either an IP address — any spelling of one: dotted, short
//! (`127.1`), decimal, octal or hexadecimal (`2130706433`, `0x7f.1`),
//! full-width digits, a trailing dot, IPv6 with an embedded, mapped or
//! compatible IPv4 address — written in its canonical form
//! ([`canonical_ip`]), or a DNS name, lowercase ASCII after IDNA (UTS 46,
//! STD3 rules) without a trailing dot. Percent-encoding and IPv6 zone ids
//! are refused: they have no place in an authority and no single meaning.
//!
//! The address of an IP literal is known at once; a name's is known after
//! it is resolved ([`CanonicalHost::resolved`]), once, by the enforcement
//! point, which then connects to exactly that address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::address::{canonical_ip, classify, ends_in_a_number, parse_ipv4_number_form};
use super::{reject_controls, AddressClass};
use crate::error::CanonError;

/// A canonical network endpoint: lowercase scheme, canonical host (ASCII
/// name or canonical IP literal), an explicit port, and — once known — the
/// address it will be connected at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalHost {
    scheme: String,
    name: String,
    port: u16,
    address: Option<IpAddr>,
}

impl CanonicalHost {
    /// Canonicalise a scheme, host and optional port. Without a port, the
    /// scheme's default is used (http/ws 80, https/wss 443, ssh 22). The host
    /// may be written with or without IPv6 brackets.
    pub fn new(scheme: &str, host: &str, port: Option<u16>) -> Result<Self, CanonError> {
        let scheme = canonical_scheme(scheme)?;
        let canonical = canonical_host(host)?;
        let port = match port {
            Some(0) => return Err(CanonError::InvalidPort(host.to_owned())),
            Some(p) => p,
            None => {
                default_port(&scheme).ok_or_else(|| CanonError::UnknownScheme(scheme.clone()))?
            }
        };
        let (name, address) = match canonical {
            Host::Ip(ip) => (ip.to_string(), Some(ip)),
            Host::Name(n) => (n, None),
        };
        Ok(Self {
            scheme,
            name,
            port,
            address,
        })
    }

    /// Parse `scheme://host[:port]` (an optional trailing `/` is accepted;
    /// paths, user info and queries are not: they are not part of an endpoint).
    pub fn parse(endpoint: &str) -> Result<Self, CanonError> {
        let bad = || CanonError::InvalidHost(endpoint.to_owned());
        reject_controls("host", endpoint)?;
        let (scheme, rest) = endpoint.split_once("://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (inner, tail) = after.split_once(']').ok_or_else(bad)?;
            let port = match tail {
                "" => None,
                t => Some(t.strip_prefix(':').ok_or_else(bad)?),
            };
            // Keep the brackets: only an IPv6 literal may be in them.
            let close = inner.len() + 2;
            (rest.get(..close).ok_or_else(bad)?, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| CanonError::InvalidPort(endpoint.to_owned()))?,
            ),
            None => None,
        };
        Self::new(scheme, host, port)
    }

    /// This host (a name) as resolved to `address`: the address it will be
    /// connected at, canonicalised. An IP literal already has its address;
    /// "resolving" it to another one is refused.
    pub fn resolved(&self, address: IpAddr) -> Result<Self, CanonError> {
        let address = canonical_ip(address);
        match self.address {
            Some(a) if a != address => Err(CanonError::AddressMismatch {
                host: self.name.clone(),
                address: address.to_string(),
            }),
            _ => Ok(Self {
                address: Some(address),
                ..self.clone()
            }),
        }
    }

    /// Lowercase scheme (`https`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    /// ASCII host name or canonical IP literal (IPv6 without brackets).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Whether the host is a DNS name (not an IP literal).
    pub fn is_name(&self) -> bool {
        self.name.parse::<IpAddr>().is_err()
    }
    /// The address the host will be connected at: an IP literal's own, or a
    /// name's once [`CanonicalHost::resolved`]; `None` for an unresolved name.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }
    /// The class of [`CanonicalHost::address`].
    pub fn class(&self) -> Option<AddressClass> {
        self.address.map(classify)
    }
}

impl fmt::Display for CanonicalHost {
    /// `scheme://name:port`, with brackets around IPv6 literals; this is
    /// the `Host` entity id policies see (the address is an attribute).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.name, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.name, self.port)
        }
    }
}

fn canonical_scheme(scheme: &str) -> Result<String, CanonError> {
    let s = scheme.to_ascii_lowercase();
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return Err(CanonError::InvalidHost(scheme.to_owned()));
    }
    Ok(s)
}

/// Default port for a scheme, if stele knows one.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ssh" => Some(22),
        _ => None,
    }
}

/// A canonical host: an address, or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Canonicalise a host name or IP literal to its one canonical text: a
/// canonical IP address (IPv4-mapped and -compatible IPv6 as IPv4; every
/// numeric IPv4 spelling as a dotted quad) or a lowercase ASCII name (IDNA,
/// no trailing dot). Percent-encoded hosts, IPv6 zone ids and numeric forms
/// that are no address (`1.2.3.4.5`, `256.1`) are refused.
pub fn canonical_host_name(host: &str) -> Result<String, CanonError> {
    Ok(match canonical_host(host)? {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(n) => n,
    })
}

fn canonical_host(host: &str) -> Result<Host, CanonError> {
    if host.is_empty() {
        return Err(CanonError::Empty("host"));
    }
    reject_controls("host", host)?;
    let bad = || CanonError::InvalidHost(host.to_owned());
    if host.contains('%') {
        // Percent-encoding (and `%zone` on IPv6) would give one host two
        // spellings, or a meaning only on one machine.
        return Err(bad());
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(inner) = bracketed {
        let v6 = inner.parse::<Ipv6Addr>().map_err(|_| bad())?;
        return Ok(Host::Ip(canonical_ip(IpAddr::V6(v6))));
    }
    if host.contains(':') {
        let v6 = host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        return Ok(Host::Ip(canonical_ip(IpAddr::V6(v6))));
    }
    // IDNA first (it also maps full-width digits and dots to ASCII), then
    // the WHATWG rule: a host ending in a number is an IPv4 address or
    // nothing.
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let ascii = idna::domain_to_ascii_strict(trimmed).map_err(|_| bad())?;
    if ascii.is_empty() {
        return Err(bad());
    }
    if ends_in_a_number(&ascii) {
        return parse_ipv4_number_form(&ascii)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or_else(bad);
    }
    if ascii.ends_with('.') {
        return Err(bad());
    }
    Ok(Host::Name(ascii))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(h: &str) -> Result<String, CanonError> {
        canonical_host_name(h)
    }

    #[test]
    fn every_spelling_of_loopback_is_one_address() {
        for spelling in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "017700000001",
            "127.0.0.1.",
            "127.000.000.001",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::FFFF:7F00:1]",
            "::ffff:127.0.0.1",
            "[::127.0.0.1]",
            "[0:0:0:0:0:ffff:7f00:1]",
            "１２７．０．０．１",
        ] {
            assert_eq!(canon(spelling).as_deref(), Ok("127.0.0.1"), "{spelling}");
        }
        assert_eq!(canon("[::1]").as_deref(), Ok("::1"));
        assert_eq!(canon("[0:0::1]").as_deref(), Ok("::1"));
        assert_eq!(canon("0.0.0.0").as_deref(), Ok("0.0.0.0"));
        assert_eq!(canon("0").as_deref(), Ok("0.0.0.0"));
        assert_eq!(canon("[::]").as_deref(), Ok("::"));
    }

    #[test]
    fn names() {
        assert_eq!(canon("Example.COM.").as_deref(), Ok("example.com"));
        assert_eq!(
            canon("Bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            canon("BÜCHER.example.").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(canon("LOCALHOST").as_deref(), Ok("localhost"));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            ".",
            "a..b",
            "a.com..",
            "-a.com",
            "exa mple.com",
            "a_b.com",
            "1.2.3.4.5",
            "256.0.0.1",
            "a.09",
            "foo.0x",
            "%31%32%37.0.0.1",
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "fe80::1%eth0",
            "[127.0.0.1]",
            "[::1",
            "x\r\n.com",
            "a\0b",
        ] {
            assert!(canon(bad).is_err(), "{bad:?} -> {:?}", canon(bad));
        }
    }

    #[test]
    fn endpoints_and_addresses() {
        let h = CanonicalHost::parse("HTTPS://Bücher.Example.").unwrap();
        assert_eq!(h.to_string(), "https://xn--bcher-kva.example:443");
        assert!(h.is_name());
        assert_eq!(h.address(), None);
        let r = h.resolved("::ffff:10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(r.address(), "10.0.0.5".parse().ok());
        assert_eq!(r.class(), Some(AddressClass::Private));
        assert_eq!(r.to_string(), h.to_string());

        let h = CanonicalHost::parse("http://[::FFFF:7f00:1]:8080").unwrap();
        assert_eq!(h.name(), "127.0.0.1");
        assert_eq!(h.to_string(), "http://127.0.0.1:8080");
        assert_eq!(h.class(), Some(AddressClass::Loopback));
        assert!(!h.is_name());
        assert!(h.resolved("10.0.0.1".parse().unwrap()).is_err());
        assert!(h.resolved("::ffff:127.0.0.1".parse().unwrap()).is_ok());

        let h = CanonicalHost::parse("https://[2001:DB8::1]").unwrap();
        assert_eq!(h.to_string(), "https://[2001:db8::1]:443");
        assert_eq!(
            CanonicalHost::new("ssh", "Git.Example", None)
                .unwrap()
                .port(),
            22
        );
        assert_eq!(
            CanonicalHost::parse("https://0x7f.1").unwrap().to_string(),
            "https://127.0.0.1:443"
        );
        assert!(CanonicalHost::parse("gopher://x.example").is_err());
        assert!(CanonicalHost::parse("https://u@x.example").is_err());
        assert!(CanonicalHost::parse("https://x.example:0").is_err());
        assert!(CanonicalHost::parse("https://x.example/path").is_err());
    }
}
