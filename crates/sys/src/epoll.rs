//! A bare epoll set on libc calls, for loops that drive their own sockets: the bench's floor
//! relay and its echo target (the server waits through tokio, and `accept.rs`). Each method is
//! one system call, inlined, with no allocation and no copy of the events: the floor's speed
//! is what the bench compares proxies with, so these add nothing to it.
//!
//! The events are libc's `epoll_event`; `data` is the caller's token (`epoll_event.u64`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An epoll instance (created close-on-exec), closed on drop.
pub struct Epoll(OwnedFd);

impl Epoll {
    /// epoll_create1(EPOLL_CLOEXEC).
    #[inline]
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1(2) takes no pointers and has no memory effects.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1, is open, and nothing else owns it.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// epoll_ctl(2) `op` on `fd` with `events` and the token `data`.
    #[inline]
    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: both descriptors are open for the call (`self` owns the epoll one, `fd` is
        // borrowed); `ev` is a live epoll_event that the kernel only reads.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// EPOLL_CTL_ADD: `fd` reports `events` with the token `data`.
    #[inline]
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    /// EPOLL_CTL_MOD: `fd`, already in the set, now reports `events` with the token `data`.
    #[inline]
    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    /// EPOLL_CTL_DEL: `fd` leaves the set. (Closing the last descriptor of a file does the
    /// same.) An event is passed, as kernels before 2.6.9 required; it is ignored.
    #[inline]
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, libc::EPOLLIN as u32, 0)
    }

    /// epoll_wait(2) into `evs` for at most `timeout_ms` (-1: as long as it takes): how many
    /// of `evs` the kernel filled. An interrupting signal is the error `Interrupted`; retrying
    /// or not is the caller's choice.
    #[inline]
    pub fn wait(
        &self,
        evs: &mut [libc::epoll_event],
        timeout_ms: libc::c_int,
    ) -> io::Result<usize> {
        let max = evs.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: `evs` is live and writable for `max` <= evs.len() events, and the kernel
        // writes at most `max`; the epoll descriptor is open (owned by `self`).
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_the_token_of_a_readable_descriptor() {
        let ep = Epoll::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        ep.add(b.as_fd(), libc::EPOLLIN as u32, 7).unwrap();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        a.write_all(b"x").unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let (token, events) = (evs[0].u64, evs[0].events);
        assert_eq!((token, events), (7, libc::EPOLLIN as u32));
        ep.modify(b.as_fd(), libc::EPOLLIN as u32, 9).unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let token = evs[0].u64;
        assert_eq!(token, 9);
        ep.delete(b.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        assert!(ep.delete(b.as_fd()).is_err());
    }
}
