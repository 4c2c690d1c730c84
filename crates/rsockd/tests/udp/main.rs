//! UDP ASSOCIATE through the real binary: raw SOCKS5 requests and datagrams with exact bytes,
//! UDP echo targets on loopback that record what reached them, Dante's log lines with their
//! counts, the drop rules (strangers, unknown remotes, fragments, bad headers, rules), and a
//! real client (python3-socks). Negative checks are made deterministic where possible: a
//! marker datagram sent after the one that must be dropped proves the relay has handled it.
//! Every wait has a deadline, every socket a read timeout.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::*;
use common::*;

mod dropping;
mod lifetime;
mod relaying;
mod rules;

/// How long a positive wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// How long a negative check listens for something that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// Received datagrams of a UDP echo target: (sender, payload).
type Seen = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP echo target on its own thread: records every datagram, then sends it back.
struct UdpEcho {
    addr: SocketAddr,
    seen: Seen,
    stop: Arc<AtomicBool>,
}

fn udp_echo(bind: &str) -> UdpEcho {
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    thread::spawn(move || {
        let start = Instant::now();
        let mut buf = vec![0u8; 65536];
        while !stop2.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(300) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                seen2.lock().unwrap().push((from, buf[..n].to_vec()));
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    UdpEcho { addr, seen, stop }
}

impl UdpEcho {
    fn saw(&self, payload: &[u8]) -> bool {
        self.seen.lock().unwrap().iter().any(|(_, p)| p == payload)
    }

    /// Waits until `payload` arrived; returns who sent it (our external address).
    fn wait_seen(&self, payload: &[u8]) -> SocketAddr {
        let start = Instant::now();
        loop {
            if let Some((from, _)) = self.seen.lock().unwrap().iter().find(|(_, p)| p == payload) {
                return *from;
            }
            assert!(
                start.elapsed() < WAIT,
                "the target at {} never received {:?}",
                self.addr,
                String::from_utf8_lossy(&payload[..payload.len().min(40)])
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A SOCKS5 address: ATYP, address, port.
fn socks_addr(a: SocketAddr, out: &mut Vec<u8>) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// A datagram for the relay: RSV RSV FRAG, the target, the payload.
fn dgram(target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, 0];
    socks_addr(target, &mut d);
    d.extend_from_slice(payload);
    d
}

/// A datagram naming its target by host name (ATYP 3).
fn dgram_name(name: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 3, name.len() as u8];
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// Splits a datagram from the relay into the address its header names and the payload; the
/// header must be RSV 0, FRAG 0 and ATYP 1 or 4 (the relay names remotes by address).
fn parse_dgram(d: &[u8]) -> (SocketAddr, u8, Vec<u8>) {
    assert!(d.len() >= 10, "short datagram from the relay: {d:?}");
    assert_eq!(d[..3], [0, 0, 0], "RSV and FRAG");
    let (ip, off): (IpAddr, usize) = match d[3] {
        1 => (Ipv4Addr::new(d[4], d[5], d[6], d[7]).into(), 8),
        4 => {
            let b: [u8; 16] = d[4..20].try_into().unwrap();
            (b.into(), 20)
        }
        t => panic!("ATYP {t} in a datagram from the relay"),
    };
    let port = u16::from_be_bytes([d[off], d[off + 1]]);
    (SocketAddr::new(ip, port), d[3], d[off + 2..].to_vec())
}

/// Reads a SOCKS5 reply; returns REP and BND.
fn read_reply(s: &mut TcpStream) -> (u8, SocketAddr) {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 5, "reply version");
    assert_eq!(head[2], 0, "reply RSV");
    let ip: IpAddr = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).unwrap();
            a.into()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).unwrap();
            a.into()
        }
        t => panic!("ATYP {t} in a reply"),
    };
    let mut p = [0u8; 2];
    s.read_exact(&mut p).unwrap();
    (head[1], SocketAddr::new(ip, u16::from_be_bytes(p)))
}

/// Greeting (method none) and UDP ASSOCIATE naming `dst`; returns the control connection,
/// REP and BND.
fn associate(proxy: SocketAddr, dst: SocketAddr) -> (TcpStream, u8, SocketAddr) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = vec![5, 1, 0, 5, 3, 0];
    socks_addr(dst, &mut req);
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0], "method selection");
    let (rep, bnd) = read_reply(&mut s);
    (s, rep, bnd)
}

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// One association: control connection, the relay's address, the client's UDP socket.
struct Assoc {
    ctl: TcpStream,
    relay: SocketAddr,
    sock: UdpSocket,
}

impl Assoc {
    /// UDP ASSOCIATE with DST 0.0.0.0:0 from a fresh socket; REP must be 0.
    fn open(srv: &Server) -> Assoc {
        let sock = client_socket();
        let (ctl, rep, relay) = associate(srv.addr, "0.0.0.0:0".parse().unwrap());
        assert_eq!(rep, 0, "UDP ASSOCIATE refused");
        assert_eq!(relay.ip(), IpAddr::V4(srv.ip), "BND address");
        assert_ne!(relay.port(), 0, "BND port");
        Assoc { ctl, relay, sock }
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, target: SocketAddr, payload: &[u8]) {
        self.sock
            .send_to(&dgram(target, payload), self.relay)
            .unwrap();
    }

    /// The next datagram from the relay (it must come from the relay's address).
    fn recv(&self) -> (SocketAddr, u8, Vec<u8>) {
        let mut buf = vec![0u8; 65536];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no datagram from the relay {}: {e}", self.relay));
        assert_eq!(from, self.relay, "datagram source");
        parse_dgram(&buf[..n])
    }

    /// Whether anything arrives within `QUIET` (for checks that nothing does).
    fn quiet(&self) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(QUIET)).unwrap();
        let mut buf = vec![0u8; 65536];
        let got = self
            .sock
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec());
        self.sock.set_read_timeout(Some(WAIT)).unwrap();
        got
    }

    /// Sends `payload` to the echo `target` and checks the echo: header naming the target,
    /// payload byte-exact.
    fn echo(&self, target: SocketAddr, payload: &[u8]) {
        self.send(target, payload);
        let (from, _, back) = self.recv();
        assert_eq!(from, target, "the reply header names the target");
        assert!(
            back == payload,
            "payload of {} bytes changed",
            payload.len()
        );
    }
}

/// A fresh association carries the message to the UDP echo and back, so the common
/// `assert_serving` works on UDP targets too.
impl EchoTarget for UdpEcho {
    fn round_trip(&self, srv: &Server, msg: &[u8]) {
        Assoc::open(srv).echo(self.addr, msg);
    }
}

/// The line of `log` containing every one of `parts`.
fn line_with<'a>(log: &'a str, parts: &[&str]) -> Option<&'a str> {
    log.lines().find(|l| parts.iter().all(|p| l.contains(p)))
}

fn wait_line(srv: &Server, parts: &[&str]) -> String {
    let log = srv.wait_log(&format!("a line with {parts:?}"), 10, |t| {
        line_with(t, parts).is_some()
    });
    line_with(&log, parts).unwrap().to_string()
}

const IO_RULES: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error iooperation }\n";
