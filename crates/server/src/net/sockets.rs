//! The sockets a BIND or UDP ASSOCIATE request needs: a listening socket on the external side,
//! and UDP relay sockets (client side from `udp.portrange`, external side on an ephemeral port).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending peers a BIND listener queues; only the first is used, the rest are closed with it.
const BIND_BACKLOG: i32 = 5;

fn privileged(port: u16) -> bool {
    port != 0 && port < 1024
}

/// Runs `f` with the saved uid when `port` needs it, as Dante binds privileged ports.
fn with_port_privilege<T>(port: u16, f: impl FnOnce() -> T) -> T {
    if privileged(port) {
        rsockd_sys::privs::with_saved_uid(f)
    } else {
        f()
    }
}

/// A non-blocking listening socket on `addr` for BIND.
pub fn bind_listener(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    with_port_privilege(addr.port(), || sock.bind(&addr.into()))?;
    sock.listen(BIND_BACKLOG)?;
    Ok(sock)
}

/// A non-blocking UDP socket bound to exactly `addr` (a fixed port needs its privilege).
pub fn udp_on(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    with_port_privilege(addr.port(), || sock.bind(&addr.into()))?;
    Ok(sock)
}

/// A non-blocking UDP socket on `ip` whose port stays fixed for its life. A socket bound to
/// port 0 loses its port when a connect(2) is dissolved (the kernel locks only ports bound
/// explicitly), which would move an association's external address under its targets; so the
/// kernel's pick is bound again explicitly.
pub fn bind_udp_fixed(ip: std::net::IpAddr) -> io::Result<Socket> {
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..8 {
        let probe = udp_on(SocketAddr::new(ip, 0))?;
        let port = probe
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .unwrap_or(0);
        drop(probe);
        match udp_on(SocketAddr::new(ip, port)) {
            Ok(s) => return Ok(s),
            // Someone took it in between; pick again.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A non-blocking UDP socket on `addr`'s IP. With `range`, the port is the first free one in
/// it, starting from a port that varies with `seed` so that concurrent associations do not all
/// probe the same ports; otherwise the kernel picks one.
pub fn bind_udp(addr: SocketAddr, range: Option<(u16, u16)>, seed: u64) -> io::Result<Socket> {
    let Some((lo, hi)) = range else {
        return udp_on(addr);
    };
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let span = u64::from(hi - lo) + 1;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..span {
        let port = lo + ((seed + i) % span) as u16;
        match udp_on(SocketAddr::new(addr.ip(), port)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("no free port in udp.portrange {lo}-{hi} on {}", addr.ip()),
    ))
}
