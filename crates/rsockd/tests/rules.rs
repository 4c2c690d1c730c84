//! Client and socks rules through the real server: every address and port form blocking and
//! passing, first match, the implicit block, `command`, `proxyprotocol`, and rule numbers in
//! log lines.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

fn with_rules(rules: &str) -> Server {
    Server::start(&base_config(rules))
}

/// SOCKS5 CONNECT; returns REP, or None when the server closed without a reply.
fn try_connect(proxy: SocketAddr, target: SocketAddr) -> Option<u8> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    if let SocketAddr::V4(a) = target {
        req.extend_from_slice(&a.ip().octets());
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    if s.read_exact(&mut sel).is_err() {
        return None;
    }
    let mut head = [0u8; 10];
    s.read_exact(&mut head).ok()?;
    Some(head[1])
}

fn socks4_connect(proxy: SocketAddr, target: SocketAddr) -> Option<u8> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![4, 1];
    req.extend_from_slice(&target.port().to_be_bytes());
    if let SocketAddr::V4(a) = target {
        req.extend_from_slice(&a.ip().octets());
    }
    req.push(0);
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 8];
    s.read_exact(&mut rep).ok()?;
    Some(rep[1])
}

#[test]
fn no_rules_blocks_everyone() {
    let echo = echo_server();
    let srv = with_rules("");
    assert_eq!(
        try_connect(srv.addr, echo.addr),
        None,
        "no client rule: closed at accept"
    );
}

#[test]
fn client_rule_blocks_by_source_and_first_match_wins() {
    let echo = echo_server();
    let srv = with_rules(
        "client block { from: 127.0.0.0/8 to: 0/0 log: connect error }\n\
         client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    );
    assert_eq!(try_connect(srv.addr, echo.addr), None);
    // Dante's line: the addresses and no reason.
    let t = srv.wait_log("client block line", 10, |t| {
        t.contains("block(1): tcp/accept ]: ")
    });
    let line = t
        .lines()
        .find(|l| l.contains("block(1): tcp/accept ]: "))
        .unwrap();
    let tail = line.split("tcp/accept ]: ").nth(1).unwrap();
    assert_eq!(tail.split(' ').count(), 2, "{line}");
    assert!(tail.ends_with(&dante_addr(srv.addr)), "{line}");
}

#[test]
fn socks_rule_blocks_by_target_net_and_port_forms() {
    let echo = echo_server();
    let port = echo.addr.port();
    let cases: Vec<(String, bool)> = vec![
        (format!("to: 127.0.0.1/32 port = {port}"), true),
        (format!("to: 127.0.0.0/8 port eq {port}"), true),
        (format!("to: 0/0 port != {port}"), false),
        (format!("to: 0/0 port ne {port}"), false),
        (format!("to: 0/0 port >= {port}"), true),
        (format!("to: 0/0 port gt {port}"), false),
        (format!("to: 0/0 port <= {port}"), true),
        (format!("to: 0/0 port lt {port}"), false),
        (format!("to: 0/0 port {}-{}", port - 1, port + 1), true),
        (format!("to: 0/0 port {} - {}", port + 1, port + 2), false),
        ("to: 10.0.0.0/8".to_string(), false),
        ("to: 0.0.0.0/0".to_string(), true),
        ("to: lo".to_string(), true),
        // An IP target matches a name rule through its confirmed reverse name, as in Dante.
        ("to: .localhost".to_string(), true),
        ("to: .example.org".to_string(), false),
    ];
    for (to, blocked) in cases {
        let srv = with_rules(&format!(
            "client pass {{ from: 0/0 to: 0/0 }}\n\
             socks block {{ from: 0/0 {to} log: connect error }}\n\
             socks pass {{ from: 0/0 to: 0/0 }}\n"
        ));
        let rep = try_connect(srv.addr, echo.addr);
        assert_eq!(rep, Some(if blocked { 2 } else { 0 }), "rule `{to}`");
        if blocked {
            srv.wait_log("block line", 10, |t| {
                t.contains("block(1): tcp/connect ]: ") && t.contains(" -> 0.0.0.0.0 127.0.0.1.")
            });
        }
    }
}

#[test]
fn host_and_domain_names_match_requested_names() {
    let echo = echo_server();
    let port = echo.addr.port();
    for (to, blocked) in [
        ("localhost", true),
        (".localhost", true),
        ("example.org", false),
    ] {
        let srv = with_rules(&format!(
            "client pass {{ from: 0/0 to: 0/0 }}\n\
             socks block {{ from: 0/0 to: {to} }}\n\
             socks pass {{ from: 0/0 to: 0/0 }}\n"
        ));
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = vec![5, 1, 0, 5, 1, 0, 3, 9];
        req.extend_from_slice(b"localhost");
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).unwrap();
        assert_eq!(
            read_socks5_reply(&mut s),
            if blocked { 2 } else { 0 },
            "to: {to}"
        );
    }
}

#[test]
fn implicit_block_when_no_socks_rule_matches() {
    let echo = echo_server();
    let srv =
        with_rules("client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 10.0.0.0/8 }\n");
    assert_eq!(try_connect(srv.addr, echo.addr), Some(2));
}

#[test]
fn command_and_proxyprotocol_conditions() {
    let echo = echo_server();
    let srv = with_rules(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks block { from: 0/0 to: 0/0 proxyprotocol: socks_v4 }\n\
         socks pass { from: 0/0 to: 0/0 command: connect }\n",
    );
    assert_eq!(
        socks4_connect(srv.addr, echo.addr),
        Some(91),
        "socks_v4 blocked"
    );
    assert_eq!(try_connect(srv.addr, echo.addr), Some(0), "socks_v5 passes");
    let srv = with_rules(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 command: bind }\n",
    );
    assert_eq!(
        try_connect(srv.addr, echo.addr),
        Some(2),
        "connect not allowed"
    );
}

#[test]
fn rule_numbers_count_per_kind() {
    let echo = echo_server();
    let srv = with_rules(
        "client block { from: 10.0.0.0/8 to: 0/0 }\n\
         client pass { from: 0/0 to: 0/0 log: connect }\n\
         socks block { from: 10.0.0.0/8 to: 0/0 }\n\
         socks block { from: 0/0 to: 10.0.0.0/8 }\n\
         socks pass { from: 0/0 to: 0/0 log: connect disconnect }\n",
    );
    let (s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    drop(s);
    let log = srv.wait_log("lines", 10, |t| t.contains("tcp/connect ]"));
    assert!(log.contains("pass(2): tcp/accept [: "), "{log}");
    assert!(log.contains("pass(3): tcp/connect [: "), "{log}");
}

#[test]
fn per_rule_io_timeout_ends_idle_sessions() {
    let echo = echo_server();
    let srv = with_rules(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 log: disconnect timeout.io: 1 }\n",
    );
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    assert!(closed_within(&mut s, 10), "idle session not cut");
    srv.wait_log("timeout line", 10, |t| {
        t.contains(": i/o timeout.  Session duration: ")
    });
}
