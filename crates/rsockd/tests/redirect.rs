//! `redirect to:` and `redirect from:` for CONNECT through the real binary: the session reaches
//! the redirected target (with and without a port of its own) while rules still judge the
//! requested one, it leaves from the redirected source address and port, and the log line names
//! the requested and the real addresses. A source of the wrong family is a clear refusal.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// SOCKS5 CONNECT; returns the stream, REP and BND.
fn connect5(proxy: SocketAddr, target: SocketAddr) -> (TcpStream, u8, SocketAddr) {
    let (s, rep, bnd) = socks5_connect_bound(proxy, target);
    (s, rep, bnd.expect("an address in the reply"))
}

#[test]
fn redirect_to_replaces_the_target_and_rules_judge_the_requested_one() {
    let echo = echo_server();
    let asked: SocketAddr = (Ipv4Addr::new(127, 0, 0, 77), free_tcp_port("127.0.0.1")).into();
    let srv = Server::start(&base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 }}\n\
         socks pass {{ from: 0/0 to: {}/32 command: connect\n\
           redirect to: 127.0.0.1 port = {}\n log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect error }}\n",
        asked.ip(),
        echo.addr.port()
    )));
    // Nothing listens at the requested address: only the redirect can answer.
    let (mut s, rep, _) = connect5(srv.addr, asked);
    assert_eq!(rep, 0, "the redirected connect must succeed");
    echo_once(&mut s, b"through the redirect");
    let me = s.local_addr().unwrap();
    let want = format!(
        "info: pass(1): tcp/connect -: {} {} -> {}: redirected to {}",
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(asked),
        dante_addr(echo.addr)
    );
    srv.wait_log("the redirect line", 10, |t| t.contains(&want));
    // The session's own lines name the real target.
    let real = format!("{} {}", dante_addr(me), dante_addr(srv.addr));
    srv.wait_log("the session line with the real target", 10, |t| {
        t.lines().any(|l| {
            l.contains("pass(1): tcp/connect [:")
                && l.contains(&real)
                && l.ends_with(&dante_addr(echo.addr))
        })
    });
    // The echo itself is not the requested target: rule 2 blocks it.
    let (_, rep, _) = connect5(srv.addr, echo.addr);
    assert_eq!(rep, 2, "rules judge the requested target, not the redirect");
}

#[test]
fn redirect_to_without_a_port_keeps_the_requested_port() {
    let echo = echo_server();
    let asked: SocketAddr = (Ipv4Addr::new(127, 0, 0, 78), echo.addr.port()).into();
    let srv = Server::start(&base_config(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 command: connect\nredirect to: 127.0.0.1 log: connect }\n",
    ));
    let (mut s, rep, _) = connect5(srv.addr, asked);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"same port, other host");
    assert_serving(&srv, &echo);
}

#[test]
fn redirect_from_sets_the_source_address_and_port() {
    let (holder, accepted) = holding_server();
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let port = free_tcp_port("127.0.0.1");
    let from = SocketAddr::from(([127, 0, 0, 79], port));
    let srv = Server::start(&redirect_from_config("127.0.0.79", port));
    // The target sees the session come from the redirected address and port.
    let (_held, rep, bnd) = connect5(srv.addr, holder);
    assert_eq!(rep, 0);
    assert_eq!(bnd, from, "BND of the reply");
    let at_target = accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(at_target.peer_addr().unwrap(), from);
    // While that session runs, a second one to another target leaves from the same port
    // (the 4-tuples differ).
    let (mut s, rep, bnd) = connect5(srv.addr, reporter);
    assert_eq!(rep, 0, "a second session from the same fixed source port");
    assert_eq!(bnd, from);
    assert_eq!(String::from_utf8_lossy(&read_all(&mut s)), "127.0.0.79");
    let me = s.local_addr().unwrap();
    let want = format!(
        "info: pass(1): tcp/connect -: {} {} -> {}: redirected from 127.0.0.79.{port}",
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(reporter)
    );
    srv.wait_log("the redirect line", 10, |t| t.contains(&want));
}

#[test]
fn redirect_from_of_the_other_family_is_refused_with_08() {
    let echo = echo_server();
    let srv = Server::start(&base_config(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 redirect from: 127.0.0.80 log: connect error }\n",
    ));
    let (mut s, rep, _) = socks5_connect_bound(srv.addr, "[::1]:80".parse().unwrap());
    assert_eq!(rep, 8, "address type not supported");
    assert!(closed_within(&mut s, 10));
    srv.wait_log("the refusal naming the redirect", 10, |t| {
        t.contains("'redirect from: 127.0.0.80' of socks-rule #1 is of the other family")
    });
    assert_serving(&srv, &echo);
}
