//! Registering a raw socket with tokio's reactor, which tokio now marks `unsafe` because the
//! caller must promise the descriptor stays valid while registered.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd` (already non-blocking) for readiness events.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: AsyncFd takes ownership of the OwnedFd, so the descriptor cannot be closed or
    // replaced by anyone else while it is registered; it is deregistered before it is closed
    // when the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into())
}
