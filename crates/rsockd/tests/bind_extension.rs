//! Dante's BIND extension (`extension: bind`) with raw sockets, as Dante's client library
//! speaks it: a BIND naming 255.255.255.255, a listening socket on the client's control
//! address, every peer forwarded there on a connection of its own, and the client's query on
//! the control connection naming that connection, answered with the peer's address. Against
//! danted (1.4.2) where it works the same: the first reply and the BIND lines, the
//! connection back, and the lines when the client cannot be reached. (1.4.2 closes the
//! control connection at the first query, and its own client library fails before sending
//! one, so the query is checked against Dante's sources, not its binary.)
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::procs::wait_until;
use common::*;

const LOGGED: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";

fn reuse_socket(bind: SocketAddr) -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&bind.into()).unwrap();
    s
}

/// The control connection from a fresh loopback address, and (when `listen`) a listening
/// socket on the same address and port, as Dante's client has.
fn control(proxy: SocketAddr, listen: bool) -> (TcpStream, Option<TcpListener>) {
    let s = reuse_socket(SocketAddr::from((next_loopback(), 0)));
    s.connect(&proxy.into()).unwrap();
    let ctl: TcpStream = s.into();
    ctl.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let l = listen.then(|| {
        let l = reuse_socket(ctl.local_addr().unwrap());
        l.listen(8).unwrap();
        let l: TcpListener = l.into();
        l
    });
    (ctl, l)
}

fn reply5(s: &mut TcpStream) -> (u8, SocketAddr) {
    let mut r = [0u8; 10];
    s.read_exact(&mut r).unwrap();
    assert_eq!((r[0], r[3]), (5, 1), "reply {r:?}");
    (
        r[1],
        SocketAddr::from((
            Ipv4Addr::new(r[4], r[5], r[6], r[7]),
            u16::from_be_bytes([r[8], r[9]]),
        )),
    )
}

fn request5(cmd: u8, a: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = a else { panic!() };
    let mut req = vec![5, cmd, 0, 1];
    req.extend(a.ip().octets());
    req.extend(a.port().to_be_bytes());
    req
}

/// Greeting and the extension BIND; the first reply.
fn extension_bind(ctl: &mut TcpStream) -> (u8, SocketAddr) {
    ctl.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    ctl.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let port = ctl.local_addr().unwrap().port();
    ctl.write_all(&request5(2, SocketAddr::from((Ipv4Addr::BROADCAST, port))))
        .unwrap();
    reply5(ctl)
}

fn line_tail<'a>(log: &'a str, marker: &str) -> Option<&'a str> {
    log.lines().find_map(|l| l.find(marker).map(|i| &l[i..]))
}

#[test]
fn every_peer_is_forwarded_and_named_by_the_query() {
    let srv = Server::start(&base_config(&format!("extension: bind\n{LOGGED}")));
    let (mut ctl, l) = control(srv.addr, true);
    let l = l.unwrap();
    l.set_nonblocking(false).unwrap();
    let (rep, bound) = extension_bind(&mut ctl);
    assert_eq!(rep, 0);
    // Dante binds the port the control connection comes from, when it is free.
    assert_eq!(bound.port(), ctl.local_addr().unwrap().port());
    for i in 0..3u8 {
        let mut peer = TcpStream::connect(bound).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let (mut fwd, from) = l.accept().unwrap();
        fwd.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        assert_eq!(
            from.ip(),
            srv.addr.ip(),
            "forwarded from our internal address"
        );
        ctl.write_all(&request5(2, from)).unwrap();
        let (rep, named) = reply5(&mut ctl);
        assert_eq!((rep, named), (0, peer.local_addr().unwrap()), "peer {i}");
        peer.write_all(&[b'p', i]).unwrap();
        let mut b = [0u8; 2];
        fwd.read_exact(&mut b).unwrap();
        assert_eq!(b, [b'p', i]);
        fwd.write_all(&[b'c', i]).unwrap();
        peer.read_exact(&mut b).unwrap();
        assert_eq!(b, [b'c', i]);
        if i == 1 {
            // One stays open while the others come and go.
            std::mem::forget(peer);
            std::mem::forget(fwd);
        }
    }
    // A connection we did not make: 0.0.0.0:0.
    ctl.write_all(&request5(2, SocketAddr::from(([127, 0, 0, 1], 9))))
        .unwrap();
    assert_eq!(reply5(&mut ctl), (0, SocketAddr::from(([0, 0, 0, 0], 0))));
    drop(ctl);
    let t = srv.wait_log("the BIND's end", 15, |t| {
        t.contains("tcp/bind ]: ") && t.contains(": eof from client")
    });
    assert_eq!(t.matches("tcp/bindreply [: ").count(), 3, "{t}");
    let bind = line_tail(&t, "pass(1): tcp/bind [: ").unwrap();
    assert!(bind.ends_with(" 0.0.0.0.0"), "{bind}");
    assert_serving(&srv, &echo_server());
}

#[test]
fn without_the_keyword_the_extension_is_refused() {
    let srv = Server::start(&base_config(LOGGED));
    let (mut ctl, _l) = control(srv.addr, true);
    assert_eq!(extension_bind(&mut ctl).0, 2);
    srv.wait_log("the refusal", 10, |t| {
        t.contains("client requested disabled Dante extension: bind")
    });
}

/// Where danted 1.4.2 works: the first reply's port, the connection back to the client's
/// address, the BIND's opening line; and with nobody listening there, its three lines.
#[test]
fn matches_danted() {
    let body = format!("extension: bind\n{LOGGED}");
    let d = Danted::start(&format!("socksmethod: none\n{body}"));
    let srv = Server::start(&base_config(&body));
    let mut seen = Vec::new();
    for (proxy, log) in [(d.addr, d.log.clone()), (srv.addr, srv.log.clone())] {
        let text = || std::fs::read_to_string(&log).unwrap_or_default();
        let (mut ctl, l) = control(proxy, true);
        let l = l.unwrap();
        let me = ctl.local_addr().unwrap();
        let (rep, bound) = extension_bind(&mut ctl);
        let peer = TcpStream::connect(bound).unwrap();
        let (_fwd, from) = l.accept().unwrap();
        let shape = |t: &str, marker: &str| {
            line_tail(t, marker).map(|l| {
                l.replace(&dante_addr(me), "CLIENT")
                    .replace(&dante_addr(proxy), "PROXY")
                    .replace(&dante_addr(bound), "BOUND")
            })
        };
        wait_until("the bind line", 10, || text().contains("tcp/bind [: "));
        let opened = shape(&text(), "pass(1): tcp/bind [: ");
        drop((ctl, peer));
        // Nobody listening at the client's address: the BIND ends with Dante's lines.
        let (mut ctl, _) = control(proxy, false);
        let me = ctl.local_addr().unwrap();
        let (_, bound) = extension_bind(&mut ctl);
        let peer = TcpStream::connect(bound).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        wait_until("the accept line", 15, || {
            text().contains(&format!("tcp/accept ]: {} ", dante_addr(me)))
        });
        let t = text();
        let generic = |l: Option<String>| {
            l.map(|l| {
                let l = l
                    .replace(&dante_addr(me), "CLIENT")
                    .replace(&dante_addr(proxy), "PROXY")
                    .replace(&dante_addr(bound), "BOUND")
                    .replace(&dante_addr(peer_addr), "PEER");
                // The forwarding socket: our internal address, a port of its own.
                let ours = format!("{}.", proxy.ip());
                let words: Vec<String> = l
                    .split(' ')
                    .map(|w| {
                        if w.starts_with(&ours) {
                            "INTERNAL.P".to_string()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect();
                words.join(" ")
            })
        };
        let ended = [
            generic(line_tail(&t, "block(1): tcp/bindreply ]: ").map(str::to_string)),
            generic(
                line_tail(&t, &format!("block(1): tcp/bind ]: {}", dante_addr(me)))
                    .map(str::to_string),
            ),
            generic(
                line_tail(&t, &format!("block(1): tcp/accept ]: {}", dante_addr(me)))
                    .map(str::to_string),
            ),
        ];
        seen.push((rep, from.ip() == proxy.ip(), opened, ended));
        drop(peer);
    }
    assert_eq!(seen[0].0, 0, "danted: {seen:?}");
    assert!(seen[0].1, "danted connects back from its internal address");
    assert!(seen[0].3.iter().all(Option::is_some), "danted: {seen:?}");
    assert_eq!(seen[1], seen[0], "rsockd vs danted");
}
