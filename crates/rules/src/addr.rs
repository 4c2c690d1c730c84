//! Compiled rule addresses and how they match an IP, a port and host names.

use ipnet::IpNet;
use rsockd_config::PortMatch;
use std::net::IpAddr;

/// A rule address after interface names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddrM {
    /// `0/0`.
    Any,
    /// An IP network, or the networks of an interface.
    Nets(Vec<IpNet>),
    /// A host name: lower-case, no trailing dot.
    Host(String),
    /// `.domain`: the domain itself and every name under it (lower-case, no dots around).
    Domain(String),
}

impl AddrM {
    /// True for forms that need names of the address being checked.
    pub(crate) fn wants_names(&self) -> bool {
        matches!(self, AddrM::Host(_) | AddrM::Domain(_))
    }
}

/// A compiled `from:`/`to:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side {
    pub addr: AddrM,
    pub port: PortMatch,
}

/// An IPv4-mapped IPv6 address is the IPv4 client of a dual-stack socket: compare it as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Lower-case, without a trailing dot (`Example.COM.` = `example.com`).
pub(crate) fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn name_matches(addr: &AddrM, name: &str) -> bool {
    let n = normalize_name(name);
    match addr {
        AddrM::Host(h) => n == *h,
        AddrM::Domain(d) => {
            n == *d
                || n.strip_suffix(d.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        }
        AddrM::Any | AddrM::Nets(_) => false,
    }
}

impl Side {
    /// Whether an endpoint matches: `ip` (if known), `port`, and the names it is known by
    /// (a requested host name and/or reverse-resolved names).
    pub(crate) fn matches(
        &self,
        ip: Option<IpAddr>,
        port: u16,
        name: Option<&str>,
        names: &[String],
    ) -> bool {
        if !self.port.matches(port) {
            return false;
        }
        match &self.addr {
            AddrM::Any => true,
            AddrM::Nets(nets) => ip
                .map(canonical)
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            a => {
                name.is_some_and(|n| name_matches(a, n)) || names.iter().any(|n| name_matches(a, n))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_suffix_needs_a_dot_boundary() {
        let d = AddrM::Domain("example.com".into());
        assert!(name_matches(&d, "example.com"));
        assert!(name_matches(&d, "WWW.Example.com."));
        assert!(name_matches(&d, "a.b.example.com"));
        assert!(!name_matches(&d, "badexample.com"));
        assert!(!name_matches(&d, "example.com.evil"));
        assert!(!name_matches(&d, "com"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let ip: IpAddr = "::ffff:10.1.2.3".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(canonical(ip), IpAddr::from([10, 1, 2, 3]));
    }
}
