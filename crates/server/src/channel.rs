//! Async control channel: one `SOCK_SEQPACKET` socket between a process and its parent (or
//! between a mother and the auth helper), carrying `rsockd_ipc` messages with descriptors.
//! EOF on it is how a child learns that its mother died, and how a parent learns of a child's
//! death before SIGCHLD tells it how.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rsockd_ipc::{Message, MAX_MESSAGE};
use rsockd_sys::fdpass;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::log;

pub struct Channel {
    fd: AsyncFd<OwnedFd>,
    /// How this process's log lines name the channel (`relay 1.2`, `mother_ipc()`, ...).
    label: String,
    /// One receive buffer for the channel's life (one task receives on a channel at a time).
    buf: RefCell<Box<[u8]>>,
}

impl Channel {
    pub fn new(fd: OwnedFd, label: impl Into<String>) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Channel {
            fd: rsockd_sys::asyncfd::register(fd, Interest::READABLE | Interest::WRITABLE)?,
            label: label.into(),
            buf: RefCell::new(vec![0u8; MAX_MESSAGE].into_boxed_slice()),
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

    /// The next well-formed message and the descriptors that came with it; None once the peer
    /// is gone (EOF, or a reset when it died with messages unread). A message that does not
    /// decode, was cut short or came with the wrong number of descriptors is logged and
    /// skipped: it is a bug in the sender, not a reason to stop listening.
    pub async fn recv<M: Message>(&self) -> Option<(M, Vec<OwnedFd>)> {
        loop {
            let got = loop {
                let mut guard = match self.fd.readable().await {
                    Ok(g) => g,
                    Err(e) => return self.failed(e),
                };
                let mut buf = self.buf.borrow_mut();
                match guard.try_io(|inner| fdpass::recv(inner.get_ref(), &mut buf)) {
                    Ok(Ok(r)) => break r,
                    Ok(Err(e)) => return self.failed(e),
                    Err(_would_block) => continue,
                }
            };
            if got.len == 0 && got.fds.is_empty() {
                return None;
            }
            let decoded = {
                let mut buf = self.buf.borrow_mut();
                let m = M::decode(&buf[..got.len]);
                // Auth queries carry passwords: leave none in memory longer than needed.
                buf[..got.len].fill(0);
                m
            };
            let msg = match decoded {
                _ if got.truncated => {
                    log::error(&format!(
                        "{}: oversized control message dropped",
                        self.label
                    ));
                    continue;
                }
                Ok(m) => m,
                Err(e) => {
                    log::error(&format!("{}: bad control message: {e}", self.label));
                    continue;
                }
            };
            if msg.fds() != got.fds.len() {
                log::error(&format!(
                    "{}: control message came with {} descriptors, expected {}",
                    self.label,
                    got.fds.len(),
                    msg.fds()
                ));
                continue;
            }
            return Some((msg, got.fds));
        }
    }

    fn failed<T>(&self, e: io::Error) -> Option<T> {
        // A peer killed with messages unread resets the channel: that is its death, like EOF.
        if e.kind() != io::ErrorKind::ConnectionReset {
            log::error(&format!("{}: control channel: {e}", self.label));
        }
        None
    }
}
