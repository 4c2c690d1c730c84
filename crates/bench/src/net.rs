//! The raw socket calls the worker roles share: the load generator's sessions (`workers.rs`)
//! and the floor's targets (`floor.rs`) both start nonblocking IPv4 connects.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

pub(crate) fn sockaddr_in(a: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Starts connecting the nonblocking socket `fd` to `dst`: true when it connected at once,
/// false while it is under way (EINPROGRESS).
pub(crate) fn connect_started(fd: RawFd, dst: SocketAddrV4) -> io::Result<bool> {
    let to = sockaddr_in(*dst.ip(), dst.port());
    // SAFETY: a live sockaddr_in and its exact size; the caller's `fd` is open.
    let rc = unsafe {
        libc::connect(
            fd,
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

/// `rc` as a result: a negative return means the error is in errno.
pub(crate) fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
