//! Accepting on a listening socket that several mothers share, without waking them all.
//!
//! With `-N`, every mother waits on the same listening socket. Registered directly in each
//! mother's reactor, a new connection wakes every mother, and all but one then fail accept(2)
//! with EAGAIN: a wasted wake-up and system call per mother per client. `EPOLLEXCLUSIVE` makes
//! the kernel wake one waiter, but tokio registers descriptors without it. So each mother puts
//! the listener in a small epoll instance of its own with `EPOLLEXCLUSIVE`, and lets its reactor
//! watch that instance instead: the exclusive wake-up then picks one mother.
//!
//! The listener stays one socket with one backlog, so clients queued behind a mother that dies
//! are accepted by the others (unlike `SO_REUSEPORT`, which gives each its own backlog).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct ExclusiveAccept {
    listener: OwnedFd,
    /// Our epoll instance, holding only `listener`, registered with the reactor.
    inner: AsyncFd<OwnedFd>,
}

impl ExclusiveAccept {
    /// Takes a non-blocking listening socket.
    pub fn new(listener: OwnedFd) -> io::Result<Self> {
        let ep = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(
            &ep,
            &listener,
            EventData::new_u64(0),
            EventFlags::IN | EventFlags::EXCLUSIVE,
        )?;
        let inner = crate::asyncfd::register(ep, Interest::READABLE)?;
        Ok(ExclusiveAccept { listener, inner })
    }

    pub fn listener(&self) -> &OwnedFd {
        &self.listener
    }

    /// The next client: its socket (non-blocking, close-on-exec) and address. Accepts without
    /// waiting while clients are queued; waits for the exclusive wake-up once the queue is empty.
    pub async fn accept(&self) -> io::Result<(OwnedFd, SocketAddr)> {
        loop {
            match rustix::net::acceptfrom_with(
                &self.listener,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            ) {
                Ok((fd, Some(addr))) => match SocketAddr::try_from(addr) {
                    Ok(a) => return Ok((fd, a)),
                    // Not an IP peer: cannot happen on a TCP listener; drop it.
                    Err(_) => continue,
                },
                Ok((_, None)) => continue,
                Err(Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            let mut guard = self.inner.readable().await?;
            // Empty our instance's ready list (level-triggered: it re-checks the listener), so
            // the next client makes it ready again and the reactor hears of it.
            let mut events: Vec<epoll::Event> = Vec::with_capacity(1);
            let _ = epoll::wait(self.inner.get_ref(), &mut events, Some(&ZERO));
            guard.clear_ready();
        }
    }
}

const ZERO: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Clients queued before we wait, and one arriving while we wait, are all accepted with
    /// their own addresses: the exclusive wake-up through our epoll instance is not lost.
    #[tokio::test(flavor = "current_thread")]
    async fn accepts_queued_and_later_clients() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let acc = ExclusiveAccept::new(OwnedFd::from(l)).unwrap();
        let early: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..early.len() {
            let (_fd, peer) = acc.accept().await.unwrap();
            assert!(
                early.iter().any(|e| e.local_addr().unwrap() == peer),
                "{peer}"
            );
        }
        let later = tokio::task::spawn_blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(addr).unwrap()
        });
        let (_fd, peer) = acc.accept().await.unwrap();
        let later = later.await.unwrap();
        assert_eq!(peer, later.local_addr().unwrap());
    }
}
