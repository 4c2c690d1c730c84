//! The socket options `<side>.<level>.<option>[.<subfield>]: VALUE` names (Dante 1.4's Linux
//! set, dante.md §1.3): which exist at which level and what their value means. Pure data;
//! the server maps the names to the kernel's numbers.

/// The protocol level an option is set at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockLevel {
    Socket,
    Ip,
    Tcp,
    Udp,
}

impl SockLevel {
    pub fn name(self) -> &'static str {
        match self {
            SockLevel::Socket => "socket",
            SockLevel::Ip => "ip",
            SockLevel::Tcp => "tcp",
            SockLevel::Udp => "udp",
        }
    }

    pub fn from_name(s: &str) -> Option<SockLevel> {
        Some(match s {
            "socket" => SockLevel::Socket,
            "ip" => SockLevel::Ip,
            "tcp" => SockLevel::Tcp,
            "udp" => SockLevel::Udp,
            _ => return None,
        })
    }
}

/// What an option's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// An int (booleans are 0/1).
    Int,
    /// `so_linger: S`: linger on close for S seconds.
    Linger,
    /// `so_rcvtimeo: S` / `so_sndtimeo: S`: seconds.
    Seconds,
    /// `ip_tos` with the `.dscp`, `.prec` and `.tos` subfields.
    Tos,
}

/// Every option by level and name.
pub const OPTIONS: &[(SockLevel, &str, ValueKind)] = &[
    (SockLevel::Socket, "so_broadcast", ValueKind::Int),
    (SockLevel::Socket, "so_debug", ValueKind::Int),
    (SockLevel::Socket, "so_dontroute", ValueKind::Int),
    (SockLevel::Socket, "so_keepalive", ValueKind::Int),
    (SockLevel::Socket, "so_linger", ValueKind::Linger),
    (SockLevel::Socket, "so_oobinline", ValueKind::Int),
    (SockLevel::Socket, "so_priority", ValueKind::Int),
    (SockLevel::Socket, "so_rcvbuf", ValueKind::Int),
    (SockLevel::Socket, "so_rcvbufforce", ValueKind::Int),
    (SockLevel::Socket, "so_rcvlowat", ValueKind::Int),
    (SockLevel::Socket, "so_rcvtimeo", ValueKind::Seconds),
    (SockLevel::Socket, "so_sndbuf", ValueKind::Int),
    (SockLevel::Socket, "so_sndbufforce", ValueKind::Int),
    (SockLevel::Socket, "so_sndlowat", ValueKind::Int),
    (SockLevel::Socket, "so_sndtimeo", ValueKind::Seconds),
    (SockLevel::Socket, "so_timestamp", ValueKind::Int),
    (SockLevel::Ip, "ip_freebind", ValueKind::Int),
    (SockLevel::Ip, "ip_minttl", ValueKind::Int),
    (SockLevel::Ip, "ip_mtu_discover", ValueKind::Int),
    (SockLevel::Ip, "ip_tos", ValueKind::Tos),
    (SockLevel::Ip, "ip_ttl", ValueKind::Int),
    // The IPv6 level, as Dante's Linux build lists it (`danted -vv`); options taking a
    // structure (join_group, ...) are refused by the kernel when given a number: logged once.
    (SockLevel::Ip, "ipv6_2292dstopts", ValueKind::Int),
    (SockLevel::Ip, "ipv6_2292hoplimit", ValueKind::Int),
    (SockLevel::Ip, "ipv6_2292hopopts", ValueKind::Int),
    (SockLevel::Ip, "ipv6_2292pktinfo", ValueKind::Int),
    (SockLevel::Ip, "ipv6_2292pktoptions", ValueKind::Int),
    (SockLevel::Ip, "ipv6_2292rthdr", ValueKind::Int),
    (SockLevel::Ip, "ipv6_addr_preferences", ValueKind::Int),
    (SockLevel::Ip, "ipv6_addrform", ValueKind::Int),
    (SockLevel::Ip, "ipv6_authhdr", ValueKind::Int),
    (SockLevel::Ip, "ipv6_autoflowlabel", ValueKind::Int),
    (SockLevel::Ip, "ipv6_checksum", ValueKind::Int),
    (SockLevel::Ip, "ipv6_dontfrag", ValueKind::Int),
    (SockLevel::Ip, "ipv6_dstopts", ValueKind::Int),
    (SockLevel::Ip, "ipv6_hoplimit", ValueKind::Int),
    (SockLevel::Ip, "ipv6_hopopts", ValueKind::Int),
    (SockLevel::Ip, "ipv6_ipsec_policy", ValueKind::Int),
    (SockLevel::Ip, "ipv6_join_anycast", ValueKind::Int),
    (SockLevel::Ip, "ipv6_join_group", ValueKind::Int),
    (SockLevel::Ip, "ipv6_leave_anycast", ValueKind::Int),
    (SockLevel::Ip, "ipv6_leave_group", ValueKind::Int),
    (SockLevel::Ip, "ipv6_minhopcount", ValueKind::Int),
    (SockLevel::Ip, "ipv6_mtu", ValueKind::Int),
    (SockLevel::Ip, "ipv6_mtu_discover", ValueKind::Int),
    (SockLevel::Ip, "ipv6_nexthop", ValueKind::Int),
    (SockLevel::Ip, "ipv6_origdstaddr", ValueKind::Int),
    (SockLevel::Ip, "ipv6_pathmtu", ValueKind::Int),
    (SockLevel::Ip, "ipv6_pktinfo", ValueKind::Int),
    (SockLevel::Ip, "ipv6_router_alert", ValueKind::Int),
    (SockLevel::Ip, "ipv6_rthdr", ValueKind::Int),
    (SockLevel::Ip, "ipv6_rthdrdstopts", ValueKind::Int),
    (SockLevel::Ip, "ipv6_tclass", ValueKind::Int),
    (SockLevel::Ip, "ipv6_transparent", ValueKind::Int),
    (SockLevel::Ip, "ipv6_unicast_hops", ValueKind::Int),
    (SockLevel::Ip, "ipv6_v6only", ValueKind::Int),
    (SockLevel::Ip, "ipv6_xfrm_policy", ValueKind::Int),
    (SockLevel::Tcp, "tcp_cork", ValueKind::Int),
    (SockLevel::Tcp, "tcp_keepcnt", ValueKind::Int),
    (SockLevel::Tcp, "tcp_keepidle", ValueKind::Int),
    (SockLevel::Tcp, "tcp_keepintvl", ValueKind::Int),
    (SockLevel::Tcp, "tcp_linger2", ValueKind::Int),
    (SockLevel::Tcp, "tcp_maxseg", ValueKind::Int),
    // Its value is a key structure: Dante accepts a number and the kernel refuses it, which
    // is logged once, as Dante does.
    (SockLevel::Tcp, "tcp_md5sig", ValueKind::Int),
    (SockLevel::Tcp, "tcp_nodelay", ValueKind::Int),
    (SockLevel::Tcp, "tcp_syncnt", ValueKind::Int),
    (SockLevel::Tcp, "tcp_window_clamp", ValueKind::Int),
    (SockLevel::Udp, "udp_cork", ValueKind::Int),
];

/// The option `name` at `level`.
pub fn find(level: SockLevel, name: &str) -> Option<ValueKind> {
    OPTIONS
        .iter()
        .find(|(l, n, _)| *l == level && *n == name)
        .map(|(_, _, k)| *k)
}

/// The option `name` given at level `given`: at that level, or else at any level (Dante warns
/// about the level and goes on); with the level it belongs to.
pub fn lookup(given: SockLevel, name: &str) -> Option<(SockLevel, ValueKind)> {
    find(given, name).map(|k| (given, k)).or_else(|| {
        OPTIONS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(l, _, k)| (*l, *k))
    })
}

/// `ip_tos.dscp:` names (RFC 2474/2597/3246 code points).
const DSCP: &[(&str, u8)] = &[
    ("cs0", 0),
    ("cs1", 8),
    ("cs2", 16),
    ("cs3", 24),
    ("cs4", 32),
    ("cs5", 40),
    ("cs6", 48),
    ("cs7", 56),
    ("af11", 10),
    ("af12", 12),
    ("af13", 14),
    ("af21", 18),
    ("af22", 20),
    ("af23", 22),
    ("af31", 26),
    ("af32", 28),
    ("af33", 30),
    ("af41", 34),
    ("af42", 36),
    ("af43", 38),
    ("ef", 46),
];

/// `ip_tos.prec:` names (RFC 791 precedence).
const PREC: &[(&str, u8)] = &[
    ("routine", 0),
    ("priority", 1),
    ("immediate", 2),
    ("flash", 3),
    ("flashoverride", 4),
    ("critical", 5),
    ("internetcontrol", 6),
    ("internet", 6),
    ("netcontrol", 7),
    ("network", 7),
];

/// `ip_tos.tos:` names (RFC 1349 bits).
const TOS: &[(&str, u8)] = &[
    ("lowdelay", 0x10),
    ("throughput", 0x08),
    ("reliability", 0x04),
    ("lowcost", 0x02),
    ("mincost", 0x02),
];

/// The TOS byte for `ip_tos.<subfield>: value` (a name or a number), or why not.
pub fn tos_byte(subfield: &str, value: &str) -> Result<u8, String> {
    let (table, shift, max): (&[(&str, u8)], u8, u8) = match subfield {
        "dscp" => (DSCP, 2, 63),
        "prec" => (PREC, 5, 7),
        "tos" => (TOS, 0, 0x1e),
        other => {
            return Err(format!(
                "unknown ip_tos subfield \"{other}\" (dscp, prec or tos)"
            ))
        }
    };
    let v = match table.iter().find(|(n, _)| *n == value) {
        Some((_, v)) => *v,
        None => match value.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown ip_tos.{subfield} value \"{value}\" (0..{max} or {})",
                    names.join(", ")
                ));
            }
        },
    };
    Ok(v << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tos_fields() {
        assert_eq!(tos_byte("dscp", "af11"), Ok(40));
        assert_eq!(tos_byte("dscp", "ef"), Ok(184));
        assert_eq!(tos_byte("dscp", "63"), Ok(252));
        assert_eq!(tos_byte("prec", "flash"), Ok(0x60));
        assert_eq!(tos_byte("tos", "lowdelay"), Ok(0x10));
        assert!(tos_byte("dscp", "64").is_err());
        assert!(tos_byte("dscp", "af99").is_err());
        assert!(tos_byte("ecn", "1").is_err());
    }

    #[test]
    fn lookups() {
        assert_eq!(find(SockLevel::Tcp, "tcp_nodelay"), Some(ValueKind::Int));
        assert_eq!(find(SockLevel::Socket, "tcp_nodelay"), None);
        assert_eq!(
            lookup(SockLevel::Socket, "tcp_nodelay"),
            Some((SockLevel::Tcp, ValueKind::Int))
        );
        assert_eq!(lookup(SockLevel::Tcp, "tcp_bogus"), None);
    }
}
