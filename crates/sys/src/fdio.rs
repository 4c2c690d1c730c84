//! Raw descriptor calls for loops that drive their own nonblocking sockets (the bench's floor
//! relay, its load generator and echo target; see `epoll.rs`): IPv4 TCP sockets made, bound,
//! connected, listened and accepted on, read, written, shut down and polled, one libc call
//! each. Every wrapper is inlined, allocates nothing and copies nothing, so a loop built on
//! them makes the same system calls as one that calls libc itself.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

#[inline]
fn sockaddr_in(a: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    }
}

#[inline]
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[inline]
fn check_size(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A fresh descriptor returned by socket(2) or accept4(2), or the error.
#[inline]
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by the kernel (checked non-negative), so it is open, and
    // nothing else in the process owns it yet.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0).
#[inline]
pub fn tcp4_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers and has no memory effects.
    owned(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
}

/// bind(2) of the IPv4 socket `fd` to `addr` (port 0: left to the kernel).
#[inline]
pub fn bind4(fd: BorrowedFd<'_>, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr_in(*addr.ip(), addr.port());
    // SAFETY: `fd` is open for the call; `sa` is a live sockaddr_in and we pass its exact
    // size; the kernel only reads it.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Starts connecting the nonblocking IPv4 socket `fd` to `dst`: true when it connected at
/// once, false while it is under way (EINPROGRESS).
#[inline]
pub fn connect4_started(fd: BorrowedFd<'_>, dst: SocketAddrV4) -> io::Result<bool> {
    let to = sockaddr_in(*dst.ip(), dst.port());
    // SAFETY: `fd` is open for the call; `to` is a live sockaddr_in and we pass its exact
    // size; the kernel only reads it.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// listen(2) with `backlog`: std's listeners use 128, and thousands of connects can arrive
/// at once.
#[inline]
pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen(2) on a descriptor open for the call; no pointers, no memory effects.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// accept4(2) on the listener `fd` with SOCK_NONBLOCK | SOCK_CLOEXEC, without the peer's
/// address. The error is the kernel's as is (EAGAIN, EMFILE, ...), for the caller to sort.
#[inline]
pub fn accept4_nonblocking(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open for the call; null address and length pointers are allowed and
    // mean the peer's address is not wanted, so the kernel writes no memory of ours.
    owned(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })
}

/// One read(2) from `fd` into `buf`: the bytes read (0: end of file). No buffering, so a
/// caller waiting in epoll never leaves data in a buffer of ours where epoll cannot see it.
#[inline]
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for its whole length, which is what we pass; `fd` is
    // open for the call.
    check_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// One send(2) of `data` on the socket `fd` with MSG_NOSIGNAL (a reset peer gives EPIPE, not
/// SIGPIPE): the bytes the socket took.
#[inline]
pub fn send_nosignal(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is live and readable for its whole length, which is what we pass; `fd` is
    // open for the call.
    check_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
        )
    })
}

/// shutdown(SHUT_WR): the peer reads end of file once what was sent has arrived.
#[inline]
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown(2) on a descriptor open for the call; no pointers, no memory effects.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) }).map(drop)
}

/// The socket's pending error (SO_ERROR), such as why a nonblocking connect failed; None when
/// there is none or getsockopt itself fails.
#[inline]
pub fn take_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `err` is a live c_int and `len` holds its exact size,
    // as getsockopt(2) requires; the kernel writes at most `len` bytes to it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
}

/// Whether `fd` becomes ready for `events` (POLLIN, POLLOUT, ...) within `timeout`: one
/// poll(2), not retried if a signal interrupts it.
#[inline]
pub fn poll_ready(fd: BorrowedFd<'_>, events: libc::c_short, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is one live pollfd and we pass a count of 1; its descriptor is open for the
    // call.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn connect_accept_relay_and_shut_down() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        listen(l.as_fd(), 16).unwrap();
        let std::net::SocketAddr::V4(to) = l.local_addr().unwrap() else {
            panic!("not IPv4")
        };
        // Nothing queued yet: the nonblocking listener says so.
        l.set_nonblocking(true).unwrap();
        let e = accept4_nonblocking(l.as_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        let c = tcp4_socket().unwrap();
        bind4(c.as_fd(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        if !connect4_started(c.as_fd(), to).unwrap() {
            assert!(poll_ready(c.as_fd(), libc::POLLOUT, Duration::from_secs(5)));
        }
        assert!(take_error(c.as_fd()).is_none());
        assert!(poll_ready(l.as_fd(), libc::POLLIN, Duration::from_secs(5)));
        let s = accept4_nonblocking(l.as_fd()).unwrap();

        let mut buf = [0u8; 16];
        let e = read(s.as_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "accepted nonblocking");
        assert_eq!(send_nosignal(c.as_fd(), b"hello").unwrap(), 5);
        assert!(poll_ready(s.as_fd(), libc::POLLIN, Duration::from_secs(5)));
        assert_eq!(read(s.as_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        shutdown_write(c.as_fd()).unwrap();
        assert!(poll_ready(s.as_fd(), libc::POLLIN, Duration::from_secs(5)));
        assert_eq!(read(s.as_fd(), &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_refused_connect_leaves_its_error() {
        // A port that was just free: nothing listens on it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = tcp4_socket().unwrap();
        match connect4_started(c.as_fd(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED)),
            Ok(true) => panic!("connected to a closed port"),
            Ok(false) => {
                assert!(poll_ready(c.as_fd(), libc::POLLOUT, Duration::from_secs(5)));
                let e = take_error(c.as_fd()).unwrap();
                assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
            }
        }
    }
}
