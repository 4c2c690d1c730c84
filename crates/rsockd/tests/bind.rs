//! BIND (SOCKS v4 and v5) through the real binary with raw sockets: both replies byte for byte,
//! the peer check, `bindreply` rules, the wait's end (client gone, timeout), `sameport`, the
//! announced address, and Dante's log lines.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use common::*;

const LOGGED: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error iooperation }\n";

fn greet(proxy: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    s
}

/// Reads a SOCKS5 reply with an IPv4 address: (REP, address).
fn reply5(s: &mut TcpStream) -> (u8, SocketAddr) {
    let mut r = [0u8; 10];
    s.read_exact(&mut r).unwrap();
    assert_eq!((r[0], r[2], r[3]), (5, 0, 1), "reply {r:?}");
    let ip = Ipv4Addr::new(r[4], r[5], r[6], r[7]);
    (
        r[1],
        SocketAddr::from((ip, u16::from_be_bytes([r[8], r[9]]))),
    )
}

/// SOCKS5 BIND for `expected`; returns the control connection and the first reply.
fn bind5(proxy: SocketAddr, expected: SocketAddrV4) -> (TcpStream, u8, SocketAddr) {
    let mut s = greet(proxy);
    let mut req = vec![5, 2, 0, 1];
    req.extend_from_slice(&expected.ip().octets());
    req.extend_from_slice(&expected.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let (rep, a) = reply5(&mut s);
    (s, rep, a)
}

fn any_v4(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// Connects to `addr` from `from` (an address on loopback).
fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn socks5_bind_relays_both_ways_with_dantes_lines() {
    let srv = Server::start(&base_config(LOGGED));
    let (mut ctl, rep, bound) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    // The listening socket is on the external address.
    assert_eq!(bound.ip(), std::net::IpAddr::from(Ipv4Addr::LOCALHOST));
    assert_ne!(bound.port(), 0);
    let mut peer = TcpStream::connect(bound).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (rep2, who) = reply5(&mut ctl);
    assert_eq!(rep2, 0);
    assert_eq!(
        who,
        peer.local_addr().unwrap(),
        "second reply names the peer"
    );
    peer.write_all(b"from the peer").unwrap();
    let mut b = [0u8; 13];
    ctl.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"from the peer");
    ctl.write_all(b"from the client").unwrap();
    ctl.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut peer), b"from the client");
    peer.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut ctl).is_empty());
    // The accept line is the last of the three closing lines.
    let log = srv.wait_log("closing lines", 10, |t| {
        t.contains("tcp/bind ]") && t.contains("tcp/accept ]")
    });
    let c = dante_addr(ctl.local_addr().unwrap());
    let p = dante_addr(peer.local_addr().unwrap());
    let b = dante_addr(bound);
    let i = dante_addr(srv.addr);
    // Dante: `pass(1): tcp/bind [: client internal -> bound requested`
    assert!(
        log.contains(&format!(
            "pass(1): tcp/bind [: {c} {i} -> {b} 127.0.0.1.0\n"
        )),
        "{log}"
    );
    // `pass(1): tcp/bindreply [: peer bound -> internal client`
    assert!(
        log.contains(&format!("pass(1): tcp/bindreply [: {p} {b} -> {i} {c}\n")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "pass(1): tcp/bindreply -: {p} {b} -> {i} {c} (13)"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "pass(1): tcp/bindreply -: {c} {i} -> {b} {p} (15)"
        )),
        "{log}"
    );
    // The peer is Dante's "local client" in bindreply lines: the client closing first is
    // "remote peer closed".
    assert!(
        log.contains(&format!(
            "pass(1): tcp/bindreply ]: 15 -> {p} {b} -> 13, 13 -> {i} {c} -> 15: remote peer closed.  Session duration: "
        )),
        "{log}"
    );
    // The bind's own closing line has no counts; the accept line has the client's.
    assert!(
        log.contains(&format!(
            "pass(1): tcp/bind ]: {c} {i} -> {b} 127.0.0.1.0\n"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "pass(1): tcp/accept ]: 13 -> {c} {i} -> 15: remote peer closed.  Session duration: "
        )),
        "{log}"
    );
    assert_serving(&srv, &echo_server());
}

#[test]
fn socks4_bind_two_replies() {
    let srv = Server::start(&base_config(OPEN_RULES));
    let mut ctl = TcpStream::connect(srv.addr).unwrap();
    ctl.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ctl.write_all(&[4, 2, 0, 0, 127, 0, 0, 1, b'u', 0]).unwrap();
    let mut r = [0u8; 8];
    ctl.read_exact(&mut r).unwrap();
    assert_eq!((r[0], r[1]), (0, 90), "{r:?}");
    let port = u16::from_be_bytes([r[2], r[3]]);
    assert_eq!(&r[4..], &[127, 0, 0, 1]);
    let mut peer = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    ctl.read_exact(&mut r).unwrap();
    assert_eq!((r[0], r[1]), (0, 90), "{r:?}");
    let me = peer.local_addr().unwrap();
    assert_eq!(u16::from_be_bytes([r[2], r[3]]), me.port());
    assert_eq!(&r[4..], &[127, 0, 0, 1]);
    peer.write_all(b"v4 data").unwrap();
    let mut b = [0u8; 7];
    ctl.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"v4 data");
}

#[test]
fn peer_from_the_wrong_address_is_refused() {
    let srv = Server::start(&base_config(LOGGED));
    // SOCKS5: expected 127.0.0.2, the peer comes from 127.0.0.1.
    let (mut ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0));
    assert_eq!(rep, 0);
    let mut peer = connect_from(Ipv4Addr::LOCALHOST, bound);
    let (rep2, named) = reply5(&mut ctl);
    assert_eq!(rep2, 2, "second reply: not allowed");
    assert_eq!(
        named,
        peer.local_addr().unwrap(),
        "Dante names the refused peer"
    );
    assert!(closed_within(&mut ctl, 10), "client connection closed");
    assert!(closed_within(&mut peer, 10), "peer connection closed");
    let p = dante_addr(peer.local_addr().unwrap());
    let c = dante_addr(ctl.local_addr().unwrap());
    let path = format!("{p} {} -> {} {c}", dante_addr(bound), dante_addr(srv.addr));
    let log = srv.wait_log("refusal lines", 10, |t| t.contains("tcp/accept ]: "));
    assert!(
        log.contains(&format!(
            "block(0): tcp/bindreply ]: {path}: expected bindreply from 127.0.0.2.0, but got it from {p}\n"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "block(1): tcp/bind ]: {c} {} -> {} 127.0.0.2.0: bind-reply from {p} blocked by socks-rule #0\n",
            dante_addr(srv.addr),
            dante_addr(bound)
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "block(1): tcp/accept ]: {c} {}: bind-reply from {p} blocked by socks-rule #0\n",
            dante_addr(srv.addr)
        )),
        "{log}"
    );
    // SOCKS4: 91.
    let mut ctl = TcpStream::connect(srv.addr).unwrap();
    ctl.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ctl.write_all(&[4, 2, 0, 0, 127, 0, 0, 2, 0]).unwrap();
    let mut r = [0u8; 8];
    ctl.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 90);
    let port = u16::from_be_bytes([r[2], r[3]]);
    let _peer = connect_from(
        Ipv4Addr::LOCALHOST,
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    ctl.read_exact(&mut r).unwrap();
    assert_eq!((r[0], r[1]), (0, 91));
    assert_serving(&srv, &echo_server());
}

#[test]
fn the_peer_port_is_not_enforced() {
    // As in Dante: the request's port is not checked, only its address.
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut ctl, rep, bound) = bind5(srv.addr, any_v4(21));
    assert_eq!(rep, 0);
    let peer = connect_from(Ipv4Addr::LOCALHOST, bound);
    let (rep2, who) = reply5(&mut ctl);
    assert_eq!(rep2, 0);
    assert_eq!(who, peer.local_addr().unwrap());
}

#[test]
fn rules_block_bind_and_bindreply() {
    let conf = base_config(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks block { from: 0/0 to: 127.0.0.3/32 command: bind log: connect error }\n\
         socks block { from: 127.0.0.4/32 to: 0/0 command: bindreply log: connect error }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    );
    let srv = Server::start(&conf);
    // The BIND request itself, to an address a rule blocks.
    let (mut ctl, rep, _) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 0));
    assert_eq!(rep, 2);
    assert!(closed_within(&mut ctl, 10));
    srv.wait_log("bind block line", 10, |t| {
        t.contains("block(1): tcp/bind ]: ")
    });
    // A peer a bindreply rule blocks.
    let (mut ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    assert_eq!(rep, 0);
    let mut peer = connect_from(Ipv4Addr::new(127, 0, 0, 4), bound);
    let (rep2, _) = reply5(&mut ctl);
    assert_eq!(rep2, 2);
    assert!(closed_within(&mut ctl, 10));
    assert!(closed_within(&mut peer, 10));
    srv.wait_log("bindreply block lines", 10, |t| {
        t.contains("block(2): tcp/bindreply ]: 127.0.0.4.")
    });
    // An allowed peer on the next BIND still works.
    let (mut ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    assert_eq!(rep, 0);
    let _peer = connect_from(Ipv4Addr::LOCALHOST, bound);
    assert_eq!(reply5(&mut ctl).0, 0);
    assert_serving(&srv, &echo_server());
}

#[test]
fn client_leaving_ends_the_wait_and_closes_the_port() {
    let srv = Server::start(&base_config(LOGGED));
    let (ctl, rep, bound) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    drop(ctl);
    let log = srv.wait_log("bind end", 10, |t| t.contains("tcp/accept ]: "));
    assert!(log.contains(" 127.0.0.1.0: eof from client\n"), "{log}");
    assert!(log.contains("pass(1): tcp/accept ]: "), "{log}");
    let refused = (0..100).any(|_| {
        let r = TcpStream::connect(bound);
        if r.is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(refused, "the BIND port still accepts after the client left");
    assert_serving(&srv, &echo_server());
}

#[test]
fn io_timeout_ends_a_bind_without_peer() {
    let srv = Server::start(&base_config(&format!("timeout.io: 1\n{LOGGED}")));
    let (mut ctl, rep, _) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    assert!(closed_within(&mut ctl, 15), "closed after the i/o timeout");
    srv.wait_log("timeout line", 10, |t| {
        t.contains("tcp/bind ]: ") && t.contains(": i/o timeout\n")
    });
}

#[test]
fn client_bytes_sent_before_the_peer_reach_it() {
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut ctl, rep, bound) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    ctl.write_all(b"early bytes").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut peer = TcpStream::connect(bound).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(reply5(&mut ctl).0, 0);
    let mut b = [0u8; 11];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"early bytes");
}

/// A privileged port nobody listens on, for `sameport`.
fn free_privileged_port() -> u16 {
    (600..1000)
        .rev()
        .find(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).is_ok())
        .unwrap()
}

#[test]
fn sameport_binds_the_privileged_port_asked_for() {
    if !rsockd_testkit::is_root() {
        eprintln!("skipped: binding a privileged port needs root");
        return;
    }
    let port = free_privileged_port();
    let srv = Server::start(&base_config(OPEN_RULES));
    let (_ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    assert_eq!(rep, 0);
    assert_ne!(
        bound.port(),
        port,
        "without sameport the kernel picks the port"
    );
    let conf = format!(
        "compatibility: sameport\nuser.privileged: root\nuser.unprivileged: nobody\n{OPEN_RULES}"
    );
    let srv = Server::start(&base_config(&conf));
    let (mut ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    assert_eq!(rep, 0);
    assert_eq!(bound.port(), port, "sameport keeps the privileged port");
    let _peer = TcpStream::connect(bound).unwrap();
    assert_eq!(reply5(&mut ctl).0, 0);
}

#[test]
fn announced_bind_address() {
    let srv = Server::start(&base_config(&format!(
        "rsockd.announce.bind: 198.51.100.9\n{OPEN_RULES}"
    )));
    let (mut ctl, rep, announced) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    assert_eq!(announced.ip(), std::net::IpAddr::from([198, 51, 100, 9]));
    // The socket itself is on the external address, with the announced port.
    let _peer = TcpStream::connect((Ipv4Addr::LOCALHOST, announced.port())).unwrap();
    assert_eq!(reply5(&mut ctl).0, 0);
}

#[test]
fn an_unprivileged_port_is_kept_only_for_0_0_0_0() {
    // Dante 1.4.2 (observed): the port of a request for 0.0.0.0 is bound as asked; a request
    // naming the peer's address gets a port the kernel picks.
    let srv = Server::start(&base_config(OPEN_RULES));
    let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let want = free.local_addr().unwrap().port();
    drop(free);
    let (_named, rep, bound) = bind5(srv.addr, any_v4(want));
    assert_eq!(rep, 0);
    assert_ne!(bound.port(), want);
    let (_any, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, want));
    assert_eq!(rep, 0);
    assert_eq!(bound.port(), want);
    // Taken now: the next such request falls back to a port the kernel picks.
    let (mut ctl, rep, bound) = bind5(srv.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, want));
    assert_eq!(rep, 0);
    assert_ne!(bound.port(), want);
    let _peer = TcpStream::connect(bound).unwrap();
    assert_eq!(reply5(&mut ctl).0, 0);
}

/// `redirect from: ADDR port = P` picks the address and port the BIND listens on.
#[test]
fn redirect_from_sets_the_bind_address_and_port() {
    let port = free_tcp_port("127.0.0.82");
    let srv = Server::start(&redirect_from_config("127.0.0.82", port));
    let (mut ctl, rep, bound) = bind5(srv.addr, any_v4(0));
    assert_eq!(rep, 0);
    assert_eq!(bound, SocketAddr::from(([127, 0, 0, 82], port)));
    let mut peer = connect_from(Ipv4Addr::LOCALHOST, bound);
    let (rep2, who) = reply5(&mut ctl);
    assert_eq!((rep2, who), (0, peer.local_addr().unwrap()));
    peer.write_all(b"to the redirected bind").unwrap();
    let mut b = [0u8; 22];
    ctl.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"to the redirected bind");
}
