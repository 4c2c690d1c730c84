//! recvmmsg(2): many datagrams per system call, for busy UDP associations.

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Datagrams taken per call at most.
pub const BATCH: usize = 16;

/// One datagram received into the buffer of the same index.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
}

fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in here (ss_family says so), and
            // sockaddr_storage is large and aligned enough for it.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(sin.sin_addr.s_addr).into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receives up to `bufs.len()` (at most [`BATCH`]) datagrams without waiting; datagram `i`
/// lands in `bufs[i]` and is described by `out[i]`. Returns how many arrived; `WouldBlock`
/// when none is queued. A datagram longer than its buffer is cut (callers give 64 KiB).
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [&mut [u8]],
    out: &mut [Received; BATCH],
) -> io::Result<usize> {
    let n = bufs.len().min(BATCH);
    // SAFETY: iovec, sockaddr_storage and mmsghdr are plain old data; all-zero is valid.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [const { MaybeUninit::zeroed() }; BATCH];
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: bufs[i].len(),
        };
        // SAFETY: a zeroed mmsghdr is valid; we only set pointer fields to live locals.
        let h = unsafe { hdrs[i].assume_init_mut() };
        h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut iov[i];
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `fd` is an open socket; `hdrs[..n]` are initialised and point at `iov`, `names`
    // and the caller's buffers, all alive for the call; the kernel writes at most `n` entries.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr().cast(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = rc as usize;
    let mut kept = 0;
    for i in 0..got {
        // SAFETY: initialised above and filled by the kernel for i < rc.
        let h = unsafe { hdrs[i].assume_init_ref() };
        if let Some(from) = to_socket_addr(&names[i]) {
            out[kept] = Received {
                len: h.msg_len as usize,
                from,
            };
            if kept != i {
                // Keep buffer and description at the same index.
                let (a, b) = bufs.split_at_mut(i);
                a[kept][..h.msg_len as usize].copy_from_slice(&b[0][..h.msg_len as usize]);
            }
            kept += 1;
        }
    }
    Ok(kept)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn batches_and_sources() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut storage = vec![vec![0u8; 64]; 4];
        let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| b.as_mut_slice()).collect();
        let mut out = [Received {
            len: 0,
            from: "0.0.0.0:0".parse().unwrap(),
        }; BATCH];
        let e = recv_batch(rx.as_fd(), &mut bufs, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        for m in [&b"one"[..], b"two", b"three"] {
            tx.send_to(m, rx.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = recv_batch(rx.as_fd(), &mut bufs, &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&bufs[2][..out[2].len], b"three");
        assert_eq!(out[0].from, tx.local_addr().unwrap());
    }
}
