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

/// The fields of Linux `TCP_INFO` that `log: tcpinfo` reports, as Dante 1.4 lists them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub rto: u32,
    pub mss: u32,
    pub rtt: u32,
    pub rttvar: u32,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub pmtu: u32,
    pub total_retrans: u32,
    /// `tcpi_options`: TCPI_OPT_TIMESTAMPS 1, _SACK 2, _WSCALE 4, _ECN 8.
    pub options: u8,
}

impl TcpInfo {
    /// Name and value of each field, in the order Dante lists them.
    pub fn fields(&self) -> [(&'static str, u32); 11] {
        [
            ("state", self.state.into()),
            ("ca_state", self.ca_state.into()),
            ("retransmits", self.retransmits.into()),
            ("rto", self.rto),
            ("mss", self.mss),
            ("rtt", self.rtt),
            ("rttvar", self.rttvar),
            ("cwnd", self.cwnd),
            ("ssthresh", self.ssthresh),
            ("pmtu", self.pmtu),
            ("total_retrans", self.total_retrans),
        ]
    }
}

/// Reads `TCP_INFO` from a TCP socket.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; we pass a pointer to a live tcp_info and its size in
    // `len`, which the kernel may shrink (older kernels fill a prefix, the rest stays zero).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut ti as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpInfo {
        state: ti.tcpi_state,
        ca_state: ti.tcpi_ca_state,
        retransmits: ti.tcpi_retransmits,
        rto: ti.tcpi_rto,
        mss: ti.tcpi_snd_mss,
        rtt: ti.tcpi_rtt,
        rttvar: ti.tcpi_rttvar,
        cwnd: ti.tcpi_snd_cwnd,
        ssthresh: ti.tcpi_snd_ssthresh,
        pmtu: ti.tcpi_pmtu,
        total_retrans: ti.tcpi_total_retrans,
        options: ti.tcpi_options,
    })
}

/// Dissolves the association of a connected UDP socket (connect(2) with `AF_UNSPEC`), so that
/// it sends to and receives from any address again.
pub fn udp_disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr is plain old data; all-zero is a valid value for it.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `fd` is a valid open socket for the duration of the call; `sa` is a live sockaddr
    // and we pass its exact size.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    // Linux may report EAFNOSUPPORT for AF_UNSPEC on IPv4 sockets after dissolving the
    // association, as connect(2) documents; the association is gone either way.
    if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EAFNOSUPPORT) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// shutdown(2) both directions of the socket numbered `fd`, by number: a process that must end
/// sessions whose descriptors other tasks own (the relay at the end of a drain) wakes each of
/// them with EOF and lets it close its own. The caller guarantees `fd` is still open (the
/// owner has not closed it yet); an already-shut socket is no error.
pub fn shutdown_both(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) takes two integers and touches no memory of ours; on a number that
    // is not a socket it fails with ENOTSOCK/EBADF.
    let r = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTCONN) => Ok(()),
            _ => Err(e),
        }
    }
}

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
    // SAFETY: `fd` is open for the call; `v` points to a live value of exactly the size we
    // pass, which is what the option at (level, name) takes (the callers pick T by option).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// setsockopt(2) of an int option, by the kernel's numbers (socket options from the
/// configuration, which may name any option, even one by number).
pub fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

/// `SO_LINGER` on for `secs` seconds.
pub fn set_linger_secs(fd: BorrowedFd<'_>, secs: libc::c_int) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: secs,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &l)
}

/// A `struct timeval` option (`SO_RCVTIMEO`, `SO_SNDTIMEO`) of `secs` seconds.
pub fn set_timeval(fd: BorrowedFd<'_>, name: libc::c_int, secs: libc::c_int) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs.into(),
        tv_usec: 0,
    };
    setsockopt(fd, libc::SOL_SOCKET, name, &tv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn tcp_info_of_a_connected_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let ti = tcp_info(c.as_fd()).unwrap();
        // TCP_ESTABLISHED is 1 and loopback has a large MTU.
        assert_eq!(ti.state, 1);
        assert!(ti.pmtu >= 1500, "{ti:?}");
        assert!(tcp_info(l.as_fd()).map(|t| t.state).unwrap() == 10); // TCP_LISTEN
    }
}
