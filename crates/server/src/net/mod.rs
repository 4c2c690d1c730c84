//! Network plumbing of the mothers: interfaces, listening sockets, name resolution and the
//! outgoing connect, and the ident (RFC 1413) lookup of the `rfc931` method.

pub mod activation;
pub mod chain;
pub mod connect;
pub mod ident;
pub mod ifaces;
pub mod libwrap;
pub mod listen;
pub mod resolve;
pub mod rotation;
pub mod sockets;
pub mod sockopts;
pub mod srchost;
