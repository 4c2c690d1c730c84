//! Pure wire codecs for rsockd: SOCKS4/4a, SOCKS5 (RFC 1928), username/password
//! authentication (RFC 1929), the SOCKS5 UDP request header, the PROXY protocol v1/v2 and the
//! ident client (RFC 1413).
//!
//! Invariants every module keeps:
//! - No I/O, no async runtime, no `unsafe`: bytes in, values out. This is what lets the codecs
//!   be unit-tested, property-tested and fuzzed in isolation.
//! - Stream decoders have the shape
//!   `decode(buf: &[u8]) -> Result<Option<(Msg, usize)>, Error>`: `Ok(None)` means "the bytes
//!   so far are a valid prefix, read more and call again"; the `usize` is how many bytes the
//!   message used, and bytes after it (clients may pipeline data) are never consumed. (The
//!   ident reply decoder also takes the ports of its query, which the reply must repeat.)
//! - Every length byte is checked against the buffer before it is used; no input panics.
//! - Every message whose field can be unbounded (SOCKS4 USERID and hostname, PROXY v1/v2, ident
//!   reply lines) has a hard size cap, so a slow or hostile peer cannot make the server buffer
//!   forever.
//! - Datagram decoders (`udp`) see a whole datagram: it is complete or it is bad.
//! - Each module has one error enum; where the error maps to a SOCKS5 reply the server should
//!   send before closing, `reply()` says which.

#![forbid(unsafe_code)]

pub mod addr;
pub mod http_connect;
pub mod ident;
#[doc(hidden)]
pub mod oracle;
pub mod proxy;
mod reply;
pub mod rfc1929;
pub mod socks4;
pub mod socks5;
pub mod udp;

pub use addr::{AddrError, TargetAddr};
pub use reply::Reply;
