//! Which relay holds a session: the inode of the proxy's side of the client connection in
//! /proc/net/tcp, then the relay process with that socket among its descriptors.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use crate::common::*;

pub(crate) fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((
        std::net::Ipv4Addr::from(ip.to_ne_bytes()),
        port,
    )))
}

pub(crate) fn established_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(3) != Some(&"01")
            || parse_hex_addr(f.get(1)?)? != local
            || parse_hex_addr(f.get(2)?)? != remote
        {
            return None;
        }
        f.get(9)?.parse().ok().filter(|i| *i != 0)
    })
}

pub(crate) fn socket_holder(inode: u64) -> Option<i32> {
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !cmdline(pid).starts_with("rsockd: relay ") {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The relay process holding the proxy's side of the connection from `client`; None if it
/// cannot be found within a few tries (the relay died, or the session already ended).
pub(crate) fn relay_of_session(proxy: SocketAddr, client: SocketAddr) -> Option<i32> {
    for _ in 0..5 {
        if let Some(pid) = established_inode(proxy, client).and_then(socket_holder) {
            return Some(pid);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}
