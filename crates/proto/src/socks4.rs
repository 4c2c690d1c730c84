//! SOCKS version 4 and 4a: the request and the reply.
//!
//! Request: `VN=4 | CD | DSTPORT(2) | DSTIP(4) | USERID | NUL`, and for SOCKS4a, when DSTIP is
//! `0.0.0.x` with `x != 0`, a NUL-terminated host name follows. Reply:
//! `VN=0 | CD | DSTPORT(2) | DSTIP(4)`.
//!
//! Invariants:
//! - USERID and host name are NUL-terminated and therefore unbounded on the wire; each is
//!   capped at 255 bytes (Dante's limit for USERID). Once 256 bytes have arrived without a NUL
//!   the request is an error: the server never waits forever for a terminator.
//! - Unlike Dante 1.4 (which parses 4a as plain v4 and fails to connect to `0.0.0.1`), 4a is
//!   supported: the target becomes [`TargetAddr::Domain`].
//! - Bytes after the request are not consumed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::addr::{escape_bytes, AddrError, TargetAddr};
use crate::reply::Reply;
pub use crate::reply::Socks4Reply;

/// Request version byte.
pub const VERSION: u8 = 4;
/// Reply version byte (`VN` of replies is 0, not 4).
pub const REPLY_VERSION: u8 = 0;
/// Longest USERID accepted, without its NUL.
pub const MAX_USERID_LEN: usize = 255;
/// Longest SOCKS4a host name accepted, without its NUL.
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Longest request: fixed part, USERID + NUL, host name + NUL.
pub const MAX_REQUEST_LEN: usize = 8 + MAX_USERID_LEN + 1 + MAX_HOSTNAME_LEN + 1;

/// Errors of SOCKS4 requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks4Error {
    /// First byte is not 4: close without a reply.
    #[error("bad SOCKS version {0} (expected 4)")]
    BadVersion(u8),
    /// 256 bytes of USERID without a NUL.
    #[error("SOCKS4 USERID longer than 255 bytes")]
    UseridTooLong,
    /// 256 bytes of SOCKS4a host name without a NUL.
    #[error("SOCKS4a host name longer than 255 bytes")]
    HostnameTooLong,
    /// SOCKS4a host name of length 0.
    #[error("empty SOCKS4a host name")]
    EmptyHostname,
    /// SOCKS4a host name that is not UTF-8; raw bytes kept for the log line.
    #[error("invalid SOCKS4a host name \"{}\"", escape_bytes(.0))]
    InvalidHostname(Vec<u8>),
}

impl Socks4Error {
    /// The outcome to report before closing, as a SOCKS5 reply: send it as
    /// `reply.to_socks4()` (always 91 for a failure). `None`: close without a reply.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Socks4Error::BadVersion(_) => None,
            Socks4Error::UseridTooLong => Some(Reply::GeneralFailure),
            Socks4Error::HostnameTooLong
            | Socks4Error::EmptyHostname
            | Socks4Error::InvalidHostname(_) => Some(Reply::HostUnreachable),
        }
    }
}

/// A SOCKS4 command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socks4Command {
    /// CONNECT (1).
    Connect,
    /// BIND (2).
    Bind,
    /// Anything else; decoded so the server can reject it with 91 and log it.
    Unknown(u8),
}

impl Socks4Command {
    /// From the wire byte.
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Socks4Command::Connect,
            2 => Socks4Command::Bind,
            other => Socks4Command::Unknown(other),
        }
    }

    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            Socks4Command::Connect => 1,
            Socks4Command::Bind => 2,
            Socks4Command::Unknown(b) => b,
        }
    }
}

/// A SOCKS4 or SOCKS4a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks4Request {
    /// What to do.
    pub command: Socks4Command,
    /// `Ip` (always IPv4) for SOCKS4, `Domain` for SOCKS4a.
    pub dst: TargetAddr,
    /// USERID bytes without the NUL (0..=255 bytes, never containing NUL).
    pub userid: Vec<u8>,
}

/// Finds the NUL terminating a field of at most `max` bytes that starts at `start`.
/// `Ok(Some(i))`: the field is `buf[start..i]`; `Ok(None)`: not there yet; `Err(())`: `max + 1`
/// bytes arrived without a NUL.
fn find_nul(buf: &[u8], start: usize, max: usize) -> Result<Option<usize>, ()> {
    let avail = buf.get(start..).unwrap_or(&[]);
    let window = avail.get(..max + 1).unwrap_or(avail);
    match window.iter().position(|&b| b == 0) {
        Some(i) => Ok(Some(start + i)),
        None if window.len() > max => Err(()),
        None => Ok(None),
    }
}

/// Decodes a SOCKS4/4a request.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Socks4Request, usize)>, Socks4Error> {
    match buf.first() {
        None => return Ok(None),
        Some(&v) if v != VERSION => return Err(Socks4Error::BadVersion(v)),
        Some(_) => {}
    }
    // USERID starts at byte 8: the fixed part must be complete before it can be scanned.
    let Some(fixed) = buf.get(..8) else {
        return Ok(None);
    };
    let command = Socks4Command::from_u8(fixed[1]);
    let port = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ip = Ipv4Addr::new(fixed[4], fixed[5], fixed[6], fixed[7]);

    let userid_end = match find_nul(buf, 8, MAX_USERID_LEN) {
        Ok(Some(i)) => i,
        Ok(None) => return Ok(None),
        Err(()) => return Err(Socks4Error::UseridTooLong),
    };
    let userid = buf.get(8..userid_end).unwrap_or(&[]).to_vec();
    let after_userid = userid_end + 1;

    let o = ip.octets();
    let is_4a = o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] != 0;
    if !is_4a {
        let dst = TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port)));
        return Ok(Some((
            Socks4Request {
                command,
                dst,
                userid,
            },
            after_userid,
        )));
    }

    let host_end = match find_nul(buf, after_userid, MAX_HOSTNAME_LEN) {
        Ok(Some(i)) => i,
        Ok(None) => return Ok(None),
        Err(()) => return Err(Socks4Error::HostnameTooLong),
    };
    let host = buf.get(after_userid..host_end).unwrap_or(&[]);
    let dst = TargetAddr::domain_from_bytes(host, port).map_err(|e| match e {
        AddrError::EmptyDomain => Socks4Error::EmptyHostname,
        AddrError::DomainTooLong(_) => Socks4Error::HostnameTooLong,
        _ => Socks4Error::InvalidHostname(host.to_vec()),
    })?;
    Ok(Some((
        Socks4Request {
            command,
            dst,
            userid,
        },
        host_end + 1,
    )))
}

/// Encodes a request (client side and tests). A domain target becomes SOCKS4a with DSTIP
/// `0.0.0.1`. `None` if the request cannot be expressed: an IPv6 target, a USERID over 255
/// bytes or containing NUL, or a host name that is not 1..=255 bytes without NUL.
pub fn encode_request(req: &Socks4Request) -> Option<Vec<u8>> {
    if req.userid.len() > MAX_USERID_LEN || req.userid.contains(&0) {
        return None;
    }
    let mut out = Vec::with_capacity(9 + req.userid.len());
    out.push(VERSION);
    out.push(req.command.code());
    out.extend_from_slice(&req.dst.port().to_be_bytes());
    match &req.dst {
        TargetAddr::Ip(SocketAddr::V4(sa)) => {
            out.extend_from_slice(&sa.ip().octets());
            out.extend_from_slice(&req.userid);
            out.push(0);
        }
        TargetAddr::Ip(SocketAddr::V6(_)) => return None,
        TargetAddr::Domain(name, _) => {
            if !req.dst.is_encodable() {
                return None;
            }
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(&req.userid);
            out.push(0);
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
    }
    Some(out)
}

/// Encodes `VN=0 | CD | DSTPORT | DSTIP`.
pub fn encode_reply(code: Socks4Reply, addr: SocketAddrV4) -> [u8; 8] {
    let p = addr.port().to_be_bytes();
    let ip = addr.ip().octets();
    [
        REPLY_VERSION,
        code.code(),
        p[0],
        p[1],
        ip[0],
        ip[1],
        ip[2],
        ip[3],
    ]
}

/// A reply as received (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socks4ServerReply {
    /// CD as sent (90..=93 if the server is sane; see [`Socks4Reply::from_code`]).
    pub code: u8,
    /// DSTPORT / DSTIP.
    pub addr: SocketAddrV4,
}

/// Decodes an 8-byte reply. `VN` is not checked: the spec says 0 but some servers send 4.
pub fn decode_reply(buf: &[u8]) -> Option<(Socks4ServerReply, usize)> {
    let b = buf.get(..8)?;
    Some((
        Socks4ServerReply {
            code: b[1],
            addr: SocketAddrV4::new(
                Ipv4Addr::new(b[4], b[5], b[6], b[7]),
                u16::from_be_bytes([b[2], b[3]]),
            ),
        },
        8,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(s: &str) -> TargetAddr {
        TargetAddr::Ip(s.parse().unwrap())
    }

    #[test]
    fn connect_plain() {
        let wire = [4, 1, 0, 80, 192, 0, 2, 7, b'b', b'o', b'b', 0];
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.command, Socks4Command::Connect);
        assert_eq!(r.dst, v4("192.0.2.7:80"));
        assert_eq!(r.userid, b"bob");
        assert_eq!(n, wire.len());
        assert_eq!(encode_request(&r).unwrap(), wire);
        for k in 0..wire.len() {
            assert_eq!(decode_request(&wire[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn bind_empty_userid_and_trailing_data() {
        let wire = [4, 2, 0, 21, 10, 0, 0, 1, 0, 0xAA, 0xBB];
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.command, Socks4Command::Bind);
        assert!(r.userid.is_empty());
        assert_eq!(n, 9);
    }

    #[test]
    fn zero_ip_is_plain_v4() {
        // 0.0.0.0 is not a 4a marker (x must be non-zero): no host name is read.
        let wire = [4, 1, 0, 80, 0, 0, 0, 0, 0, b'x', 0];
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.dst, v4("0.0.0.0:80"));
        assert_eq!(n, 9);
    }

    #[test]
    fn socks4a() {
        let mut wire = vec![4, 1, 1, 187, 0, 0, 0, 9];
        wire.extend_from_slice(b"me\0example.org\0trailing");
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.dst, TargetAddr::Domain("example.org".into(), 443));
        assert_eq!(r.userid, b"me");
        assert_eq!(n, wire.len() - b"trailing".len());
        for k in 0..n {
            assert_eq!(decode_request(&wire[..k]), Ok(None), "prefix {k}");
        }
        // Re-encoding uses 0.0.0.1 and decodes to the same request.
        let enc = encode_request(&r).unwrap();
        assert_eq!(enc[4..8], [0, 0, 0, 1]);
        assert_eq!(decode_request(&enc).unwrap(), Some((r, enc.len())));
    }

    #[test]
    fn userid_limits() {
        let mut wire = vec![4, 1, 0, 80, 1, 2, 3, 4];
        wire.extend(std::iter::repeat_n(b'u', 255));
        assert_eq!(decode_request(&wire), Ok(None));
        let mut ok = wire.clone();
        ok.push(0);
        let (r, n) = decode_request(&ok).unwrap().unwrap();
        assert_eq!(r.userid.len(), 255);
        assert_eq!(n, 8 + 256);
        wire.push(b'u');
        assert_eq!(decode_request(&wire), Err(Socks4Error::UseridTooLong));
        wire.push(0);
        assert_eq!(decode_request(&wire), Err(Socks4Error::UseridTooLong));
        assert_eq!(
            Socks4Error::UseridTooLong.reply().map(Reply::to_socks4),
            Some(Socks4Reply::Rejected)
        );
    }

    #[test]
    fn hostname_limits() {
        let mut wire = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
        wire.extend(std::iter::repeat_n(b'h', 255));
        assert_eq!(decode_request(&wire), Ok(None));
        let mut ok = wire.clone();
        ok.push(0);
        let (r, n) = decode_request(&ok).unwrap().unwrap();
        assert_eq!(r.dst, TargetAddr::Domain("h".repeat(255), 80));
        assert_eq!(n, MAX_REQUEST_LEN - 255);
        wire.push(b'h');
        assert_eq!(decode_request(&wire), Err(Socks4Error::HostnameTooLong));

        // Both fields at their maximum: the largest valid request.
        let mut max = vec![4, 1, 0, 80, 0, 0, 0, 1];
        max.extend(std::iter::repeat_n(b'u', 255));
        max.push(0);
        max.extend(std::iter::repeat_n(b'h', 255));
        max.push(0);
        assert_eq!(max.len(), MAX_REQUEST_LEN);
        assert_eq!(decode_request(&max).unwrap().unwrap().1, MAX_REQUEST_LEN);
    }

    #[test]
    fn hostname_errors() {
        let wire = [4, 1, 0, 80, 0, 0, 0, 1, 0, 0];
        assert_eq!(decode_request(&wire), Err(Socks4Error::EmptyHostname));
        let wire = [4, 1, 0, 80, 0, 0, 0, 1, 0, 0xff, 0];
        let e = decode_request(&wire).unwrap_err();
        assert_eq!(e, Socks4Error::InvalidHostname(vec![0xff]));
        assert_eq!(e.reply(), Some(Reply::HostUnreachable));
        assert!(e.to_string().contains("\\xff"));
    }

    #[test]
    fn bad_versions() {
        assert_eq!(decode_request(&[5]), Err(Socks4Error::BadVersion(5)));
        assert_eq!(decode_request(&[0, 1, 2]), Err(Socks4Error::BadVersion(0)));
        assert_eq!(Socks4Error::BadVersion(5).reply(), None);
        assert_eq!(decode_request(&[]), Ok(None));
    }

    #[test]
    fn unknown_command() {
        let wire = [4, 3, 0, 80, 1, 2, 3, 4, 0];
        let (r, _) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.command, Socks4Command::Unknown(3));
        assert_eq!(encode_request(&r).unwrap(), wire);
    }

    #[test]
    fn unencodable_requests() {
        let mut r = Socks4Request {
            command: Socks4Command::Connect,
            dst: TargetAddr::Ip("[::1]:80".parse().unwrap()),
            userid: vec![],
        };
        assert_eq!(encode_request(&r), None);
        r.dst = v4("1.2.3.4:5");
        r.userid = vec![b'a', 0];
        assert_eq!(encode_request(&r), None);
        r.userid = vec![b'a'; 256];
        assert_eq!(encode_request(&r), None);
        r.userid = vec![];
        r.dst = TargetAddr::Domain(String::new(), 1);
        assert_eq!(encode_request(&r), None);
    }

    #[test]
    fn replies() {
        let addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1080);
        assert_eq!(
            encode_reply(Socks4Reply::Granted, addr),
            [0, 90, 0x04, 0x38, 10, 0, 0, 1]
        );
        for c in [
            Socks4Reply::Granted,
            Socks4Reply::Rejected,
            Socks4Reply::NoIdentd,
            Socks4Reply::IdentMismatch,
        ] {
            let wire = encode_reply(c, addr);
            let (r, n) = decode_reply(&wire).unwrap();
            assert_eq!(n, 8);
            assert_eq!(Socks4Reply::from_code(r.code), Some(c));
            assert_eq!(r.addr, addr);
        }
        assert_eq!(Socks4Reply::from_code(89), None);
        assert_eq!(decode_reply(&[0; 7]), None);
    }
}
