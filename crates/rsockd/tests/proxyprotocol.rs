//! `rsockd.proxyprotocol.from`: connections from a trusted load balancer (here: the test,
//! connecting from 127.254.1.1, an address no test server uses) start with a PROXY v1 or v2
//! header, and the header's source is the client for rules and log lines. A header from
//! anyone else is just a bad SOCKS request; a trusted peer without a valid header is closed
//! with a line naming it; a LOCAL header (a health check) leaves no info line.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use rsockd_proto::proxy;

/// Where the "balancer" connects from; trusted by every config here.
const BALANCER: Ipv4Addr = Ipv4Addr::new(127, 254, 1, 1);
/// A peer in no trusted network.
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 254, 2, 1);

fn config(rules: &str) -> String {
    base_config(&format!(
        "rsockd.proxyprotocol.from: 127.254.1.0/24 fd00:1::/64\n\
         timeout.negotiate: 2\n{rules}"
    ))
}

/// A TCP connection to `to` from `from` (port chosen by the kernel).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// SOCKS5 greeting and CONNECT to `target`, as bytes.
fn socks5_request(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 targets only")
    };
    let mut v = vec![5, 1, 0, 5, 1, 0, 1];
    v.extend_from_slice(&t.ip().octets());
    v.extend_from_slice(&t.port().to_be_bytes());
    v
}

/// Sends `header` and a CONNECT to `target` as one write; returns the stream and REP.
fn connect_through(srv: &Server, header: &[u8], target: SocketAddr) -> (TcpStream, u8) {
    let mut s = connect_from(BALANCER, srv.addr);
    let mut all = header.to_vec();
    all.extend_from_slice(&socks5_request(target));
    s.write_all(&all).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let rep = read_socks5_reply(&mut s);
    (s, rep)
}

#[test]
fn v1_header_names_the_client_for_rules_and_lines() {
    let echo = echo_server();
    let srv = Server::start(&config(OPEN_RULES));
    let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let header = proxy::encode_v1(Some(client), Some(srv.addr));
    let (mut s, rep) = connect_through(&srv, &header, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"behind a balancer");
    let bal = dante_addr(s.local_addr().unwrap());
    drop(s);
    let accept = format!(
        "pass(1): tcp/accept [: 198.51.100.7.40000 via {bal} {}",
        dante_addr(srv.addr)
    );
    let t = srv.wait_log("the accept line naming client and balancer", 10, |t| {
        t.contains(&accept)
    });
    srv.wait_log("the session's end line with the real client", 10, |t| {
        t.lines()
            .any(|l| l.contains("pass(1): tcp/connect ]:") && l.contains("198.51.100.7.40000"))
    });
    // The balancer is named once, on the accept line, and nowhere as a client.
    assert_eq!(t.matches(&bal).count(), 1, "log:\n{t}");
}

#[test]
fn v2_header_with_tlvs_split_over_many_segments() {
    let echo = echo_server();
    let srv = Server::start(&config(OPEN_RULES));
    let client: SocketAddr = "203.0.113.9:5555".parse().unwrap();
    // An ALPN and an authority TLV, as HAProxy sends them.
    let mut tlvs = vec![0x01, 0x00, 0x02];
    tlvs.extend_from_slice(b"h2");
    tlvs.extend_from_slice(&[0x02, 0x00, 0x0b]);
    tlvs.extend_from_slice(b"example.com");
    let header = proxy::encode_v2(Some(client), Some(srv.addr), &tlvs);
    let mut s = connect_from(BALANCER, srv.addr);
    s.set_nodelay(true).unwrap();
    // One byte per segment, the last one together with the SOCKS greeting and request.
    for b in &header[..header.len() - 1] {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut rest = vec![header[header.len() - 1]];
    rest.extend_from_slice(&socks5_request(echo.addr));
    s.write_all(&rest).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    assert_eq!(read_socks5_reply(&mut s), 0);
    echo_once(&mut s, b"v2, byte by byte");
    srv.wait_log("the accept line with the v2 source", 10, |t| {
        t.contains("pass(1): tcp/accept [: 203.0.113.9.5555 via ")
    });
}

#[test]
fn rules_judge_the_header_source_not_the_balancer() {
    let echo = echo_server();
    let srv = Server::start(&config(
        "client block { from: 198.51.100.66/32 to: 0/0 log: connect error }\n\
         client pass { from: 198.51.100.0/24 to: 0/0 log: connect error }\n\
         client block { from: 0/0 to: 0/0 log: connect error }\n\
         socks block { from: 198.51.100.77/32 to: 0/0 log: connect error }\n\
         socks pass { from: 0/0 to: 0/0 log: connect error }\n",
    ));
    // Client rule 1 blocks this client by the header's address.
    let blocked: SocketAddr = "198.51.100.66:1234".parse().unwrap();
    let mut s = connect_from(BALANCER, srv.addr);
    let mut all = proxy::encode_v2(Some(blocked), Some(srv.addr), &[]);
    all.extend_from_slice(&socks5_request(echo.addr));
    s.write_all(&all).unwrap();
    assert!(closed_within(&mut s, 10), "a blocked client is closed");
    srv.wait_log("client rule 1 blocking the header's client", 10, |t| {
        t.contains("block(1): tcp/accept ]: 198.51.100.66.1234 via ")
    });
    // The socks rule judges it too: reply 02 (not allowed by ruleset).
    let refused: SocketAddr = "198.51.100.77:1234".parse().unwrap();
    let (_, rep) = connect_through(
        &srv,
        &proxy::encode_v1(Some(refused), Some(srv.addr)),
        echo.addr,
    );
    assert_eq!(rep, 2);
    // A client of the passed network gets through; the balancer itself (127.254.1.1) would
    // be blocked by client rule 3, so only the header can have let it in.
    let ok: SocketAddr = "198.51.100.5:1234".parse().unwrap();
    let (mut s, rep) =
        connect_through(&srv, &proxy::encode_v1(Some(ok), Some(srv.addr)), echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"passed by the header's address");
}

#[test]
fn an_untrusted_peer_cannot_fake_its_address() {
    let echo = echo_server();
    let srv = Server::start(&config(OPEN_RULES));
    let fake: SocketAddr = "10.9.9.9:999".parse().unwrap();
    for (header, version) in [
        (proxy::encode_v1(Some(fake), Some(srv.addr)), 80),
        (proxy::encode_v2(Some(fake), Some(srv.addr), &[]), 13),
    ] {
        let mut s = connect_from(STRANGER, srv.addr);
        let mut all = header;
        all.extend_from_slice(&socks5_request(echo.addr));
        s.write_all(&all).unwrap();
        let got = read_all(&mut s);
        assert!(got.is_empty(), "no SOCKS reply to a fake header: {got:?}");
        srv.wait_log("the bad-version line naming the real peer", 10, |t| {
            t.contains(&format!(
                "unknown SOCKS version {version} in client request"
            ))
        });
    }
    let t = srv.log_text();
    assert!(
        !t.contains("10.9.9.9"),
        "a stranger's header is never read:\n{t}"
    );
    assert!(t.contains("127.254.2.1."), "lines name the real peer:\n{t}");
    assert_serving(&srv, &echo);
}

#[test]
fn a_trusted_peer_without_a_good_header_is_closed_and_named() {
    let echo = echo_server();
    let srv = Server::start(&config(OPEN_RULES));
    let long_v1 = {
        let mut v = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2".to_vec();
        v.resize(200, b' ');
        v
    };
    let mut big_v2 = proxy::V2_SIGNATURE.to_vec();
    big_v2.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "no header",
            socks5_request(echo.addr),
            ": not a PROXY protocol header",
        ),
        (
            "malformed v1",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(),
            "malformed PROXY v1 header",
        ),
        (
            "oversized v1",
            long_v1,
            "PROXY v1 header longer than 107 bytes",
        ),
        (
            "oversized v2",
            big_v2,
            "PROXY v2 header payload of 4096 bytes is over our limit",
        ),
    ];
    for (what, bytes, reason) in cases {
        let mut s = connect_from(BALANCER, srv.addr);
        s.write_all(&bytes).unwrap();
        assert!(closed_within(&mut s, 10), "{what}: closed");
        let bal = dante_addr(s.local_addr().unwrap());
        let want = format!(
            "block(0): tcp/accept ]: {bal} {}: load balancer's PROXY protocol header refused: ",
            dante_addr(srv.addr)
        );
        srv.wait_log(what, 10, |t| {
            t.lines().any(|l| l.contains(&want) && l.contains(reason))
        });
    }
    // Half a header, then silence: cut after timeout.negotiate (2 s here).
    let mut s = connect_from(BALANCER, srv.addr);
    s.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
    assert!(closed_within(&mut s, 15), "a stalled header is cut");
    srv.wait_log("the stall line", 10, |t| {
        t.contains("no complete header after reading 18 bytes in 2 seconds: negotiate timeout")
    });
    assert_serving(&srv, &echo);
}

#[test]
fn a_local_header_health_check_leaves_no_info_line() {
    let echo = echo_server();
    let srv = Server::start(&config(OPEN_RULES));
    for header in [
        proxy::encode_v2(None, None, &[]),
        proxy::encode_v1(None, None),
    ] {
        // HAProxy's SOCKS5 tcp-check: greeting, method reply, close.
        let mut s = connect_from(BALANCER, srv.addr);
        let mut all = header;
        all.extend_from_slice(&[5, 1, 0]);
        s.write_all(&all).unwrap();
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).unwrap();
        assert_eq!(sel, [5, 0], "the probe is answered");
        drop(s);
    }
    // A real session afterwards, whose lines show the log is written and in order.
    let client: SocketAddr = "198.51.100.8:4444".parse().unwrap();
    let (mut s, rep) = connect_through(
        &srv,
        &proxy::encode_v1(Some(client), Some(srv.addr)),
        echo.addr,
    );
    assert_eq!(rep, 0);
    echo_once(&mut s, b"after the probes");
    drop(s);
    let t = srv.wait_log("the real session's end", 10, |t| {
        t.contains("pass(1): tcp/connect ]: ") && t.contains("198.51.100.8.4444")
    });
    let accepts = t.lines().filter(|l| l.contains("tcp/accept")).count();
    assert_eq!(
        accepts, 2,
        "only the real session's accept lines ([ and ]), none for the probes:\n{t}"
    );
}

#[test]
fn udp_association_of_a_proxied_client_takes_its_datagrams() {
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    target
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let srv = Server::start(&config(OPEN_RULES));
    // The client's datagrams come from its own address, which only the header told us.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = connect_from(BALANCER, srv.addr);
    let mut all = proxy::encode_v2(Some(udp.local_addr().unwrap()), Some(srv.addr), &[]);
    all.extend_from_slice(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
    s.write_all(&all).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    let (rep, relay) = read_socks5_reply_bound(&mut s);
    assert_eq!(rep, 0);
    let relay = relay.unwrap();
    let SocketAddr::V4(t) = target.local_addr().unwrap() else {
        unreachable!()
    };
    let mut dgram = vec![0, 0, 0, 1];
    dgram.extend_from_slice(&t.ip().octets());
    dgram.extend_from_slice(&t.port().to_be_bytes());
    dgram.extend_from_slice(b"datagram");
    udp.send_to(&dgram, relay).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = target.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram");
}
