//! Just enough of a SOCKS5 client for the load generator.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(1);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(4);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Reads a SOCKS5 reply; returns (REP, BND address).
pub fn read_reply(s: &mut TcpStream) -> io::Result<(u8, SocketAddr)> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    let ip = match head[3] {
        1 => {
            let mut b = [0u8; 4];
            s.read_exact(&mut b)?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        4 => {
            let mut b = [0u8; 16];
            s.read_exact(&mut b)?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        t => return Err(io::Error::other(format!("address type {t} in reply"))),
    };
    let mut p = [0u8; 2];
    s.read_exact(&mut p)?;
    Ok((head[1], SocketAddr::new(ip, u16::from_be_bytes(p))))
}

/// A user name and password for RFC 1929.
pub type Creds = Option<(String, String)>;

/// How a load generator's client opens its sessions.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub creds: Creds,
    /// Send a PROXY v2 header first, as HAProxy's `send-proxy-v2` does: in one segment with
    /// the client's first bytes (HAProxy writes the header with MSG_MORE when client data is
    /// waiting, as a SOCKS greeting is by the time the connection to the node is up).
    pub proxy_header: bool,
}

/// Connects to `proxy`, negotiates method none and sends `cmd` for `dst`; returns the stream
/// and the first reply.
pub fn request(proxy: SocketAddr, cmd: u8, dst: SocketAddr) -> io::Result<(TcpStream, SocketAddr)> {
    request_as(proxy, cmd, dst, &None)
}

/// As [`request`], with username/password authentication when `creds` is set.
pub fn request_as(
    proxy: SocketAddr,
    cmd: u8,
    dst: SocketAddr,
    creds: &Creds,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let bnd = handshake(&mut s, cmd, dst, creds)?;
    Ok((s, bnd))
}

/// The SOCKS5 exchange on a connected stream: greeting, authentication when `creds` is set,
/// then `cmd` for `dst`; returns the first reply's address. Times out as the stream does.
pub fn handshake(
    s: &mut TcpStream,
    cmd: u8,
    dst: SocketAddr,
    creds: &Creds,
) -> io::Result<SocketAddr> {
    handshake_after(s, &[], cmd, dst, creds)
}

/// [`handshake`], with `prefix` (a PROXY header) in the greeting's write.
fn handshake_after(
    s: &mut TcpStream,
    prefix: &[u8],
    cmd: u8,
    dst: SocketAddr,
    creds: &Creds,
) -> io::Result<SocketAddr> {
    let method = if creds.is_some() { 2 } else { 0 };
    let mut first = prefix.to_vec();
    first.extend_from_slice(&[5, 1, method]);
    s.write_all(&first)?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m)?;
    if m != [5, method] {
        return Err(io::Error::other("method refused"));
    }
    if let Some((user, pass)) = creds {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        s.write_all(&auth)?;
        s.read_exact(&mut m)?;
        if m[1] != 0 {
            return Err(io::Error::other("login refused"));
        }
    }
    let mut req = vec![5, cmd, 0];
    req.extend(addr_bytes(dst));
    s.write_all(&req)?;
    let (rep, bnd) = read_reply(s)?;
    if rep != 0 {
        return Err(io::Error::other(format!("reply {rep}")));
    }
    Ok(bnd)
}

/// The SOCKS5 UDP header for `dst`.
pub fn udp_header(dst: SocketAddr) -> Vec<u8> {
    let mut v = vec![0, 0, 0];
    v.extend(addr_bytes(dst));
    v
}

/// SOCKS5 CONNECT the way curl does it (greeting, then the request; microsocks does not take
/// them in one write), with username/password when `creds` is set.
pub fn connect_as(proxy: SocketAddr, target: SocketAddr, creds: &Creds) -> io::Result<TcpStream> {
    Ok(request_as(proxy, 1, target, creds)?.0)
}

/// CONNECT as `client` says: with its credentials, after a PROXY v2 header if it sends one.
pub fn connect_with(
    proxy: SocketAddr,
    target: SocketAddr,
    client: &Client,
) -> io::Result<TcpStream> {
    if !client.proxy_header {
        return connect_as(proxy, target, &client.creds);
    }
    let mut s = TcpStream::connect(proxy)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let header = rsockd_proto::proxy::encode_v2(Some(s.local_addr()?), Some(proxy), &[]);
    handshake_after(&mut s, &header, 1, target, &client.creds)?;
    Ok(s)
}
