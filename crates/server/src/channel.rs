//! Async control channel: one `SOCK_SEQPACKET` socket between a process and its parent, carrying
//! `rsockd_ipc` messages with descriptors. EOF on it is how a child learns that its mother died.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rsockd_sys::fdpass::{self, Received};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Channel {
    fd: AsyncFd<OwnedFd>,
}

impl Channel {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Channel {
            fd: rsockd_sys::asyncfd::register(fd, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// Sends one message with its descriptors; waits while the peer's queue is full.
    pub async fn send(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| fdpass::send(inner.get_ref().as_fd(), data, fds)) {
                Ok(Ok(n)) if n == data.len() => return Ok(()),
                Ok(Ok(_)) => return Err(io::Error::other("short SEQPACKET send")),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message; `len == 0` and no descriptors means the peer is gone.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| fdpass::recv(inner.get_ref(), buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
