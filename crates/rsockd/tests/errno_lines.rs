//! `internal.log.<level>.error:` / `external.log.<level>.error:` beyond what differential.rs
//! compares with danted: only listed errors get a line, a rule's lists replace the global
//! ones, `EINPROGRESS` gives Dante's "is now in progress" line, and (our extension: Dante
//! writes nothing there) errors on an established session's connections.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::procs::wait_until;
use common::*;

fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_tcp_port("127.0.0.1")))
}

#[test]
fn only_listed_errors_and_the_rules_own_lists() {
    let refused = closed_port();
    let other = closed_port();
    let srv = Server::start(&base_config(&format!(
        "external.log.warning.error: ETIMEDOUT\n\
         client pass {{ from: 0/0 to: 0/0 }}\n\
         socks pass {{ from: 0/0 to: 127.0.0.1/32 port = {}\n\
         external.log.err.error: ECONNREFUSED\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 }}\n",
        refused.port()
    )));
    assert_eq!(socks5_connect(srv.addr, refused).1, 5);
    assert_eq!(socks5_connect(srv.addr, other).1, 5);
    srv.wait_log("the rule's line", 10, |t| {
        t.contains(&format!(
            "error: connect to host {} failed: Connection refused",
            dante_addr(refused)
        ))
    });
    // The second target's rule has no list of its own: the global one does not name
    // ECONNREFUSED.
    std::thread::sleep(Duration::from_millis(300));
    let t = srv.log_text();
    assert!(!t.contains(&dante_addr(other)), "{t}");
    assert!(!t.contains("is now in progress"), "{t}");
}

#[test]
fn in_progress_and_session_errors_on_both_sides() {
    let srv = Server::start(&base_config(
        "external.log.info.error: EINPROGRESS ECONNRESET\n\
         internal.log.warning.error: ECONNRESET\n\
         client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    ));
    // A target that resets the session: the external line.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let taddr = target.local_addr().unwrap();
    let (mut c, rep) = socks5_connect(srv.addr, taddr);
    assert_eq!(rep, 0);
    let (t, _) = target.accept().unwrap();
    srv.wait_log("the in-progress line", 10, |l| {
        l.contains(&format!(
            "info: connect to host {} is now in progress",
            dante_addr(taddr)
        ))
    });
    c.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    socket2::SockRef::from(&t)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(t);
    srv.wait_log("the target's error", 10, |l| {
        l.contains(&format!(
            "info: error on the connection to target {} from ",
            dante_addr(taddr)
        )) && l.contains(": Connection reset by peer")
    });
    // A client that resets its session: the internal line.
    let (c2, rep) = socks5_connect(srv.addr, taddr);
    assert_eq!(rep, 0);
    let (mut t2, _) = target.accept().unwrap();
    t2.write_all(b"to be reset").unwrap();
    let me = c2.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    socket2::SockRef::from(&c2)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c2);
    let want = format!(
        "warning: error on the connection from client {} to {}: Connection reset by peer",
        dante_addr(me),
        dante_addr(srv.addr)
    );
    wait_until("the client's error", 10, || srv.log_text().contains(&want));
    drop(c);
}

/// `.tcp.enabled` / `.tcp.disabled`: a line for the options each side's connection has (or
/// lacks), read back from the kernel (TCP_INFO); what loopback negotiates follows the
/// sysctls, which the test reads.
#[test]
fn tcp_option_lines() {
    let on = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .map(|v| v.trim() != "0")
            .unwrap_or(false)
    };
    let (ts, sack) = (on("tcp_timestamps"), on("tcp_sack"));
    // ECN is negotiated only when the connecting side asks (tcp_ecn = 1).
    let ecn = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ecn")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    let echo = echo_server();
    let srv = Server::start(&base_config(
        "internal.log.info.tcp.enabled: timestamps sack ecn\n\
         external.log.notice.tcp.disabled: ecn timestamps\n\
         client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    ));
    let (mut c, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut c, b"options");
    let me = c.local_addr().unwrap();
    let mut enabled: Vec<&str> = Vec::new();
    if ts {
        enabled.push("timestamps");
    }
    if sack {
        enabled.push("sack");
    }
    if ecn {
        enabled.push("ecn");
    }
    let mut disabled: Vec<&str> = Vec::new();
    if !ecn {
        disabled.push("ecn");
    }
    if !ts {
        disabled.push("timestamps");
    }
    let want_in = format!(
        "info: TCP options enabled on the connection {} -> {}: {}",
        dante_addr(me),
        dante_addr(srv.addr),
        enabled.join(" ")
    );
    let t = srv.wait_log("the internal line", 10, |t| t.contains(&want_in));
    if !disabled.is_empty() {
        let want_out = "notice: TCP options disabled on the connection 127.0.0.1.";
        let t = srv.wait_log("the external line", 10, |t| t.contains(want_out));
        let line = t.lines().find(|l| l.contains(want_out)).unwrap();
        assert!(
            line.ends_with(&format!(
                "-> {}: {}",
                dante_addr(echo.addr),
                disabled.join(" ")
            )),
            "{line}"
        );
    }
    // The external side has no `.tcp.enabled` list: no enabled line names the target.
    assert!(
        !t.lines()
            .any(|l| l.contains("TCP options enabled") && l.contains(&dante_addr(echo.addr))),
        "{t}"
    );
}
