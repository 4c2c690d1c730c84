//! Socket options of the configuration (`internal.tcp.tcp_nodelay: 1`, ...) set on our sockets
//! at Dante's moments: the global `internal.` ones on the listening sockets (accepted sockets
//! inherit them) and the client-side UDP sockets, the global `external.` ones on every outgoing
//! socket before bind or connect; a rule's `internal.` ones on the client's socket once the
//! rule matched, its `external.` ones on the target-side sockets of its sessions. An option the
//! kernel refuses is logged once per process and option, not fatal, as in Dante.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::os::fd::BorrowedFd;

use rsockd_config::sockopts::{SockLevel, ValueKind};
use rsockd_config::{OptName, Side, SockOpt};
use rsockd_sys::sockopt as so;

use crate::log;

/// The kind of socket options are set on: tcp-level options go to stream sockets only,
/// udp-level ones to datagram sockets only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
}

thread_local! {
    /// Options whose refusal this process has logged.
    static REFUSED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// The kernel's (level, option) for a named option on a socket of that family; None when the
/// option does not apply to the family (an `ipv6_` option on an IPv4 socket).
fn named(level: SockLevel, name: &str, v6: bool) -> Option<(libc::c_int, libc::c_int)> {
    use libc::*;
    let ip6 = |o| Some((IPPROTO_IPV6, o));
    let ip4 = |o| Some((IPPROTO_IP, o));
    Some(match (level, name) {
        (SockLevel::Socket, n) => (
            SOL_SOCKET,
            match n {
                "so_broadcast" => SO_BROADCAST,
                "so_debug" => SO_DEBUG,
                "so_dontroute" => SO_DONTROUTE,
                "so_keepalive" => SO_KEEPALIVE,
                "so_linger" => SO_LINGER,
                "so_oobinline" => SO_OOBINLINE,
                "so_priority" => SO_PRIORITY,
                "so_rcvbuf" => SO_RCVBUF,
                "so_rcvbufforce" => SO_RCVBUFFORCE,
                "so_rcvlowat" => SO_RCVLOWAT,
                "so_rcvtimeo" => SO_RCVTIMEO,
                "so_sndbuf" => SO_SNDBUF,
                "so_sndbufforce" => SO_SNDBUFFORCE,
                "so_sndlowat" => SO_SNDLOWAT,
                "so_sndtimeo" => SO_SNDTIMEO,
                "so_timestamp" => SO_TIMESTAMP,
                _ => return None,
            },
        ),
        // IPv4 names on an IPv6 socket mean their IPv6 counterparts (the TOS byte is the
        // traffic class, the TTL the hop limit), so one line covers both families.
        (SockLevel::Ip, "ip_tos") if v6 => return ip6(IPV6_TCLASS),
        (SockLevel::Ip, "ip_ttl") if v6 => return ip6(IPV6_UNICAST_HOPS),
        (SockLevel::Ip, "ip_mtu_discover") if v6 => return ip6(IPV6_MTU_DISCOVER),
        (SockLevel::Ip, "ip_minttl") if v6 => return ip6(IPV6_MINHOPCOUNT),
        (SockLevel::Ip, "ip_freebind") => return ip4(IP_FREEBIND),
        (SockLevel::Ip, "ip_tos") => return ip4(IP_TOS),
        (SockLevel::Ip, "ip_ttl") => return ip4(IP_TTL),
        (SockLevel::Ip, "ip_mtu_discover") => return ip4(IP_MTU_DISCOVER),
        (SockLevel::Ip, "ip_minttl") => return ip4(IP_MINTTL),
        (SockLevel::Ip, n) if n.starts_with("ipv6_") => {
            if !v6 {
                return None;
            }
            return ipv6_number(n).and_then(ip6);
        }
        (SockLevel::Tcp, n) => (
            IPPROTO_TCP,
            match n {
                "tcp_cork" => TCP_CORK,
                "tcp_keepcnt" => TCP_KEEPCNT,
                "tcp_keepidle" => TCP_KEEPIDLE,
                "tcp_keepintvl" => TCP_KEEPINTVL,
                "tcp_linger2" => TCP_LINGER2,
                "tcp_maxseg" => TCP_MAXSEG,
                "tcp_md5sig" => TCP_MD5SIG,
                "tcp_nodelay" => TCP_NODELAY,
                "tcp_syncnt" => TCP_SYNCNT,
                "tcp_window_clamp" => TCP_WINDOW_CLAMP,
                _ => return None,
            },
        ),
        (SockLevel::Udp, "udp_cork") => (IPPROTO_UDP, UDP_CORK),
        _ => return None,
    })
}

/// Linux's number of an IPv6-level option (<linux/in6.h>): Dante's Linux set.
fn ipv6_number(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "ipv6_addrform" => 1,
        "ipv6_2292pktinfo" => 2,
        "ipv6_2292hopopts" => 3,
        "ipv6_2292dstopts" => 4,
        "ipv6_2292rthdr" => 5,
        "ipv6_2292pktoptions" => 6,
        "ipv6_checksum" => 7,
        "ipv6_2292hoplimit" => 8,
        "ipv6_nexthop" => 9,
        "ipv6_authhdr" => 10,
        "ipv6_unicast_hops" => 16,
        "ipv6_join_group" => 20,
        "ipv6_leave_group" => 21,
        "ipv6_router_alert" => 22,
        "ipv6_mtu_discover" => 23,
        "ipv6_mtu" => 24,
        "ipv6_v6only" => 26,
        "ipv6_join_anycast" => 27,
        "ipv6_leave_anycast" => 28,
        "ipv6_ipsec_policy" => 34,
        "ipv6_xfrm_policy" => 35,
        "ipv6_pktinfo" => 50,
        "ipv6_hoplimit" => 52,
        "ipv6_hopopts" => 54,
        "ipv6_rthdrdstopts" => 55,
        "ipv6_rthdr" => 57,
        "ipv6_dstopts" => 59,
        "ipv6_pathmtu" => 61,
        "ipv6_dontfrag" => 62,
        "ipv6_tclass" => 67,
        "ipv6_autoflowlabel" => 70,
        "ipv6_addr_preferences" => 72,
        "ipv6_minhopcount" => 73,
        "ipv6_origdstaddr" => 74,
        "ipv6_transparent" => 75,
        _ => return None,
    })
}

/// The kernel's level for a numbered option.
fn level_number(level: SockLevel, v6: bool) -> libc::c_int {
    match level {
        SockLevel::Socket => libc::SOL_SOCKET,
        SockLevel::Ip if v6 => libc::IPPROTO_IPV6,
        SockLevel::Ip => libc::IPPROTO_IP,
        SockLevel::Tcp => libc::IPPROTO_TCP,
        SockLevel::Udp => libc::IPPROTO_UDP,
    }
}

fn applies(level: SockLevel, kind: Kind) -> bool {
    match level {
        SockLevel::Tcp => kind == Kind::Tcp,
        SockLevel::Udp => kind == Kind::Udp,
        SockLevel::Socket | SockLevel::Ip => true,
    }
}

fn set(fd: BorrowedFd<'_>, o: &SockOpt, v6: bool) -> Option<io::Result<()>> {
    let (level, name) = match &o.option {
        OptName::Named(n) => named(o.level, n, v6)?,
        OptName::Number(n) => (level_number(o.level, v6), *n),
    };
    let v = libc::c_int::try_from(o.value).unwrap_or(libc::c_int::MAX);
    Some(match o.kind() {
        ValueKind::Linger => so::set_linger_secs(fd, v),
        ValueKind::Seconds => so::set_timeval(fd, name, v),
        ValueKind::Int | ValueKind::Tos => so::set_int(fd, level, name, v),
    })
}

/// Sets the options of `opts` for `side` that apply to this socket; refusals are logged once.
pub fn apply(fd: BorrowedFd<'_>, opts: &[SockOpt], side: Side, kind: Kind, v6: bool) {
    for o in opts
        .iter()
        .filter(|o| o.side == side && applies(o.level, kind))
    {
        if let Some(Err(e)) = set(fd, o, v6) {
            let key = format!("{}={}", o.key(), o.value);
            let first = REFUSED.with(|r| r.borrow_mut().insert(key));
            if first {
                log::warning(&format!(
                    "setsockopt(): could not set socket option {} to {}: {e} \
                     (logged once by this process)",
                    o.key(),
                    o.value
                ));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn opt(side: Side, level: SockLevel, name: &str, value: u32) -> SockOpt {
        SockOpt {
            side,
            level,
            option: OptName::Named(name.into()),
            value,
        }
    }

    #[test]
    fn sets_the_options_of_the_side_and_kind() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let opts = [
            opt(Side::Internal, SockLevel::Tcp, "tcp_nodelay", 1),
            opt(Side::Internal, SockLevel::Ip, "ip_tos", 0x28),
            opt(Side::Internal, SockLevel::Udp, "udp_cork", 1),
            opt(Side::External, SockLevel::Socket, "so_keepalive", 1),
            opt(Side::Internal, SockLevel::Socket, "so_linger", 5),
        ];
        apply(s.as_fd(), &opts, Side::Internal, Kind::Tcp, false);
        assert!(s.tcp_nodelay().unwrap());
        assert_eq!(s.tos_v4().unwrap(), 0x28);
        assert!(!s.keepalive().unwrap());
        assert_eq!(s.linger().unwrap(), Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn ipv4_names_mean_their_ipv6_counterparts() {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        let opts = [
            opt(Side::External, SockLevel::Ip, "ip_tos", 0x10),
            opt(Side::External, SockLevel::Ip, "ip_ttl", 7),
            opt(Side::External, SockLevel::Ip, "ipv6_v6only", 1),
            opt(Side::External, SockLevel::Ip, "ipv6_join_group", 1),
        ];
        apply(s.as_fd(), &opts, Side::External, Kind::Udp, true);
        assert_eq!(s.tclass_v6().unwrap(), 0x10);
        assert_eq!(s.unicast_hops_v6().unwrap(), 7);
        assert!(s.only_v6().unwrap());
    }

    #[test]
    fn a_refused_option_is_not_fatal() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let opts = [
            opt(Side::Internal, SockLevel::Tcp, "tcp_md5sig", 1),
            opt(Side::Internal, SockLevel::Tcp, "tcp_nodelay", 1),
        ];
        apply(s.as_fd(), &opts, Side::Internal, Kind::Tcp, false);
        assert!(s.tcp_nodelay().unwrap());
    }
}
