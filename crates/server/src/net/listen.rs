//! The `internal:` listening sockets. Created once by mother 1 and shared (inherited) by every
//! mother: a shared socket keeps the clients queued in its backlog when one mother dies, where
//! per-process SO_REUSEPORT sockets would reset them.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Dante's listen backlog.
pub const BACKLOG: i32 = 511;

/// Binds and listens on `addr`; the socket is non-blocking and close-on-exec.
pub fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    sock.listen(BACKLOG)?;
    Ok(sock)
}
