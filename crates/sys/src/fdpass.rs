//! Messages with file descriptors over `SOCK_SEQPACKET` Unix sockets (SCM_RIGHTS).
//!
//! Received descriptors are always close-on-exec (`MSG_CMSG_CLOEXEC`): a descriptor that leaks
//! into an exec'ed child would keep a control channel open and hide a mother's death.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Most descriptors one message may carry: the kernel's SCM_MAX_FD. A batch of hand-offs
/// carries two or three per session.
pub const MAX_FDS: usize = 253;

/// Creates a connected, non-blocking, close-on-exec `SOCK_SEQPACKET` pair.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )?;
    Ok((a, b))
}

/// Sends one message with `fds` attached. Never raises SIGPIPE.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many descriptors in one message",
            ));
        }
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    Ok(n)
}

/// One received message.
pub struct Received {
    /// Bytes of the message; 0 with no descriptors means the peer closed the channel.
    pub len: usize,
    /// Descriptors that came with it, already close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The message or its descriptors did not fit: the caller must treat it as malformed.
    pub truncated: bool,
}

/// Receives one message into `buf`.
pub fn recv(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(iter) = m {
            fds.extend(iter);
        }
    }
    let truncated =
        msg.flags.contains(ReturnFlags::TRUNC) || msg.flags.contains(ReturnFlags::CTRUNC);
    Ok(Received {
        len: msg.bytes,
        fds,
        truncated,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn passes_descriptors_close_on_exec() {
        let (a, b) = seqpacket_pair().unwrap();
        let (p, q) = seqpacket_pair().unwrap();
        send(a.as_fd(), b"hello", &[p.as_fd(), q.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let r = recv(&b, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.fds.len(), 2);
        assert!(!r.truncated);
        for fd in &r.fds {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(
                flags.contains(rustix::io::FdFlags::CLOEXEC),
                "fd {}",
                fd.as_raw_fd()
            );
        }
    }

    /// A batch of hand-offs: as many descriptors as the kernel takes in one message, all of
    /// them received, in order; one more is refused before anything is sent.
    #[test]
    fn passes_a_full_batch_of_descriptors() {
        let (a, b) = seqpacket_pair().unwrap();
        let pairs: Vec<(OwnedFd, OwnedFd)> = (0..MAX_FDS.div_ceil(2))
            .map(|_| seqpacket_pair().unwrap())
            .collect();
        let all: Vec<BorrowedFd<'_>> = pairs
            .iter()
            .flat_map(|(x, y)| [x.as_fd(), y.as_fd()])
            .take(MAX_FDS)
            .collect();
        send(a.as_fd(), b"batch", &all).unwrap();
        let mut buf = [0u8; 64];
        let r = recv(&b, &mut buf).unwrap();
        assert!(!r.truncated);
        assert_eq!(r.fds.len(), MAX_FDS);
        // Same open files, same order: the first of each pair still talks to its second.
        send(r.fds[0].as_fd(), b"ping", &[]).unwrap();
        let got = recv(&pairs[0].1, &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"ping");
        let extra = seqpacket_pair().unwrap();
        let mut too_many = all.clone();
        too_many.push(extra.0.as_fd());
        let e = send(a.as_fd(), b"x", &too_many).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn eof_when_peer_closes() {
        let (a, b) = seqpacket_pair().unwrap();
        drop(a);
        let mut buf = [0u8; 8];
        let r = recv(&b, &mut buf).unwrap();
        assert_eq!(r.len, 0);
        assert!(r.fds.is_empty());
    }

    #[test]
    fn truncation_is_reported() {
        let (a, b) = seqpacket_pair().unwrap();
        send(a.as_fd(), &[7u8; 100], &[]).unwrap();
        let mut buf = [0u8; 10];
        let r = recv(&b, &mut buf).unwrap();
        assert!(r.truncated);
    }
}
