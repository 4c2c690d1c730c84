//! `srchost: nodnsunknown nodnsmismatch`: Dante's DNS checks of a client's address, made at
//! accept once its client rule has passed it. Lookups go through the bounded resolver pool;
//! verdicts are kept for a minute per address, so a busy client costs one lookup a minute.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rsockd_config::Srchost;

use super::resolve;
use crate::log;

/// How long a verdict is kept.
const KEEP: Duration = Duration::from_secs(60);
/// Addresses remembered at most; when full, the table starts afresh.
const ENTRIES: usize = 4096;

/// What the DNS says about an address: its reverse-mapped name and whether that name
/// resolves back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lookup {
    name: Option<String>,
    back: bool,
}

/// One process's remembered lookups.
#[derive(Default)]
pub struct Checker {
    seen: RefCell<HashMap<IpAddr, (Instant, Lookup)>>,
}

impl Checker {
    /// None when `peer` may go on; else Dante's reason for refusing it.
    pub async fn refusal(&self, rules: Srchost, peer: &SocketAddr) -> Option<String> {
        if !rules.any_dns() {
            return None;
        }
        let ip = peer.ip().to_canonical();
        let l = self.lookup(ip).await;
        verdict(rules, peer, &l)
    }

    async fn lookup(&self, ip: IpAddr) -> Lookup {
        let now = Instant::now();
        if let Some((at, l)) = self.seen.borrow().get(&ip) {
            if now.duration_since(*at) < KEEP {
                return l.clone();
            }
        }
        let name = resolve::reverse(ip).await;
        let back = match &name {
            Some(n) => resolve::resolves_back(n, ip).await,
            None => false,
        };
        match &name {
            Some(n) if log::debugging(1) => log::debug(&format!(
                "srchost_isok(): {} has a dns entry: {}",
                ip,
                log::escape(n.as_bytes())
            )),
            None if log::debugging(1) => {
                log::debug(&format!("srchost_isok(): {ip} has no dns entry"))
            }
            _ => {}
        }
        let l = Lookup { name, back };
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= ENTRIES {
            seen.clear();
        }
        seen.insert(ip, (now, l.clone()));
        l
    }
}

/// Dante's srchost_isok(): an unknown address is refused under `nodnsunknown`, a name that
/// does not map back under `nodnsmismatch`.
fn verdict(rules: Srchost, peer: &SocketAddr, l: &Lookup) -> Option<String> {
    match &l.name {
        None if rules.nodnsunknown => Some(format!(
            "no dns entry found for srchost {}",
            log::addr(peer)
        )),
        Some(n) if rules.nodnsmismatch && !l.back => Some(format!(
            "DNS IP/hostname mismatch.  {} does not match reversemapped addresses for hostname \
             \"{}\"",
            peer.ip().to_canonical(),
            log::escape(n.as_bytes())
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], 36170))
    }

    #[test]
    fn dantes_reasons() {
        let both = Srchost {
            nodnsmismatch: true,
            nodnsunknown: true,
            checkreplyauth: false,
        };
        let unknown = Lookup {
            name: None,
            back: false,
        };
        assert_eq!(
            verdict(both, &peer(), &unknown).as_deref(),
            Some("no dns entry found for srchost 127.0.0.2.36170")
        );
        let only_mismatch = Srchost {
            nodnsunknown: false,
            ..both
        };
        assert_eq!(verdict(only_mismatch, &peer(), &unknown), None);
        let wrong = Lookup {
            name: Some("mismatch.test".into()),
            back: false,
        };
        assert_eq!(
            verdict(both, &peer(), &wrong).as_deref(),
            Some(
                "DNS IP/hostname mismatch.  127.0.0.2 does not match reversemapped addresses for \
                 hostname \"mismatch.test\""
            )
        );
        let only_unknown = Srchost {
            nodnsmismatch: false,
            ..both
        };
        assert_eq!(verdict(only_unknown, &peer(), &wrong), None);
        let good = Lookup {
            name: Some("localhost".into()),
            back: true,
        };
        assert_eq!(verdict(both, &peer(), &good), None);
    }
}
