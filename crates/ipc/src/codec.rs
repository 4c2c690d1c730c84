//! Byte-level reader and writer for the message layout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a message could not be decoded. Every variant means a bug or a version mismatch in the
/// sending process, never client input, but we still refuse rather than panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message truncated")]
    Truncated,
    #[error("unsupported message version {0}")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("bad value in field {0}")]
    Field(&'static str),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
        }
    }
    pub(crate) fn addr(&mut self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.buf.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.buf.extend_from_slice(&ip.octets());
            }
        }
        self.buf.extend_from_slice(&a.port().to_le_bytes());
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => String::from_utf8(self.bytes()?)
                .map(Some)
                .map_err(|_| DecodeError::Field(field)),
            _ => Err(DecodeError::Field(field)),
        }
    }
    pub(crate) fn addr(&mut self, field: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => {
                let mut o = [0u8; 4];
                o.copy_from_slice(self.take(4)?);
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Err(DecodeError::Field(field)),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

/// A message one process sends another: its own layout, and the number of descriptors that
/// travel beside it, so a receiver checks both in one place.
pub trait Message: Sized {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError>;
    /// Descriptors that must accompany this message.
    fn fds(&self) -> usize {
        0
    }
}
