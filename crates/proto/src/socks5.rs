//! SOCKS version 5 (RFC 1928): method negotiation, the request, and the reply.
//!
//! Server side decodes the greeting and the request and encodes the method selection and the
//! reply; the client side (greeting/request encoders, selection/reply decoders) exists for
//! server chaining and for round-trip tests.
//!
//! Invariants:
//! - Decoders never consume bytes past the message: clients may pipeline the request, or data,
//!   right behind the greeting.
//! - An unknown command is decoded (as [`Socks5Command::Unknown`]) so the server can answer
//!   REP 07; an unknown `ATYP` is an error ([`Socks5Error::AddressTypeNotSupported`]) because the
//!   rest of the request cannot be delimited without it (the server answers 08 and closes).
//! - The reserved byte of the request is kept as [`Request::flag`] (draft-05's FLAG byte,
//!   which Dante reads only with `compatibility: draft-5.05`) and otherwise ignored, as Dante
//!   and most servers do; [`encode_reply`] writes it as 0 ([`encode_reply_flagged`] for
//!   draft-05's reply flag).
//! - Every message here is bounded by its own length bytes (greeting ≤ 257, request ≤ 262
//!   bytes), so no extra size cap is needed.

use crate::addr::{decode_socks5_addr, encode_socks5_addr, escape_bytes, AddrError, TargetAddr};
pub use crate::reply::Reply;

/// Protocol version byte.
pub const VERSION: u8 = 5;
/// Method: no authentication required.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// Method: GSSAPI (RFC 1961).
pub const METHOD_GSSAPI: u8 = 0x01;
/// Method: username/password (RFC 1929).
pub const METHOD_USERNAME: u8 = 0x02;
/// Method selection answer when none of the client's methods is acceptable.
pub const METHOD_NO_ACCEPTABLE: u8 = 0xFF;
/// Longest greeting: VER, NMETHODS, 255 methods.
pub const MAX_GREETING_LEN: usize = 2 + 255;
/// Longest request: VER, CMD, RSV, and the longest address.
pub const MAX_REQUEST_LEN: usize = 3 + crate::addr::MAX_SOCKS5_ADDR_LEN;

/// Errors of SOCKS5 messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// First byte is not 5. Nothing sensible can be answered: close.
    #[error("bad SOCKS version {0} (expected 5)")]
    BadVersion(u8),
    /// Unknown `ATYP`; answer REP 08 and close.
    #[error("address type {0:#04x} not supported")]
    AddressTypeNotSupported(u8),
    /// Domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// Domain name not UTF-8 or with NUL; raw bytes kept for the log line.
    #[error("invalid domain name \"{}\"", escape_bytes(.0))]
    InvalidDomain(Vec<u8>),
}

impl Socks5Error {
    /// The reply to send before closing, if any.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Socks5Error::BadVersion(_) => None,
            Socks5Error::AddressTypeNotSupported(_) => Some(Reply::AddressTypeNotSupported),
            // What the client would get from Dante once the name fails to resolve.
            Socks5Error::EmptyDomain | Socks5Error::InvalidDomain(_) => {
                Some(Reply::HostUnreachable)
            }
        }
    }
}

impl From<AddrError> for Socks5Error {
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::AddressTypeNotSupported(t) => Socks5Error::AddressTypeNotSupported(t),
            AddrError::EmptyDomain => Socks5Error::EmptyDomain,
            // Cannot come from the wire (one length byte), only from the constructor.
            AddrError::DomainTooLong(_) => Socks5Error::InvalidDomain(Vec::new()),
            AddrError::InvalidDomain(b) => Socks5Error::InvalidDomain(b),
        }
    }
}

fn check_version(buf: &[u8]) -> Result<(), Socks5Error> {
    match buf.first() {
        Some(&v) if v != VERSION => Err(Socks5Error::BadVersion(v)),
        _ => Ok(()),
    }
}

/// The client's first message: the methods it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Offered method codes in the client's order (0..=255 of them; duplicates kept).
    pub methods: Vec<u8>,
}

/// Decodes `VER | NMETHODS | METHODS`. `NMETHODS` 0 is legal (the server answers `05 FF`).
pub fn decode_greeting(buf: &[u8]) -> Result<Option<(Greeting, usize)>, Socks5Error> {
    check_version(buf)?;
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    let end = 2 + usize::from(n);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    Ok(Some((
        Greeting {
            methods: methods.to_vec(),
        },
        end,
    )))
}

/// Encodes a greeting. More than 255 methods cannot be expressed; only the first 255 are sent.
pub fn encode_greeting(greeting: &Greeting) -> Vec<u8> {
    let methods = greeting.methods.get(..255).unwrap_or(&greeting.methods);
    let mut out = Vec::with_capacity(2 + methods.len());
    out.push(VERSION);
    out.push(methods.len() as u8); // at most 255 by the slice above
    out.extend_from_slice(methods);
    out
}

/// Encodes the server's method choice `VER | METHOD`.
pub fn encode_method_selection(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// Decodes the server's method choice (client side). Returns the method byte.
pub fn decode_method_selection(buf: &[u8]) -> Result<Option<(u8, usize)>, Socks5Error> {
    check_version(buf)?;
    Ok(buf.get(1).map(|&m| (m, 2)))
}

/// A request command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socks5Command {
    /// CONNECT (1).
    Connect,
    /// BIND (2).
    Bind,
    /// UDP ASSOCIATE (3).
    UdpAssociate,
    /// Anything else; kept so the server can answer REP 07.
    Unknown(u8),
}

impl Socks5Command {
    /// From the wire byte.
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Socks5Command::Connect,
            2 => Socks5Command::Bind,
            3 => Socks5Command::UdpAssociate,
            other => Socks5Command::Unknown(other),
        }
    }

    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            Socks5Command::Connect => 1,
            Socks5Command::Bind => 2,
            Socks5Command::UdpAssociate => 3,
            Socks5Command::Unknown(b) => b,
        }
    }
}

/// A SOCKS5 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub command: Socks5Command,
    /// DST.ADDR / DST.PORT.
    pub dst: TargetAddr,
    /// The RSV byte (FLAG in draft-ietf-aft-socks-protocol-v5-05: 0x04 = USECLIENTSPORT).
    pub flag: u8,
}

/// draft-05's flag: the client asks that its UDP port be used on the external side too.
pub const FLAG_USECLIENTSPORT: u8 = 0x04;

/// Decodes `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, Socks5Error> {
    check_version(buf)?;
    let Some(&cmd) = buf.get(1) else {
        return Ok(None);
    };
    let Some(&flag) = buf.get(2) else {
        return Ok(None);
    };
    let Some(rest) = buf.get(3..) else {
        return Ok(None);
    };
    let Some((dst, n)) = decode_socks5_addr(rest)? else {
        return Ok(None);
    };
    Ok(Some((
        Request {
            command: Socks5Command::from_u8(cmd),
            dst,
            flag,
        },
        3 + n,
    )))
}

/// Encodes a request (client side).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + req.dst.socks5_len());
    out.extend_from_slice(&[VERSION, req.command.code(), req.flag]);
    encode_socks5_addr(&req.dst, &mut out);
    out
}

/// Encodes `VER | REP | RSV | ATYP | BND.ADDR | BND.PORT`.
pub fn encode_reply(rep: Reply, bnd: &TargetAddr) -> Vec<u8> {
    encode_reply_flagged(rep, bnd, 0)
}

/// [`encode_reply`] with draft-05's FLAG byte in place of RSV.
pub fn encode_reply_flagged(rep: Reply, bnd: &TargetAddr, flag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + bnd.socks5_len());
    out.extend_from_slice(&[VERSION, rep.code(), flag]);
    encode_socks5_addr(bnd, &mut out);
    out
}

/// A reply as received from a server (client side, e.g. server chaining).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// REP as sent; may be an unassigned code (see [`ServerReply::reply`]).
    pub code: u8,
    /// BND.ADDR / BND.PORT.
    pub bnd: TargetAddr,
}

impl ServerReply {
    /// The code as a [`Reply`], if it is an assigned one.
    pub fn reply(&self) -> Option<Reply> {
        Reply::from_code(self.code)
    }
}

/// Decodes a reply (client side).
pub fn decode_reply(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, Socks5Error> {
    check_version(buf)?;
    let Some(&code) = buf.get(1) else {
        return Ok(None);
    };
    let Some(rest) = buf.get(3..) else {
        return Ok(None);
    };
    let Some((bnd, n)) = decode_socks5_addr(rest)? else {
        return Ok(None);
    };
    Ok(Some((ServerReply { code, bnd }, 3 + n)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn ip(s: &str) -> TargetAddr {
        TargetAddr::Ip(s.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn greeting_basic_and_prefixes() {
        let wire = [5, 2, 0, 2];
        assert_eq!(
            decode_greeting(&wire).unwrap(),
            Some((
                Greeting {
                    methods: vec![0, 2]
                },
                4
            ))
        );
        for k in 0..wire.len() {
            assert_eq!(decode_greeting(&wire[..k]), Ok(None));
        }
    }

    #[test]
    fn greeting_zero_methods() {
        assert_eq!(
            decode_greeting(&[5, 0]).unwrap(),
            Some((Greeting { methods: vec![] }, 2))
        );
    }

    #[test]
    fn greeting_255_methods() {
        let mut wire = vec![5, 255];
        wire.extend(0..=254u8);
        let (g, n) = decode_greeting(&wire).unwrap().unwrap();
        assert_eq!(n, MAX_GREETING_LEN);
        assert_eq!(g.methods.len(), 255);
        assert_eq!(encode_greeting(&g), wire);
        // One byte short: need more.
        assert_eq!(decode_greeting(&wire[..wire.len() - 1]), Ok(None));
    }

    #[test]
    fn greeting_bad_versions() {
        assert_eq!(decode_greeting(&[4]), Err(Socks5Error::BadVersion(4)));
        assert_eq!(decode_greeting(&[6, 1, 0]), Err(Socks5Error::BadVersion(6)));
        assert_eq!(Socks5Error::BadVersion(4).reply(), None);
    }

    #[test]
    fn greeting_trailing_data_not_consumed() {
        // Optimistic clients send the request right behind the greeting.
        let wire = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
        let (g, n) = decode_greeting(&wire).unwrap().unwrap();
        assert_eq!(g.methods, [0]);
        assert_eq!(n, 3);
        let (r, m) = decode_request(&wire[n..]).unwrap().unwrap();
        assert_eq!(r.dst, ip("127.0.0.1:80"));
        assert_eq!(n + m, wire.len());
    }

    #[test]
    fn greeting_lying_length() {
        // Says 10 methods, sends 2: wait for the rest, never read past the end.
        assert_eq!(decode_greeting(&[5, 10, 0, 2]), Ok(None));
    }

    #[test]
    fn encode_greeting_truncates_to_255() {
        let g = Greeting {
            methods: vec![0; 300],
        };
        let wire = encode_greeting(&g);
        assert_eq!(wire.len(), 257);
        assert_eq!(wire[1], 255);
    }

    #[test]
    fn method_selection() {
        assert_eq!(encode_method_selection(METHOD_NO_ACCEPTABLE), [5, 0xff]);
        assert_eq!(decode_method_selection(&[5, 2, 9]), Ok(Some((2, 2))));
        assert_eq!(decode_method_selection(&[5]), Ok(None));
        assert_eq!(
            decode_method_selection(&[1, 0]),
            Err(Socks5Error::BadVersion(1))
        );
    }

    #[test]
    fn request_connect_ipv4() {
        let wire = [5, 1, 0, 1, 192, 0, 2, 1, 0, 80];
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.command, Socks5Command::Connect);
        assert_eq!(r.dst, ip("192.0.2.1:80"));
        assert_eq!(n, 10);
        assert_eq!(encode_request(&r), wire);
        for k in 0..wire.len() {
            assert_eq!(decode_request(&wire[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn request_ipv6_and_domain() {
        let r = Request {
            command: Socks5Command::UdpAssociate,
            dst: ip("[::1]:53"),
            flag: 0,
        };
        let wire = encode_request(&r);
        assert_eq!(wire.len(), 22);
        assert_eq!(decode_request(&wire).unwrap(), Some((r, 22)));

        let r = Request {
            command: Socks5Command::Bind,
            dst: TargetAddr::Domain("a".repeat(255), 21),
            flag: 0,
        };
        let wire = encode_request(&r);
        assert_eq!(wire.len(), MAX_REQUEST_LEN);
        assert_eq!(decode_request(&wire).unwrap(), Some((r, MAX_REQUEST_LEN)));
    }

    #[test]
    fn request_unknown_command_is_decoded() {
        let wire = [5, 9, 0, 1, 1, 2, 3, 4, 0, 1];
        let (r, _) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.command, Socks5Command::Unknown(9));
        assert_eq!(Socks5Command::from_u8(0), Socks5Command::Unknown(0));
        assert_eq!(encode_request(&r), wire);
    }

    #[test]
    fn request_reserved_byte_is_kept_as_the_flag() {
        let wire = [5, 3, 0x04, 1, 1, 2, 3, 4, 0, 1];
        let (r, _) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.flag, FLAG_USECLIENTSPORT);
        assert_eq!(encode_request(&r), wire);
        assert_eq!(decode_request(&wire[..2]), Ok(None));
        let rep = encode_reply_flagged(Reply::Succeeded, &ip("1.2.3.4:5"), FLAG_USECLIENTSPORT);
        assert_eq!(rep[2], 4);
    }

    #[test]
    fn request_errors() {
        assert_eq!(
            decode_request(&[5, 1, 0, 2, 0, 0]),
            Err(Socks5Error::AddressTypeNotSupported(2))
        );
        assert_eq!(
            decode_request(&[5, 1, 0, 0]),
            Err(Socks5Error::AddressTypeNotSupported(0))
        );
        assert_eq!(
            Socks5Error::AddressTypeNotSupported(2).reply(),
            Some(Reply::AddressTypeNotSupported)
        );
        assert_eq!(
            decode_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(Socks5Error::EmptyDomain)
        );
        let e = decode_request(&[5, 1, 0, 3, 1, 0xc3, 0, 80]).unwrap_err();
        assert_eq!(e, Socks5Error::InvalidDomain(vec![0xc3]));
        assert_eq!(e.reply(), Some(Reply::HostUnreachable));
        assert_eq!(decode_request(&[4, 1]), Err(Socks5Error::BadVersion(4)));
        // Lying domain length: wait.
        assert_eq!(decode_request(&[5, 1, 0, 3, 50, b'a']), Ok(None));
    }

    #[test]
    fn request_trailing_data_not_consumed() {
        let mut wire = vec![5, 1, 0, 3, 3, b'f', b'o', b'o', 1, 187];
        wire.extend_from_slice(b"GET / HTTP/1.0\r\n");
        let (r, n) = decode_request(&wire).unwrap().unwrap();
        assert_eq!(r.dst, TargetAddr::Domain("foo".into(), 443));
        assert_eq!(n, 10);
    }

    #[test]
    fn reply_encode_decode() {
        let wire = encode_reply(Reply::Succeeded, &ip("10.1.2.3:4660"));
        assert_eq!(wire, [5, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34]);
        let (r, n) = decode_reply(&wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(r.reply(), Some(Reply::Succeeded));
        assert_eq!(r.bnd, ip("10.1.2.3:4660"));
        let wire = encode_reply(Reply::ConnectionRefused, &ip("[::]:0"));
        assert_eq!(wire.len(), 22);
        assert_eq!(wire[1], 5);
        for k in 0..wire.len() {
            assert_eq!(decode_reply(&wire[..k]), Ok(None));
        }
        assert_eq!(decode_reply(&[0, 91]), Err(Socks5Error::BadVersion(0)));
        let unassigned = ServerReply {
            code: 0x42,
            bnd: TargetAddr::unspecified(),
        };
        assert_eq!(unassigned.reply(), None);
    }
}
