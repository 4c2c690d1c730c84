//! The SOCKS5 UDP request header (RFC 1928 §7): `RSV(2) | FRAG | ATYP | DST.ADDR | DST.PORT |
//! DATA`.
//!
//! Invariants:
//! - A datagram is complete or bad: there is no "need more". The decoder returns the header and
//!   the offset where the payload starts; the payload may be empty.
//! - `RSV` is ignored on input (as for the TCP request) and written as zero.
//! - `FRAG` is reported, not judged: Dante drops fragments (`FRAG != 0`) and logs it, which is
//!   policy and belongs to the server.

use crate::addr::{decode_socks5_addr, encode_socks5_addr, escape_bytes, AddrError, TargetAddr};
use crate::reply::Reply;

/// Longest header: RSV, FRAG and the longest address.
pub const MAX_HEADER_LEN: usize = 3 + crate::addr::MAX_SOCKS5_ADDR_LEN;

/// Errors of UDP request headers. The datagram is dropped; nothing is replied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// The datagram ends inside the header.
    #[error("truncated SOCKS UDP header ({0} bytes)")]
    Truncated(usize),
    /// Unknown `ATYP`.
    #[error("address type {0:#04x} not supported")]
    AddressTypeNotSupported(u8),
    /// Domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// Domain name not UTF-8 or with NUL; raw bytes kept for the log line.
    #[error("invalid domain name \"{}\"", escape_bytes(.0))]
    InvalidDomain(Vec<u8>),
}

impl UdpError {
    /// Always `None`: a bad datagram is dropped (and logged), never answered.
    pub fn reply(&self) -> Option<Reply> {
        None
    }
}

impl From<AddrError> for UdpError {
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::AddressTypeNotSupported(t) => UdpError::AddressTypeNotSupported(t),
            AddrError::EmptyDomain => UdpError::EmptyDomain,
            AddrError::DomainTooLong(_) => UdpError::InvalidDomain(Vec::new()),
            AddrError::InvalidDomain(b) => UdpError::InvalidDomain(b),
        }
    }
}

/// A decoded UDP request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// Fragment number; 0 means a whole datagram.
    pub frag: u8,
    /// Destination (client to target) or source (target to client).
    pub dst: TargetAddr,
}

impl UdpHeader {
    /// Appends this header (with its `FRAG`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, self.frag]);
        encode_socks5_addr(&self.dst, out);
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        3 + self.dst.socks5_len()
    }
}

/// Decodes the header of a whole datagram; returns it and the payload offset.
pub fn decode_udp(datagram: &[u8]) -> Result<(UdpHeader, usize), UdpError> {
    let truncated = UdpError::Truncated(datagram.len());
    let (Some(&frag), Some(rest)) = (datagram.get(2), datagram.get(3..)) else {
        return Err(truncated);
    };
    match decode_socks5_addr(rest)? {
        Some((dst, n)) => Ok((UdpHeader { frag, dst }, 3 + n)),
        None => Err(truncated),
    }
}

/// Appends a header for a whole datagram (`FRAG` 0) about `addr` to `out`; the caller appends
/// the payload.
pub fn encode_udp_header(addr: &TargetAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0]);
    encode_socks5_addr(addr, out);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_with_payload() {
        let wire = [0, 0, 0, 1, 8, 8, 8, 8, 0, 53, b'q', b'r'];
        let (h, off) = decode_udp(&wire).unwrap();
        assert_eq!(h.frag, 0);
        assert_eq!(h.dst, TargetAddr::Ip("8.8.8.8:53".parse().unwrap()));
        assert_eq!(off, 10);
        assert_eq!(&wire[off..], b"qr");
        let mut out = Vec::new();
        encode_udp_header(&h.dst, &mut out);
        assert_eq!(out, wire[..10]);
        assert_eq!(h.encoded_len(), 10);
    }

    #[test]
    fn empty_payload_and_domain() {
        let h = UdpHeader {
            frag: 0,
            dst: TargetAddr::Domain("d".repeat(255), 1),
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out.len(), MAX_HEADER_LEN);
        assert_eq!(decode_udp(&out).unwrap(), (h, MAX_HEADER_LEN));
    }

    #[test]
    fn fragments_are_reported_and_rsv_ignored() {
        let wire = [
            0xff, 0xff, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9,
        ];
        let (h, off) = decode_udp(&wire).unwrap();
        assert_eq!(h.frag, 3);
        assert_eq!(off, 22);
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out[..3], [0, 0, 3]);
    }

    #[test]
    fn errors() {
        assert_eq!(decode_udp(&[]), Err(UdpError::Truncated(0)));
        assert_eq!(decode_udp(&[0, 0, 0]), Err(UdpError::Truncated(3)));
        assert_eq!(
            decode_udp(&[0, 0, 0, 1, 1, 2, 3]),
            Err(UdpError::Truncated(7))
        );
        // Lying domain length: truncated, not over-read.
        assert_eq!(
            decode_udp(&[0, 0, 0, 3, 9, b'a', 0, 1]),
            Err(UdpError::Truncated(8))
        );
        assert_eq!(
            decode_udp(&[0, 0, 0, 7, 0]),
            Err(UdpError::AddressTypeNotSupported(7))
        );
        assert_eq!(
            decode_udp(&[0, 0, 0, 3, 0, 0, 1]),
            Err(UdpError::EmptyDomain)
        );
        assert_eq!(
            decode_udp(&[0, 0, 0, 3, 1, 0x80, 0, 1]),
            Err(UdpError::InvalidDomain(vec![0x80]))
        );
        assert_eq!(UdpError::EmptyDomain.reply(), None);
    }
}
