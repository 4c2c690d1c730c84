//! PROXY protocol header, version 1 (text) and version 2 (binary), as sent by load balancers
//! (HAProxy, AWS NLB, ...) in front of the server. Only accepted from trusted balancers; that
//! policy is the server's.
//!
//! v1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, or `PROXY UNKNOWN ...\r\n`.
//! v2: 12-byte signature, `ver_cmd`, `fam`, `len(2)`, then `len` bytes: addresses and TLVs.
//!
//! Invariants:
//! - Need-more semantics like every stream decoder here, with hard caps so a peer that never
//!   finishes cannot make us buffer forever: a v1 line is at most 107 bytes including CRLF (the
//!   spec's own maximum); a v2 header is at most 16 + [`V2_MAX_PAYLOAD`] bytes. The cap is ours,
//!   not the spec's (which allows 65535): the largest address block (AF_UNIX, 216 bytes) plus
//!   1 KiB of TLVs, which covers what balancers send (AWS: VPC endpoint id; HAProxy: ALPN,
//!   authority, SSL info) while keeping per-connection memory small.
//! - Malformed input is an error as soon as the bytes so far cannot start a valid header; the
//!   spec says to drop such connections.
//! - `source`/`destination` are `None` for v1 `UNKNOWN`, v2 `LOCAL` (balancer health checks),
//!   v2 `UNSPEC` and v2 AF_UNIX: the server then uses the socket's own addresses. Both are
//!   `Some` or both `None`.
//! - TLVs are skipped (counted in `consumed`), not interpreted.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::reply::Reply;

/// Start of every v1 header.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, CRLF included (PROXY protocol spec §2.1).
pub const V1_MAX_LEN: usize = 107;
/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Fixed part of a v2 header: signature, ver_cmd, fam, len.
pub const V2_FIXED_LEN: usize = 16;
/// Largest v2 payload (`len`) we accept; see module docs.
pub const V2_MAX_PAYLOAD: usize = 216 + 1024;

const V2_CMD_LOCAL: u8 = 0x0;
const V2_CMD_PROXY: u8 = 0x1;
const V2_AF_UNSPEC: u8 = 0x0;
const V2_AF_INET: u8 = 0x1;
const V2_AF_INET6: u8 = 0x2;
const V2_AF_UNIX: u8 = 0x3;
const V2_TRANSPORT_STREAM: u8 = 0x1;

/// Errors of PROXY headers. The connection is dropped without a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start neither a v1 nor a v2 header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// No CRLF within the first 107 bytes.
    #[error("PROXY v1 header longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// v2 version nibble other than 2.
    #[error("PROXY v2 header with version {0}")]
    V2BadVersion(u8),
    /// v2 command other than LOCAL or PROXY.
    #[error("PROXY v2 header with unknown command {0:#x}")]
    V2BadCommand(u8),
    /// v2 address family or transport that the spec does not define.
    #[error("PROXY v2 header with unknown family/transport {0:#04x}")]
    V2BadFamily(u8),
    /// v2 `len` over [`V2_MAX_PAYLOAD`].
    #[error("PROXY v2 header payload of {0} bytes is over our limit of {V2_MAX_PAYLOAD}")]
    V2TooLong(usize),
    /// v2 `len` too short for the announced address family.
    #[error("PROXY v2 address block too short ({0} bytes)")]
    V2AddressTruncated(usize),
}

impl ProxyError {
    /// Always `None`: the PROXY header precedes SOCKS, so there is nothing to reply.
    pub fn reply(&self) -> Option<Reply> {
        None
    }
}

/// Which PROXY protocol version a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// A decoded PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Which version.
    pub version: ProxyVersion,
    /// The real client; `None` for UNKNOWN/LOCAL/UNSPEC/UNIX.
    pub source: Option<SocketAddr>,
    /// The address the client connected to; `None` exactly when `source` is.
    pub destination: Option<SocketAddr>,
    /// Bytes the header used, TLVs included (same as the decoder's `usize`).
    pub consumed: usize,
}

/// Decodes a v1 or v2 header at the start of `buf`.
pub fn decode_header(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => decode_v1(buf),
        Some(b'\r') => decode_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

fn header(
    version: ProxyVersion,
    addrs: Option<(SocketAddr, SocketAddr)>,
    consumed: usize,
) -> Option<(ProxyHeader, usize)> {
    Some((
        ProxyHeader {
            version,
            source: addrs.map(|a| a.0),
            destination: addrs.map(|a| a.1),
            consumed,
        },
        consumed,
    ))
}

fn decode_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let head = buf.get(..V1_PREFIX.len()).unwrap_or(buf);
    if !V1_PREFIX.starts_with(head) {
        return Err(ProxyError::NotProxy);
    }
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    // The line must end in CRLF; a bare LF (or CR elsewhere) is malformed, not "need more".
    let line = match lf
        .checked_sub(1)
        .and_then(|cr| window.get(..cr).zip(window.get(cr)))
    {
        Some((line, b'\r')) => line,
        _ => return Err(ProxyError::V1Malformed("line not terminated by CRLF")),
    };
    let consumed = lf + 1;
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::V1Malformed("non-ASCII"))?;
    let mut parts = line.split(' ');
    // parts[0] is "PROXY", checked with the prefix.
    let _ = parts.next();
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The spec: ignore whatever follows UNKNOWN up to the CRLF.
        return Ok(header(ProxyVersion::V1, None, consumed));
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::V1Malformed("wrong number of fields"));
    };
    let sport = parse_port(sport)?;
    let dport = parse_port(dport)?;
    let addrs = match proto {
        "TCP4" => {
            let s: Ipv4Addr = src
                .parse()
                .map_err(|_| ProxyError::V1Malformed("bad IPv4 source"))?;
            let d: Ipv4Addr = dst
                .parse()
                .map_err(|_| ProxyError::V1Malformed("bad IPv4 destination"))?;
            (
                SocketAddr::V4(SocketAddrV4::new(s, sport)),
                SocketAddr::V4(SocketAddrV4::new(d, dport)),
            )
        }
        "TCP6" => {
            let s: Ipv6Addr = src
                .parse()
                .map_err(|_| ProxyError::V1Malformed("bad IPv6 source"))?;
            let d: Ipv6Addr = dst
                .parse()
                .map_err(|_| ProxyError::V1Malformed("bad IPv6 destination"))?;
            (
                SocketAddr::V6(SocketAddrV6::new(s, sport, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(d, dport, 0, 0)),
            )
        }
        _ => return Err(ProxyError::V1Malformed("unknown protocol")),
    };
    Ok(header(ProxyVersion::V1, Some(addrs), consumed))
}

/// 1 to 5 decimal digits, at most 65535 (`u16::from_str` alone would also take a `+`).
fn parse_port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::V1Malformed("bad port"));
    }
    s.parse().map_err(|_| ProxyError::V1Malformed("bad port"))
}

fn decode_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let sig = buf.get(..V2_SIGNATURE.len()).unwrap_or(buf);
    if !V2_SIGNATURE.starts_with(sig) {
        return Err(ProxyError::NotProxy);
    }
    // Judge each fixed byte as soon as it is there.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2BadVersion(ver_cmd >> 4));
    }
    let cmd = ver_cmd & 0x0f;
    if cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY {
        return Err(ProxyError::V2BadCommand(cmd));
    }
    let Some(&fam) = buf.get(13) else {
        return Ok(None);
    };
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > V2_AF_UNIX || transport > 2 {
        return Err(ProxyError::V2BadFamily(fam));
    }
    let Some(len) = buf.get(14..16) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong(len));
    }
    let total = V2_FIXED_LEN + len;
    let Some(payload) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    if cmd == V2_CMD_LOCAL {
        // Health check from the balancer itself: addresses, if any, must be ignored.
        return Ok(header(ProxyVersion::V2, None, total));
    }
    let need = match family {
        V2_AF_INET => 12,
        V2_AF_INET6 => 36,
        V2_AF_UNIX => 216,
        _ => 0, // V2_AF_UNSPEC
    };
    if len < need {
        return Err(ProxyError::V2AddressTruncated(len));
    }
    let addrs = match family {
        V2_AF_INET => {
            let ip = |o: usize| {
                Ipv4Addr::new(payload[o], payload[o + 1], payload[o + 2], payload[o + 3])
            };
            let port = |o: usize| u16::from_be_bytes([payload[o], payload[o + 1]]);
            Some((
                SocketAddr::V4(SocketAddrV4::new(ip(0), port(8))),
                SocketAddr::V4(SocketAddrV4::new(ip(4), port(10))),
            ))
        }
        V2_AF_INET6 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&payload[o..o + 16]);
                Ipv6Addr::from(a)
            };
            let port = |o: usize| u16::from_be_bytes([payload[o], payload[o + 1]]);
            Some((
                SocketAddr::V6(SocketAddrV6::new(ip(0), port(32), 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(ip(16), port(34), 0, 0)),
            ))
        }
        // UNSPEC or AF_UNIX: nothing a SOCKS server can use as a client address.
        _ => None,
    };
    Ok(header(ProxyVersion::V2, addrs, total))
}

/// Both addresses if they are present and of one family.
fn same_family(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
) -> Option<(SocketAddr, SocketAddr)> {
    match (source?, destination?) {
        (s @ SocketAddr::V4(_), d @ SocketAddr::V4(_))
        | (s @ SocketAddr::V6(_), d @ SocketAddr::V6(_)) => Some((s, d)),
        _ => None,
    }
}

/// Encodes a v1 header: `TCP4`/`TCP6` when both addresses are given and of one family,
/// `UNKNOWN` otherwise.
pub fn encode_v1(source: Option<SocketAddr>, destination: Option<SocketAddr>) -> Vec<u8> {
    let line = match same_family(source, destination) {
        Some((s, d)) => {
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        None => "PROXY UNKNOWN\r\n".to_owned(),
    };
    line.into_bytes()
}

/// Encodes a v2 header: `PROXY` over TCP when both addresses are given and of one family,
/// `LOCAL`/`UNSPEC` otherwise; `tlvs` are appended raw (cut so that `len` fits in 16 bits;
/// note our decoder accepts at most [`V2_MAX_PAYLOAD`]).
pub fn encode_v2(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tlvs: &[u8],
) -> Vec<u8> {
    let mut payload = Vec::new();
    let (ver_cmd, fam) = match same_family(source, destination) {
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            payload.extend_from_slice(&s.ip().octets());
            payload.extend_from_slice(&d.ip().octets());
            payload.extend_from_slice(&s.port().to_be_bytes());
            payload.extend_from_slice(&d.port().to_be_bytes());
            (0x20 | V2_CMD_PROXY, V2_AF_INET << 4 | V2_TRANSPORT_STREAM)
        }
        Some((s, d)) => {
            let octets = |a: SocketAddr| match a.ip() {
                std::net::IpAddr::V6(ip) => ip.octets(),
                std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            };
            payload.extend_from_slice(&octets(s));
            payload.extend_from_slice(&octets(d));
            payload.extend_from_slice(&s.port().to_be_bytes());
            payload.extend_from_slice(&d.port().to_be_bytes());
            (0x20 | V2_CMD_PROXY, V2_AF_INET6 << 4 | V2_TRANSPORT_STREAM)
        }
        None => (0x20 | V2_CMD_LOCAL, V2_AF_UNSPEC << 4),
    };
    let room = usize::from(u16::MAX) - payload.len();
    payload.extend_from_slice(tlvs.get(..room).unwrap_or(tlvs));
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(V2_FIXED_LEN + payload.len());
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4() {
        let mut wire = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 1080\r\n".to_vec();
        let n = wire.len();
        wire.extend_from_slice(&[5, 1, 0]);
        let (h, c) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(c, n);
        assert_eq!(h.consumed, n);
        assert_eq!(h.version, ProxyVersion::V1);
        assert_eq!(h.source, Some(sa("192.0.2.1:56324")));
        assert_eq!(h.destination, Some(sa("198.51.100.2:1080")));
        assert_eq!(encode_v1(h.source, h.destination), wire[..n]);
        for k in 0..n {
            assert_eq!(decode_header(&wire[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let wire = encode_v1(Some(sa("[2001:db8::1]:1")), Some(sa("[::1]:1080")));
        assert_eq!(wire, b"PROXY TCP6 2001:db8::1 ::1 1 1080\r\n");
        let (h, _) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(h.source, Some(sa("[2001:db8::1]:1")));

        let wire = b"PROXY UNKNOWN ffff::1 whatever 1 2\r\nrest";
        let (h, n) = decode_header(wire).unwrap().unwrap();
        assert_eq!((h.source, h.destination), (None, None));
        assert_eq!(n, wire.len() - 4);
        assert_eq!(encode_v1(None, None), b"PROXY UNKNOWN\r\n");
        // Mixed families cannot be expressed: UNKNOWN.
        assert_eq!(
            encode_v1(Some(sa("1.2.3.4:1")), Some(sa("[::1]:2"))),
            b"PROXY UNKNOWN\r\n"
        );
    }

    #[test]
    fn v1_max_length() {
        // The spec's worst case, exactly 107 bytes.
        let wire = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert!(decode_header(wire).unwrap().is_some());
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN - 2, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(long.len(), V1_MAX_LEN);
        assert_eq!(decode_header(&long).unwrap().unwrap().1, V1_MAX_LEN);
        let mut too_long = b"PROXY UNKNOWN ".to_vec();
        too_long.resize(V1_MAX_LEN, b'x');
        assert_eq!(decode_header(&too_long), Err(ProxyError::V1TooLong));
        assert_eq!(decode_header(&too_long[..106]), Ok(None));
    }

    #[test]
    fn v1_malformed() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
            b"PROXY\r\n",
            b"\n",
        ];
        for b in bad {
            assert!(
                matches!(
                    decode_header(b),
                    Err(ProxyError::V1Malformed(_) | ProxyError::NotProxy)
                ),
                "{:?}: {:?}",
                String::from_utf8_lossy(b),
                decode_header(b)
            );
        }
        assert_eq!(decode_header(b"PROXZ"), Err(ProxyError::NotProxy));
        assert_eq!(decode_header(b"GET / HTTP/1.1"), Err(ProxyError::NotProxy));
        assert_eq!(decode_header(&[5, 1, 0]), Err(ProxyError::NotProxy));
        assert_eq!(decode_header(b"PRO"), Ok(None));
        assert_eq!(ProxyError::NotProxy.reply(), None);
    }

    #[test]
    fn v2_inet_with_tlvs() {
        let tlvs = [0x04, 0x00, 0x02, b'h', b'i'];
        let mut wire = encode_v2(Some(sa("10.0.0.1:1000")), Some(sa("10.0.0.2:1080")), &tlvs);
        assert_eq!(wire.len(), 16 + 12 + 5);
        let n = wire.len();
        wire.extend_from_slice(&[5, 1, 0]);
        let (h, c) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(c, n);
        assert_eq!(h.version, ProxyVersion::V2);
        assert_eq!(h.source, Some(sa("10.0.0.1:1000")));
        assert_eq!(h.destination, Some(sa("10.0.0.2:1080")));
        for k in 0..n {
            assert_eq!(decode_header(&wire[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn v2_inet6_local_unspec_unix() {
        let wire = encode_v2(Some(sa("[2001:db8::5]:7")), Some(sa("[::1]:1080")), &[]);
        assert_eq!(wire.len(), 16 + 36);
        let (h, _) = decode_header(&wire).unwrap().unwrap();
        assert_eq!(h.source, Some(sa("[2001:db8::5]:7")));
        assert_eq!(h.destination, Some(sa("[::1]:1080")));

        let local = encode_v2(None, None, &[]);
        assert_eq!(local[12..16], [0x20, 0x00, 0, 0]);
        let (h, n) = decode_header(&local).unwrap().unwrap();
        assert_eq!((h.source, n), (None, 16));

        // LOCAL with an (ignored) INET address block.
        let mut wire = encode_v2(Some(sa("1.1.1.1:1")), Some(sa("2.2.2.2:2")), &[]);
        wire[12] = 0x20;
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!((h.source, h.destination, n), (None, None, 28));

        // PROXY + UNSPEC.
        let mut wire = V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x00, 0, 3, 9, 9, 9]);
        assert_eq!(decode_header(&wire).unwrap().unwrap().0.source, None);

        // PROXY + AF_UNIX stream: 216 address bytes, no usable address.
        let mut wire = V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x31, 0, 216]);
        wire.resize(16 + 216, 0);
        let (h, n) = decode_header(&wire).unwrap().unwrap();
        assert_eq!((h.source, n), (None, 232));
    }

    #[test]
    fn v2_errors() {
        let good = encode_v2(Some(sa("10.0.0.1:1")), Some(sa("10.0.0.2:2")), &[]);
        let mut w = good.clone();
        w[12] = 0x11;
        assert_eq!(decode_header(&w[..13]), Err(ProxyError::V2BadVersion(1)));
        w[12] = 0x22;
        assert_eq!(decode_header(&w), Err(ProxyError::V2BadCommand(2)));
        let mut w = good.clone();
        w[13] = 0x41;
        assert_eq!(decode_header(&w), Err(ProxyError::V2BadFamily(0x41)));
        w[13] = 0x13;
        assert_eq!(decode_header(&w), Err(ProxyError::V2BadFamily(0x13)));
        let mut w = good.clone();
        w[14..16].copy_from_slice(&[0xff, 0xff]);
        // Rejected from the fixed part alone, without waiting for 64 KiB.
        assert_eq!(decode_header(&w[..16]), Err(ProxyError::V2TooLong(65535)));
        let mut w = good.clone();
        w[14..16].copy_from_slice(&[0, 11]);
        assert_eq!(
            decode_header(&w[..27]),
            Err(ProxyError::V2AddressTruncated(11))
        );
        let mut w = good.clone();
        w[5] = b'x';
        assert_eq!(decode_header(&w), Err(ProxyError::NotProxy));
        // Lying length within the cap: wait.
        let mut w = good.clone();
        w[14..16].copy_from_slice(&[0, 100]);
        assert_eq!(decode_header(&w), Ok(None));
    }

    #[test]
    fn v2_max_payload() {
        let tlvs = vec![0u8; V2_MAX_PAYLOAD - 12];
        let w = encode_v2(Some(sa("10.0.0.1:1")), Some(sa("10.0.0.2:2")), &tlvs);
        assert_eq!(decode_header(&w).unwrap().unwrap().1, 16 + V2_MAX_PAYLOAD);
        let tlvs = vec![0u8; V2_MAX_PAYLOAD - 11];
        let w = encode_v2(Some(sa("10.0.0.1:1")), Some(sa("10.0.0.2:2")), &tlvs);
        assert_eq!(
            decode_header(&w),
            Err(ProxyError::V2TooLong(V2_MAX_PAYLOAD + 1))
        );
        // The encoder never overflows the 16-bit length.
        let w = encode_v2(None, None, &vec![1u8; 70000]);
        assert_eq!(w.len(), 16 + 65535);
        assert_eq!(w[14..16], [0xff, 0xff]);
    }
}
