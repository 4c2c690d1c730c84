//! `-d 1` / `-d 2` (and `debug:`): Dante-style debug lines. Level 1 shows the implicit
//! block rule's line, accepts, the negotiated method, name resolution, connect attempts and
//! hand-offs; level 2 adds method offers, login outcomes and the relays' side; no level ever
//! shows a password, and without debug there is no debug line at all.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const RULES: &str = "client pass { from: 127.0.0.1/32 to: 0/0 log: connect disconnect error }\n\
                     socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";

/// A client from 127.0.0.2, which no client rule names: Dante's implicit rule 0 blocks it.
fn unmatched_client(srv: &Server) -> SocketAddr {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    sock.connect(&srv.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    let me = s.local_addr().unwrap();
    let _ = s.write_all(&[5, 1, 0]);
    assert!(closed_within(&mut s, 10));
    me
}

/// A CONNECT by host name (`localhost`) that echoes a few bytes.
fn named_session(srv: &Server, echo: &Echo) {
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    let mut req = vec![5, 1, 0, 3, 9];
    req.extend(b"localhost");
    req.extend(echo.addr.port().to_be_bytes());
    s.write_all(&req).unwrap();
    assert_eq!(read_socks5_reply(&mut s), 0);
    echo_once(&mut s, b"by name");
}

#[test]
fn level_1_shows_the_implicit_block_and_each_step_of_a_session() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(RULES), &["-d", "1"]);
    let blocked = unmatched_client(&srv);
    named_session(&srv, &echo);
    let t = srv.wait_log("the session's lines", 10, |t| {
        t.contains("handing client ") && t.contains("tcp/connect ]")
    });
    assert!(
        t.contains(&format!(
            "debug: block(0): tcp/accept ]: {} {}: no rules matched; using default block rule",
            dante_addr(blocked),
            dante_addr(srv.addr)
        )),
        "{t}"
    );
    for want in [
        "debug: accepted tcp client 127.0.0.1.",
        "matched by client-rule #1",
        "debug: send_negotiate(): client 127.0.0.1.",
        "for command connect using proxyprotocol socks_v5, method none; target localhost.",
        "debug: reqhostisok(): hostname localhost.",
        "debug: socks_connecthost(): connect to 127.0.0.1.",
        "debug: connectstatus(): connect to 127.0.0.1.",
        "debug: handing client 127.0.0.1.",
    ] {
        assert!(t.contains(want), "no {want:?} in\n{t}");
    }
    assert!(
        !t.contains("recv_methods()"),
        "a level 2 line at level 1:\n{t}"
    );
}

#[test]
fn without_debug_there_is_no_debug_line() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(RULES), &[]);
    unmatched_client(&srv);
    named_session(&srv, &echo);
    let t = srv.wait_log("the session's closing line", 10, |t| {
        t.contains("tcp/connect ]")
    });
    assert!(!t.contains(": debug: "), "{t}");
    assert!(!t.contains("block(0)"), "{t}");
}

#[test]
fn level_2_adds_methods_logins_and_relays_but_never_a_password() {
    assert!(rsockd_testkit::is_root(), "the password file is root's");
    let echo = echo_server();
    let (_dir, users) = password_file(&[("dora", "s3cret-pw-42")]);
    let conf = format!(
        "internal: {{IP}} port = 0\nexternal: 127.0.0.1\nsocksmethod: username\n\
         rsockd.users.file: {}\ndebug: 2\n{RULES}",
        users.display()
    );
    let srv = Server::start_with(&conf, &[]);
    let login = |pw: &[u8]| -> [u8; 2] {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[5, 2, 0, 2]).unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).unwrap();
        assert_eq!(m, [5, 2]);
        let mut l = vec![1, 4];
        l.extend(b"dora");
        l.push(pw.len() as u8);
        l.extend(pw);
        s.write_all(&l).unwrap();
        s.read_exact(&mut m).unwrap();
        if m == [1, 0] {
            let SocketAddr::V4(a) = echo.addr else {
                panic!()
            };
            let mut req = vec![5, 1, 0, 1];
            req.extend(a.ip().octets());
            req.extend(a.port().to_be_bytes());
            s.write_all(&req).unwrap();
            assert_eq!(read_socks5_reply(&mut s), 0);
            echo_once(&mut s, b"logged in");
        }
        m
    };
    assert_eq!(login(b"s3cret-pw-42"), [1, 0]);
    assert_eq!(login(b"wrong-pw-17"), [1, 1]);
    let t = srv.wait_log("the relay's line", 10, |t| {
        t.contains("took session") && t.contains("tcp/connect ]")
    });
    for want in [
        "debug: recv_methods(): client offered 2 authentication methods: 0x0 (none), 0x2 \
         (username); sending authentication reply: METHOD: 0x2",
        "debug: recv_sockspacket(): username/password authentication of user \"dora\" succeeded",
        "debug: recv_sockspacket(): username/password authentication of user \"dora\" failed",
        "method username, user dora; target 127.0.0.1.",
        "debug: relay 1.",
    ] {
        assert!(t.contains(want), "no {want:?} in\n{t}");
    }
    assert!(!t.contains("s3cret-pw-42"), "a password in the log");
    assert!(!t.contains("wrong-pw-17"), "a password in the log");
}
