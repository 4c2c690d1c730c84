//! Socket options from the configuration, read back from the kernel with `ss`: the global
//! `internal.` ones on every client's socket (through the listening socket), the global
//! `external.` ones on every target socket, a client rule's and a socks rule's own on their
//! sessions only; an option the kernel refuses is logged once and the sessions go on.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::procs::wait_until;
use common::*;

/// A CONNECT through `proxy` to `target` and the two sockets' readbacks: the proxy's socket
/// toward the client, and toward the target. The streams are kept open by the caller.
fn session(
    proxy: SocketAddr,
    target: SocketAddr,
    held: &std::sync::mpsc::Receiver<std::net::TcpStream>,
) -> (SockReadback, SockReadback, Vec<std::net::TcpStream>) {
    let (c, rep) = socks5_connect(proxy, target);
    assert_eq!(rep, 0);
    let t = held.recv_timeout(Duration::from_secs(10)).unwrap();
    let client_side = (proxy, c.local_addr().unwrap());
    let target_side = (t.peer_addr().unwrap(), target);
    let mut got = (None, None);
    wait_until("both sockets in ss", 10, || {
        got = (
            sock_readback(client_side.0, client_side.1),
            sock_readback(target_side.0, target_side.1),
        );
        got.0.is_some() && got.1.is_some()
    });
    (got.0.unwrap(), got.1.unwrap(), vec![c, t])
}

#[test]
fn global_and_rule_options_on_both_sides() {
    let (target, held) = holding_server();
    let (other, held_other) = holding_server();
    let srv = Server::start(&base_config(&format!(
        "internal.ip.ip_tos: 16\n\
         external.ip.ip_tos.dscp: af11\n\
         external.tcp.tcp_maxseg: 1000\n\
         client pass {{ from: 0/0 to: 0/0\n internal.socket.so_rcvbuf: 100000\n}}\n\
         socks pass {{ from: 0/0 to: 127.0.0.1/32 port = {}\n\
         external.socket.so_sndbuf: 200000\n internal.socket.so_sndbuf: 150000\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 }}\n",
        target.port()
    )));
    let (client, out, _keep) = session(srv.addr, target, &held);
    // The kernel doubles buffer sizes it is given.
    assert_eq!(client.tos, 0x10, "{client:?}");
    assert_eq!(client.rcvbuf, 200_000, "{client:?}");
    assert_eq!(client.sndbuf, 300_000, "{client:?}");
    assert_eq!(out.tos, 0x28, "{out:?}");
    assert_eq!(out.sndbuf, 400_000, "{out:?}");
    // 1000 less the timestamp option's 12 bytes.
    assert!(out.mss <= 1000 && out.mss >= 900, "{out:?}");
    // The other socks rule: the global options, not the first rule's.
    let (client2, out2, _keep2) = session(srv.addr, other, &held_other);
    assert_eq!(
        (client2.tos, client2.rcvbuf),
        (0x10, 200_000),
        "{client2:?}"
    );
    assert_ne!(client2.sndbuf, 300_000, "{client2:?}");
    assert_eq!(out2.tos, 0x28, "{out2:?}");
    assert_ne!(out2.sndbuf, 400_000, "{out2:?}");
    assert!(out2.mss <= 1000, "{out2:?}");
}

#[test]
fn a_refused_option_is_logged_once_and_sessions_go_on() {
    let (target, held) = holding_server();
    // TCP_MD5SIG takes a key structure: Dante accepts a number here, the kernel refuses it.
    let srv = Server::start(&base_config(
        "client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0\n external.tcp.tcp_md5sig: 1\n external.ip.ip_tos: 8\n}\n",
    ));
    let mut keep = Vec::new();
    for _ in 0..3 {
        let (mut c, rep) = socks5_connect(srv.addr, target);
        assert_eq!(rep, 0);
        let mut t = held.recv_timeout(Duration::from_secs(10)).unwrap();
        use std::io::{Read, Write};
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        t.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        keep.push((c, t));
    }
    let t = srv.wait_log("the refusal", 10, |t| {
        t.contains(
            "warning: setsockopt(): could not set socket option external.tcp.tcp_md5sig to 1: ",
        )
    });
    assert_eq!(t.matches("external.tcp.tcp_md5sig").count(), 1, "{t}");
    // The option after it was still set.
    let (_, t0) = &keep[0];
    let mut out = None;
    wait_until("the target socket in ss", 10, || {
        out = sock_readback(t0.peer_addr().unwrap(), target);
        out.is_some()
    });
    assert_eq!(out.unwrap().tos, 8);
}
