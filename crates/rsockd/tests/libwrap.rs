//! libwrap (tcp_wrappers) through Debian's libwrap: `libwrap.hosts_access: yes` with the
//! tables named by `libwrap.allow:`/`libwrap.deny:` (files the test writes), options in them
//! (`spawn`), and rules' `libwrap:` lines (`spawn`, `deny`), each from real clients on their
//! own loopback addresses; then the same tables in front of danted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::procs::wait_until;
use common::*;

/// A SOCKS5 CONNECT from `from`: the reply code, or None when the server closed first.
fn connect_from(from: Ipv4Addr, proxy: SocketAddr, target: SocketAddr) -> Option<u8> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&proxy.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&[5, 1, 0]).ok()?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m).ok()?;
    let SocketAddr::V4(a) = target else { panic!() };
    let mut req = vec![5, 1, 0, 1];
    req.extend(a.ip().octets());
    req.extend(a.port().to_be_bytes());
    s.write_all(&req).ok()?;
    let rep = read_socks5_reply(&mut s);
    if rep == 0 {
        echo_once(&mut s, b"through libwrap");
    }
    Some(rep)
}

fn wait_file(p: &Path) -> String {
    wait_until("the spawned command's file", 10, || {
        std::fs::read_to_string(p).is_ok_and(|t| t.ends_with('\n'))
    });
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn hosts_access_with_the_configured_tables() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let (allow, deny, mark) = (
        dir.path().join("allow"),
        dir.path().join("deny"),
        dir.path().join("spawned"),
    );
    let (ok_ip, spawn_ip, other_ip) = (next_loopback(), next_loopback(), next_loopback());
    std::fs::write(
        &allow,
        format!(
            "rsockd: {ok_ip}\nrsockd: {spawn_ip}: spawn (echo %a %d > {})\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::write(&deny, "ALL: ALL\n").unwrap();
    let srv = Server::start(&base_config(&format!(
        "libwrap.hosts_access: yes\nlibwrap.allow: {}\nlibwrap.deny: {}\n{OPEN_RULES}",
        allow.display(),
        deny.display()
    )));
    assert_eq!(connect_from(ok_ip, srv.addr, echo.addr), Some(0));
    assert_eq!(
        connect_from(other_ip, srv.addr, echo.addr),
        None,
        "hosts.deny: closed before any SOCKS byte"
    );
    assert_eq!(connect_from(spawn_ip, srv.addr, echo.addr), Some(0));
    assert_eq!(wait_file(&mark).trim(), format!("{spawn_ip} rsockd"));
    // The tables are read for every client: an edit takes effect at once.
    std::fs::write(&deny, "").unwrap();
    assert_eq!(connect_from(other_ip, srv.addr, echo.addr), Some(0));
    assert_serving(&srv, &echo);
}

#[test]
fn rule_libwrap_lines() {
    let echo = echo_server();
    let closed_target = SocketAddr::from(([127, 0, 0, 1], free_tcp_port("127.0.0.1")));
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("spawned");
    let (denied_ip, ok_ip) = (next_loopback(), next_loopback());
    let srv = Server::start(&base_config(&format!(
        "client pass {{ from: {denied_ip}/32 to: 0/0 log: connect error\n libwrap: deny\n}}\n\
         client pass {{ from: 0/0 to: 0/0 log: connect error\n libwrap: spawn (echo %a > {})\n}}\n\
         socks pass {{ from: 0/0 to: 127.0.0.1/32 port = {} log: connect error\n libwrap: deny\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect error }}\n",
        mark.display(),
        closed_target.port()
    )));
    // A client rule's spawn runs for its client.
    assert_eq!(connect_from(ok_ip, srv.addr, echo.addr), Some(0));
    assert_eq!(wait_file(&mark).trim(), ok_ip.to_string());
    // A client rule whose line denies: its block line and Dante's warning.
    assert_eq!(connect_from(denied_ip, srv.addr, echo.addr), None);
    srv.wait_log("the client rule's block", 10, |t| {
        t.contains("block(1): tcp/accept ]: ") && t.contains(&format!("{denied_ip}."))
    });
    // A socks rule whose line denies: reply 02.
    assert_eq!(connect_from(ok_ip, srv.addr, closed_target), Some(2));
    let t = srv.wait_log("the socks rule's block", 10, |t| {
        t.contains("block(1): tcp/connect ]: ") && t.contains("failed libwrap line")
    });
    assert!(
        t.contains("warning: rulespermit(): failed libwrap line: \"deny\""),
        "{t}"
    );
    assert_serving(&srv, &echo);
}

/// The same tables in front of danted and rsockd (both daemon names listed): the client the
/// tables refuse gets no SOCKS byte from either, the other is served by both.
#[test]
fn hosts_access_matches_danted() {
    assert!(
        tool("danted"),
        "danted is required (apt-get install dante-server)"
    );
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let (allow, deny) = (dir.path().join("allow"), dir.path().join("deny"));
    let (ok_ip, other_ip) = (next_loopback(), next_loopback());
    std::fs::write(&allow, format!("danted rsockd: {ok_ip}\n")).unwrap();
    std::fs::write(&deny, "ALL: ALL\n").unwrap();
    let body = format!(
        "libwrap.hosts_access: yes\nlibwrap.allow: {}\nlibwrap.deny: {}\n{OPEN_RULES}",
        allow.display(),
        deny.display()
    );
    let srv = Server::start(&base_config(&body));
    let d = Danted::start(&format!("socksmethod: none\n{body}"));
    let got: Vec<_> = [d.addr, srv.addr]
        .iter()
        .map(|p| {
            (
                connect_from(ok_ip, *p, echo.addr),
                connect_from(other_ip, *p, echo.addr),
            )
        })
        .collect();
    assert_eq!(got[0], (Some(0), None), "danted");
    assert_eq!(got[1], got[0], "rsockd vs danted");
}
