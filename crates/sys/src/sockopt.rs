//! Socket options that socket2 does not expose.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `IP_BIND_ADDRESS_NO_PORT`: bind an outgoing socket to an address without reserving a port
/// until connect(), so that busy servers do not run out of ephemeral ports (Dante does).
pub fn set_bind_address_no_port(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is a valid open socket for the duration of the call; we pass a pointer to a
    // live c_int and its exact size, as setsockopt(2) requires.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
