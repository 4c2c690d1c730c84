//! Source addresses from an `external:` prefix (`external.rotation: random | user`, our
//! extension): an address of the prefix for a key, the keys (random per session, or a stable
//! hash of the user), and IP_FREEBIND on the outgoing socket so any of them can be bound.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// FNV-1a 64: the same user gets the same address in every process and after restarts.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

thread_local! {
    static STATE: RandomState = RandomState::new();
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// A fresh key per call (not for secrets: it spreads sessions over a prefix).
pub fn random() -> u64 {
    let n = COUNTER.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    STATE.with(|s| {
        let mut h = s.build_hasher();
        h.write_u64(n);
        h.finish()
    })
}

/// The address of `net` that `key` picks: the host part is `key` folded into the prefix's
/// host bits, never all zeros (nor all ones for IPv4: the subnet and broadcast addresses).
pub fn address_in(net: &IpNet, key: u64) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host_bits = 32 - u32::from(n.prefix_len());
            let base = u32::from(n.network());
            if host_bits == 0 {
                return IpAddr::V4(n.network());
            }
            let span = if host_bits >= 32 {
                u64::from(u32::MAX)
            } else {
                (1u64 << host_bits) - 1
            };
            // 1 ..= span-1 when there is room, else 1.
            let room = span.saturating_sub(1).max(1);
            let host = (key % room + 1) as u32;
            IpAddr::V4(Ipv4Addr::from(base | host))
        }
        IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let base = u128::from(n.network());
            if host_bits == 0 {
                return IpAddr::V6(n.network());
            }
            let k = u128::from(key) | (u128::from(key.rotate_left(17)) << 64);
            let mask = if host_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let mut host = k & mask;
            if host == 0 {
                host = 1;
            }
            IpAddr::V6(Ipv6Addr::from(base | host))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_their_prefix() {
        let v6: IpNet = "2001:db8:1::/64".parse().unwrap();
        let v4: IpNet = "10.9.8.0/24".parse().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let k = random();
            let a = address_in(&v6, k);
            assert!(v6.contains(&a) && a != v6.network());
            seen.insert(a);
            let b = address_in(&v4, k);
            assert!(v4.contains(&b), "{b}");
            assert!(b != IpAddr::V4("10.9.8.0".parse().unwrap()));
            assert!(b != IpAddr::V4("10.9.8.255".parse().unwrap()));
        }
        assert!(seen.len() > 990, "random keys spread: {}", seen.len());
        assert_eq!(stable_hash(b"alice"), stable_hash(b"alice"));
        assert_ne!(
            address_in(&v6, stable_hash(b"alice")),
            address_in(&v6, stable_hash(b"bob"))
        );
        let one: IpNet = "192.0.2.7/32".parse().unwrap();
        assert_eq!(
            address_in(&one, 5),
            IpAddr::V4("192.0.2.7".parse().unwrap())
        );
    }
}
