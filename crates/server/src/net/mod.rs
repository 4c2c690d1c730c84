//! Network plumbing of the mothers: interfaces, listening sockets, name resolution and the
//! outgoing connect.

pub mod connect;
pub mod ifaces;
pub mod listen;
pub mod resolve;
pub mod sockets;
