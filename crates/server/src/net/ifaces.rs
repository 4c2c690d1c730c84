//! Interface names → addresses (`internal: eth0`, rule `to: lo`), read once per (re)load as
//! Dante does.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// A snapshot of the host's interfaces.
#[derive(Debug, Default, Clone)]
pub struct Interfaces {
    nets: HashMap<String, Vec<IpNet>>,
}

impl Interfaces {
    pub fn read() -> Self {
        let mut nets: HashMap<String, Vec<IpNet>> = HashMap::new();
        if let Ok(list) = nix::ifaddrs::getifaddrs() {
            for ifa in list {
                let Some(addr) = ifa.address else { continue };
                let ip: Option<IpAddr> = if let Some(v4) = addr.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                };
                let Some(ip) = ip else { continue };
                let prefix = ifa
                    .netmask
                    .and_then(|m| {
                        if let Some(m4) = m.as_sockaddr_in() {
                            Some(u32::from(m4.ip()).count_ones() as u8)
                        } else {
                            m.as_sockaddr_in6()
                                .map(|m6| u128::from(m6.ip()).count_ones() as u8)
                        }
                    })
                    .unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
                if let Ok(net) = IpNet::new(ip, prefix) {
                    nets.entry(ifa.interface_name).or_default().push(net);
                }
            }
        }
        Interfaces { nets }
    }

    /// The networks of interface `name`, or None when no such interface exists.
    pub fn nets(&self, name: &str) -> Option<Vec<IpNet>> {
        self.nets.get(name).cloned()
    }

    /// The addresses of interface `name`.
    pub fn addrs(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.nets
            .get(name)
            .map(|v| v.iter().map(|n| n.addr()).collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_found() {
        let i = super::Interfaces::read();
        let lo = i.addrs("lo").unwrap_or_default();
        assert!(lo.iter().any(|a| a.is_loopback()), "{lo:?}");
        assert!(i.nets("no-such-if0").is_none());
    }
}
