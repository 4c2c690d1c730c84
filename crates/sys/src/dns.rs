//! Reverse name lookup (getnameinfo), which std does not offer. Blocking: call it from the
//! blocking pool.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

/// The name `ip` maps back to, if any (NI_NAMEREQD: no numeric fallback).
pub fn reverse(ip: IpAddr) -> Option<String> {
    let sa: socket2::SockAddr = SocketAddr::new(ip, 0).into();
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `sa` is a valid socket address of `sa.len()` bytes; `host` is a writable buffer
    // whose exact length we pass; the service buffer is null with length 0, which getnameinfo
    // allows. getnameinfo is thread-safe.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
