//! Target addresses as they travel in SOCKS messages, and the SOCKS5 address encoding
//! (`ATYP | ADDR | PORT`, RFC 1928 §4/§5) shared by requests, replies and UDP headers.
//!
//! Invariants:
//! - A decoded [`TargetAddr::Domain`] is 1..=255 bytes of valid UTF-8 without NUL. Anything
//!   else is an [`AddrError`] that carries the raw bytes, so the server can log them escaped
//!   and answer "host unreachable" (what Dante ends up answering when such a name does not
//!   resolve). NUL is refused because the name goes to `getaddrinfo(3)` as a C string.
//! - Decoded IPv6 addresses have `flowinfo` and `scope_id` 0: the wire does not carry them.
//! - Domain names are kept exactly as sent (an IP literal sent as a name stays a name): the
//!   resolver decides what they mean, not the codec.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::reply::Reply;

/// SOCKS5 `ATYP` for an IPv4 address (4 bytes).
pub const ATYP_IPV4: u8 = 0x01;
/// SOCKS5 `ATYP` for a domain name (1 length byte, then the name).
pub const ATYP_DOMAIN: u8 = 0x03;
/// SOCKS5 `ATYP` for an IPv6 address (16 bytes).
pub const ATYP_IPV6: u8 = 0x04;
/// Longest domain name any SOCKS message can carry (one length byte / SOCKS4a limit).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest SOCKS5 address encoding: ATYP, length byte, 255-byte name, port.
pub const MAX_SOCKS5_ADDR_LEN: usize = 1 + 1 + MAX_DOMAIN_LEN + 2;

/// Where a client wants to go (or, in replies, the bound address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// A literal IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A host name (1..=255 bytes of UTF-8 without NUL when decoded) and port.
    Domain(String, u16),
}

/// Errors in an address field, shared by the SOCKS4a, SOCKS5 and UDP decoders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// SOCKS5 `ATYP` other than 1, 3 or 4. Dante answers REP 08 and closes.
    #[error("address type {0:#04x} not supported")]
    AddressTypeNotSupported(u8),
    /// A domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// A domain name longer than 255 bytes (only from [`TargetAddr::domain`]; on the wire the
    /// length byte cannot express more).
    #[error("domain name too long ({0} bytes, at most 255)")]
    DomainTooLong(usize),
    /// A domain name that is not UTF-8 or contains NUL; the raw bytes are kept for logging.
    #[error("invalid domain name \"{}\"", escape_bytes(.0))]
    InvalidDomain(Vec<u8>),
}

impl AddrError {
    /// The SOCKS5 reply the server should send for this error before closing.
    pub fn reply(&self) -> Option<Reply> {
        Some(match self {
            AddrError::AddressTypeNotSupported(_) => Reply::AddressTypeNotSupported,
            // A name we cannot hand to the resolver is, to the client, a host we cannot reach.
            AddrError::EmptyDomain | AddrError::DomainTooLong(_) | AddrError::InvalidDomain(_) => {
                Reply::HostUnreachable
            }
        })
    }
}

/// Escapes bytes for error messages and logs: printable ASCII as is, the rest as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl TargetAddr {
    /// A validated domain target: 1..=255 bytes, no NUL.
    pub fn domain(name: impl Into<String>, port: u16) -> Result<Self, AddrError> {
        let name = name.into();
        validate_domain_len(name.len())?;
        if name.as_bytes().contains(&0) {
            return Err(AddrError::InvalidDomain(name.into_bytes()));
        }
        Ok(TargetAddr::Domain(name, port))
    }

    /// A validated domain target from raw wire bytes (UTF-8 checked).
    pub fn domain_from_bytes(name: &[u8], port: u16) -> Result<Self, AddrError> {
        validate_domain_len(name.len())?;
        match std::str::from_utf8(name) {
            Ok(s) if !name.contains(&0) => Ok(TargetAddr::Domain(s.to_owned(), port)),
            _ => Err(AddrError::InvalidDomain(name.to_vec())),
        }
    }

    /// `0.0.0.0:0`, the "nothing to tell" address of replies.
    pub fn unspecified() -> Self {
        TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(sa) => sa.port(),
            TargetAddr::Domain(_, port) => *port,
        }
    }

    /// True if this value can be encoded as itself (domains 1..=255 bytes without NUL).
    pub fn is_encodable(&self) -> bool {
        match self {
            TargetAddr::Ip(_) => true,
            TargetAddr::Domain(name, _) => {
                (1..=MAX_DOMAIN_LEN).contains(&name.len()) && !name.as_bytes().contains(&0)
            }
        }
    }

    /// Length of the SOCKS5 encoding (`ATYP | ADDR | PORT`) that
    /// [`encode_socks5_addr`] writes.
    pub fn socks5_len(&self) -> usize {
        match self {
            _ if !self.is_encodable() => 1 + 4 + 2,
            TargetAddr::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            TargetAddr::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            TargetAddr::Domain(name, _) => 1 + 1 + name.len() + 2,
        }
    }
}

fn validate_domain_len(len: usize) -> Result<(), AddrError> {
    match len {
        0 => Err(AddrError::EmptyDomain),
        1..=MAX_DOMAIN_LEN => Ok(()),
        n => Err(AddrError::DomainTooLong(n)),
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(sa: SocketAddr) -> Self {
        TargetAddr::Ip(sa)
    }
}

impl From<SocketAddrV4> for TargetAddr {
    fn from(sa: SocketAddrV4) -> Self {
        TargetAddr::Ip(SocketAddr::V4(sa))
    }
}

impl From<SocketAddrV6> for TargetAddr {
    fn from(sa: SocketAddrV6) -> Self {
        TargetAddr::Ip(SocketAddr::V6(sa))
    }
}

/// `host:port` (`[v6]:port` for IPv6). Control characters in names are escaped so a hostile
/// name cannot forge log lines even where a caller forgets to escape; Dante's `a.b.c.d.port`
/// log style is the logging module's business.
impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(sa) => write!(f, "{sa}"),
            TargetAddr::Domain(name, port) => {
                for c in name.chars() {
                    if c.is_control() {
                        write!(f, "{}", c.escape_default())?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                write!(f, ":{port}")
            }
        }
    }
}

/// Decodes `ATYP | ADDR | PORT` at the start of `buf`.
///
/// `Ok(None)` if `buf` is a valid but incomplete prefix. The `ATYP` is judged as soon as it is
/// present, so an unsupported type fails without waiting for bytes that will never make sense.
pub fn decode_socks5_addr(buf: &[u8]) -> Result<Option<(TargetAddr, usize)>, AddrError> {
    let Some(&atyp) = buf.first() else {
        return Ok(None);
    };
    match atyp {
        ATYP_IPV4 => {
            let Some(b) = buf.get(1..7) else {
                return Ok(None);
            };
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let port = u16::from_be_bytes([b[4], b[5]]);
            Ok(Some((SocketAddrV4::new(ip, port).into(), 7)))
        }
        ATYP_IPV6 => {
            let Some(b) = buf.get(1..19) else {
                return Ok(None);
            };
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            Ok(Some((
                SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0).into(),
                19,
            )))
        }
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(1) else {
                return Ok(None);
            };
            let len = usize::from(len);
            // Refuse an empty name as soon as the length byte says so.
            if len == 0 {
                return Err(AddrError::EmptyDomain);
            }
            let end = 2 + len + 2;
            let Some(b) = buf.get(2..end) else {
                return Ok(None);
            };
            let port = u16::from_be_bytes([b[len], b[len + 1]]);
            let addr = TargetAddr::domain_from_bytes(&b[..len], port)?;
            Ok(Some((addr, end)))
        }
        other => Err(AddrError::AddressTypeNotSupported(other)),
    }
}

/// Appends `ATYP | ADDR | PORT` for `addr` to `out`.
///
/// A domain that cannot be encoded (empty, longer than 255 bytes, or with NUL; only possible
/// for values not built by [`TargetAddr::domain`] or a decoder) is written as `0.0.0.0` with
/// its port: the RFC's "no address to tell", rather than a truncated, different name.
pub fn encode_socks5_addr(addr: &TargetAddr, out: &mut Vec<u8>) {
    match addr {
        TargetAddr::Ip(SocketAddr::V4(sa)) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&sa.ip().octets());
            out.extend_from_slice(&sa.port().to_be_bytes());
        }
        TargetAddr::Ip(SocketAddr::V6(sa)) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&sa.ip().octets());
            out.extend_from_slice(&sa.port().to_be_bytes());
        }
        TargetAddr::Domain(name, port) => match u8::try_from(name.len()) {
            Ok(len) if addr.is_encodable() => {
                out.push(ATYP_DOMAIN);
                out.push(len);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
            _ => {
                let fallback = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port).into();
                encode_socks5_addr(&fallback, out);
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_roundtrip_and_need_more() {
        let wire = [1, 10, 0, 0, 1, 0x1f, 0x90];
        let (a, n) = decode_socks5_addr(&wire).unwrap().unwrap();
        assert_eq!(a, TargetAddr::Ip("10.0.0.1:8080".parse().unwrap()));
        assert_eq!(n, 7);
        for k in 0..wire.len() {
            assert_eq!(decode_socks5_addr(&wire[..k]), Ok(None), "prefix {k}");
        }
        let mut out = Vec::new();
        encode_socks5_addr(&a, &mut out);
        assert_eq!(out, wire);
        assert_eq!(a.socks5_len(), 7);
    }

    #[test]
    fn ipv6_roundtrip() {
        let a = TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap());
        let mut out = Vec::new();
        encode_socks5_addr(&a, &mut out);
        assert_eq!(out.len(), 19);
        assert_eq!(a.socks5_len(), 19);
        assert_eq!(decode_socks5_addr(&out).unwrap(), Some((a, 19)));
    }

    #[test]
    fn domain_255_bytes() {
        let name = "a".repeat(255);
        let a = TargetAddr::domain(name.clone(), 80).unwrap();
        let mut out = Vec::new();
        encode_socks5_addr(&a, &mut out);
        assert_eq!(out.len(), 1 + 1 + 255 + 2);
        assert_eq!(out.len(), MAX_SOCKS5_ADDR_LEN);
        assert_eq!(decode_socks5_addr(&out).unwrap(), Some((a, 259)));
        assert_eq!(
            TargetAddr::domain("a".repeat(256), 80),
            Err(AddrError::DomainTooLong(256))
        );
        assert_eq!(TargetAddr::domain("", 80), Err(AddrError::EmptyDomain));
    }

    #[test]
    fn domain_errors() {
        assert_eq!(decode_socks5_addr(&[3, 0]), Err(AddrError::EmptyDomain));
        assert_eq!(
            decode_socks5_addr(&[3, 2, 0xff, 0xfe, 0, 80]),
            Err(AddrError::InvalidDomain(vec![0xff, 0xfe]))
        );
        assert_eq!(
            decode_socks5_addr(&[3, 2, b'a', 0, 0, 80]),
            Err(AddrError::InvalidDomain(vec![b'a', 0]))
        );
        assert_eq!(
            decode_socks5_addr(&[2]),
            Err(AddrError::AddressTypeNotSupported(2))
        );
        assert_eq!(
            decode_socks5_addr(&[3, 2, 0xff, 0xfe, 0, 80])
                .unwrap_err()
                .reply(),
            Some(Reply::HostUnreachable)
        );
        let msg = AddrError::InvalidDomain(vec![b'x', 0xff, b'\n']).to_string();
        assert_eq!(msg, "invalid domain name \"x\\xff\\n\"");
    }

    #[test]
    fn lying_domain_length_needs_more() {
        // Length byte says 200 but only 3 bytes follow: wait, do not read past the buffer.
        assert_eq!(decode_socks5_addr(&[3, 200, b'a', b'b', b'c']), Ok(None));
    }

    #[test]
    fn trailing_bytes_not_consumed() {
        let wire = [3, 1, b'x', 0, 80, 0xde, 0xad];
        let (a, n) = decode_socks5_addr(&wire).unwrap().unwrap();
        assert_eq!(a, TargetAddr::Domain("x".into(), 80));
        assert_eq!(n, 5);
    }

    #[test]
    fn unencodable_domain_falls_back_to_unspecified() {
        for bad in [String::new(), "b".repeat(300), "a\0b".to_owned()] {
            let a = TargetAddr::Domain(bad, 1234);
            assert!(!a.is_encodable());
            let mut out = Vec::new();
            encode_socks5_addr(&a, &mut out);
            assert_eq!(out, [1, 0, 0, 0, 0, 0x04, 0xd2]);
            assert_eq!(a.socks5_len(), out.len());
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            TargetAddr::Domain("example.org".into(), 80).to_string(),
            "example.org:80"
        );
        assert_eq!(TargetAddr::Domain("a\nb".into(), 1).to_string(), "a\\nb:1");
        assert_eq!(
            TargetAddr::Ip("[::1]:22".parse().unwrap()).to_string(),
            "[::1]:22"
        );
        assert_eq!(TargetAddr::unspecified().to_string(), "0.0.0.0:0");
        assert_eq!(TargetAddr::unspecified().port(), 0);
    }
}
