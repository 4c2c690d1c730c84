//! The same cases against Debian's danted and against rsockd: replies and log line shapes must
//! agree where Dante's behaviour is the contract. Where we differ on purpose (SOCKS4a, reply 07
//! for unknown commands), the protocol tests cover us alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const RULES: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks block { from: 0/0 to: 127.0.0.2/32 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error iooperation }\n";

fn start_danted() -> Option<Danted> {
    start_danted_with(RULES)
}

fn start_danted_with(rules: &str) -> Option<Danted> {
    tool("danted").then(|| Danted::start(&format!("socksmethod: none\n{rules}")))
}

/// Bytes the server sends back for `input` before closing.
fn exchange(proxy: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(input).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    read_all(&mut s)
}

/// Replaces addresses, numbers and the program name so that only the line's shape remains.
fn shape(line: &str) -> String {
    let msg = line.split_once("]: ").map(|x| x.1).unwrap_or(line);
    let mut out = String::new();
    let mut digits = false;
    for c in msg.chars() {
        if c.is_ascii_digit() || c == '.' && digits {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

fn session_shapes(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("tcp/"))
        .map(shape)
        .collect()
}

#[test]
fn replies_and_log_shapes_match_danted() {
    let Some(d) = start_danted() else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let echo = echo_server();
    let srv = Server::start(&base_config(RULES));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut target = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    target.extend_from_slice(&echo.addr.port().to_be_bytes());
    let mut blocked = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 2];
    blocked.extend_from_slice(&echo.addr.port().to_be_bytes());
    let mut refused = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    refused.extend_from_slice(&closed.port().to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no acceptable method", vec![5, 1, 2]),
        ("version 6", vec![6, 1, 0]),
        ("blocked target", blocked),
        ("refused target", refused),
    ];
    for (what, input) in &cases {
        let theirs = exchange(d.addr, input);
        let ours = exchange(srv.addr, input);
        // Compare the verdict bytes (BND differs by design: addresses and ports).
        let verdict = |v: &[u8]| v.iter().take(4).copied().collect::<Vec<u8>>();
        assert_eq!(
            verdict(&ours),
            verdict(&theirs),
            "{what}: ours {ours:?} danted {theirs:?}"
        );
    }
    // A relayed session: same reply code, same bytes back, same log line shapes.
    for proxy in [d.addr, srv.addr] {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&target).unwrap();
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).unwrap();
        assert_eq!(read_socks5_reply(&mut s), 0);
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }
    let wait = |path: &std::path::Path| {
        let start = Instant::now();
        loop {
            let t = std::fs::read_to_string(path).unwrap_or_default();
            // The relayed session's two closing lines come last; a count of `tcp/accept ]`
            // lines alone is reached early on danted, whose start-up probe adds one.
            let done = t.matches("tcp/accept ]").count() >= 5
                && t.matches("local client closed").count() >= 2;
            if done || start.elapsed() > Duration::from_secs(15) {
                return t;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let theirs = session_shapes(&wait(&d.log));
    let ours = session_shapes(&wait(&srv.log));
    for must in [
        "pass(N): tcp/connect [: N N -> N N",
        "pass(N): tcp/connect -: N N -> N N (N)",
        "pass(N): tcp/connect ]: N -> N N -> N, N -> N N -> N: local client closed.  Session duration: Ns",
        "pass(N): tcp/accept ]: N -> N N -> N: local client closed.  Session duration: Ns",
        "block(N): tcp/connect ]: N N -> N N",
        "block(N): tcp/accept ]: N N: blocked by higher-level socks-rule #N",
        "pass(N): tcp/connect ]: N -> N N -> N, N -> N N -> N: remote peer error (Connection refused).  Session duration: Ns",
        "block(N): tcp/accept ]: N N: error after reading N bytes in N seconds: client offered no acceptable authentication method",
        "block(N): tcp/accept ]: N N: error after reading N byte in N seconds: unknown SOCKS version N in client request",
    ] {
        let must = format!("info: {must}");
        assert!(theirs.contains(&must), "danted lacks {must:?}: {theirs:#?}");
        assert!(ours.contains(&must), "rsockd lacks {must:?}: {ours:#?}");
    }
}

/// The lines a server wrote about session limits, in their shape.
fn limit_shapes(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("limit reached"))
        .map(shape)
        .collect()
}

/// Waits until `path` holds `n` lines about session limits (danted logs a moment after it
/// answers).
fn wait_limit_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let shapes = limit_shapes(&text);
        if shapes.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return shapes;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `session.max`, `session.throttle` and their per-address forms in a socks rule, and
/// `session.max` in a client rule:
/// the same replies, the same reset, and lines of the same shape as danted's.
#[test]
fn session_limits_match_danted() {
    for rules in [
        "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 session.max: 1 log: connect disconnect error }\n",
        "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 session.throttle: 1/60 log: connect disconnect error }\n",
        "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 session.state.key: from session.state.max: 1 \
         log: connect disconnect error }\n",
        "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 session.state.key: from session.state.throttle: 1/60 \
         log: connect disconnect error }\n",
    ] {
        let Some(d) = start_danted_with(rules) else {
            panic!("danted is required for differential tests (apt-get install dante-server)");
        };
        let echo = echo_server();
        let srv = Server::start(&base_config(rules));
        let mut replies = Vec::new();
        for proxy in [d.addr, srv.addr] {
            let (_held, first) = socks5_connect(proxy, echo.addr);
            let (_refused, second) = socks5_connect(proxy, echo.addr);
            replies.push((first, second));
        }
        assert_eq!(replies[0], (0, 2), "danted: {rules}");
        assert_eq!(replies[1], replies[0], "rsockd as danted: {rules}");
        let theirs = wait_limit_lines(&d.log, 2);
        let ours = wait_limit_lines(&srv.log, 2);
        assert_eq!(theirs.len(), 2, "{theirs:?}");
        assert_eq!(ours, theirs, "{rules}");
    }
}

#[test]
fn client_rule_session_limit_matches_danted() {
    let rules = "client pass { from: 0/0 to: 0/0 session.max: 1 log: connect disconnect error }\n\
                 socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";
    let Some(d) = start_danted_with(rules) else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let echo = echo_server();
    let srv = Server::start(&base_config(rules));
    // The start-up probe's connection holds danted's only slot until danted has seen it close.
    wait_for_line(&d.log, "tcp/accept ]");
    let mut outcomes = Vec::new();
    for proxy in [d.addr, srv.addr] {
        let (_held, first) = socks5_connect(proxy, echo.addr);
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Closed without a reply: by a reset (which may fail our write, the read then seeing
        // EOF) or, as danted does when the greeting has not arrived yet, by a plain close.
        let wrote = s.write_all(&[5, 1, 0]);
        let mut buf = [0u8; 2];
        let closed = |k: std::io::ErrorKind| {
            matches!(
                k,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        };
        let second = match (wrote, s.read(&mut buf)) {
            (_, Ok(0)) => "closed without a reply".to_string(),
            (_, Err(r)) if closed(r.kind()) => "closed without a reply".to_string(),
            (_, Err(r)) => format!("{:?}", r.kind()),
            (_, Ok(n)) => format!("read {n}"),
        };
        outcomes.push((first, second));
    }
    assert_eq!(outcomes[0].0, 0);
    assert_eq!(outcomes[1], outcomes[0]);
    let theirs = wait_limit_lines(&d.log, 1);
    assert_eq!(wait_limit_lines(&srv.log, 1), theirs);
}

const MONITOR: &str = "client pass { from: 0/0 to: 0/0 }\n\
socks pass { from: 0/0 to: 0/0 }\n\
monitor {\n from: 0/0 to: 0/0\n internal.alarm.data.recv: 100 in 2\n\
 external.alarm.disconnect: 2/50 in 2\n}\n";

/// Waits until the log at `path` has a line containing `what`; returns the log.
fn wait_for_line(path: &std::path::Path, what: &str) -> String {
    let start = Instant::now();
    loop {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        if t.contains(what) {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no {what:?} in {}:\n{t}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same traffic through `proxy`: quiet (alarm raised), 1000 bytes from a client (cleared),
/// then four sessions the target ends (a disconnect alarm); returns the monitor lines' shapes.
fn monitor_story(proxy: SocketAddr, log: &std::path::Path) -> Vec<String> {
    let echo = echo_server();
    let closer = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                drop(s);
            }
        });
        a
    };
    wait_for_line(log, "alarm/data [");
    let (mut s, rep) = socks5_connect(proxy, echo.addr);
    assert_eq!(rep, 0);
    s.write_all(&[1u8; 1000]).unwrap();
    let mut back = [0u8; 1000];
    s.read_exact(&mut back).unwrap();
    wait_for_line(log, "alarm/data ]");
    drop(s);
    for _ in 0..4 {
        let (mut c, rep) = socks5_connect(proxy, closer);
        assert_eq!(rep, 0);
        assert!(closed_within(&mut c, 10));
    }
    let t = wait_for_line(log, "alarm/disconnect ]");
    t.lines()
        .filter(|l| l.contains("monitor("))
        .map(shape)
        .collect()
}

#[test]
fn monitor_alarm_lines_match_danted() {
    let Some(d) = start_danted_with(MONITOR) else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let srv = Server::start(&base_config(MONITOR));
    let (dlog, daddr) = (d.log.clone(), d.addr);
    let theirs = std::thread::spawn(move || monitor_story(daddr, &dlog));
    let ours = monitor_story(srv.addr, &srv.log);
    let theirs = theirs.join().unwrap();
    for must in [
        "warning: monitor(N): alarm/data [: N/N -> N/N internal.recv: N/N in Ns.  Session count: N",
        // (`shape` folds the `.` after the count into the N, as it does in addresses.)
        "warning: monitor(N): alarm/data ]: N/N -> N/N internal.recv: N/N in Ns.  Session count: N  Alarm duration: Ns",
        "warning: monitor(N): alarm/disconnect ]: N/N -> N/N external: N/N disconnects during last Ns.  Session count: N",
    ] {
        assert!(theirs.iter().any(|l| l == must), "danted lacks {must:?}: {theirs:#?}");
        assert!(ours.iter().any(|l| l == must), "rsockd lacks {must:?}: {ours:#?}");
    }
}

/// Connects from `from` (a loopback address of ours) and sends a greeting; returns the
/// client's address once the server has closed.
fn refused_from(from: std::net::Ipv4Addr, proxy: SocketAddr) -> SocketAddr {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&proxy.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = s.local_addr().unwrap();
    let _ = s.write_all(&[5, 1, 0]);
    assert!(read_all(&mut s).is_empty(), "refused without a reply");
    me
}

#[test]
fn srchost_nodnsunknown_matches_danted() {
    // 127.0.0.2 has no name here (/etc/hosts names 127.0.0.1 only, and there is no DNS).
    let rules = "srchost: nodnsunknown\n\
                 client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
                 socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";
    let Some(d) = start_danted_with(rules) else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let srv = Server::start(&base_config(rules));
    let unnamed = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let theirs_from = refused_from(unnamed, d.addr);
    let ours_from = refused_from(unnamed, srv.addr);
    let want = |from: SocketAddr, at: SocketAddr| {
        format!(
            "block(1): tcp/accept ]: {} {}: no dns entry found for srchost {}",
            dante_addr(from),
            dante_addr(at),
            dante_addr(from)
        )
    };
    let theirs = wait_for_line(&d.log, "no dns entry found");
    assert!(theirs.contains(&want(theirs_from, d.addr)), "{theirs}");
    let ours = wait_for_line(&srv.log, "no dns entry found");
    assert!(ours.contains(&want(ours_from, srv.addr)), "{ours}");
    // A client with a name goes on, on both.
    let echo = echo_server();
    for proxy in [d.addr, srv.addr] {
        let (mut s, rep) = socks5_connect(proxy, echo.addr);
        assert_eq!(rep, 0);
        echo_once(&mut s, b"named client");
    }
}

#[test]
fn error_lines_by_errno_match_danted() {
    let rules = "external.log.warning.error: ECONNREFUSED\n\
                 external.log.notice.error: dns-any\n\
                 client pass { from: 0/0 to: 0/0 }\n\
                 socks pass { from: 0/0 to: 0/0 }\n";
    let Some(d) = start_danted_with(rules) else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let srv = Server::start(&base_config(rules));
    let closed = SocketAddr::from(([127, 0, 0, 1], free_tcp_port("127.0.0.1")));
    for (proxy, log) in [(d.addr, &d.log), (srv.addr, &srv.log)] {
        let (_s, rep) = socks5_connect(proxy, closed);
        assert_eq!(rep, 5, "connection refused");
        let want = format!(
            "warning: connect to host {} failed: Connection refused",
            dante_addr(closed)
        );
        wait_for_line(log, &want);
        // A name no resolver knows.
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).unwrap();
        let name = b"nonexist.invalid";
        let mut req = vec![5, 1, 0, 3, name.len() as u8];
        req.extend(name);
        req.extend(80u16.to_be_bytes());
        s.write_all(&req).unwrap();
        let _ = read_all(&mut s);
        wait_for_line(log, "notice: could not DNS-resolve \"nonexist.invalid\": ");
    }
    // The same words after the name: the resolver's text and the family.
    let tail = |path: &std::path::Path| {
        let t = std::fs::read_to_string(path).unwrap();
        t.lines()
            .find_map(|l| l.split("could not DNS-resolve ").nth(1).map(str::to_string))
            .unwrap()
    };
    assert_eq!(tail(&srv.log), tail(&d.log));
}

#[test]
fn socket_options_are_set_where_danted_sets_them() {
    let rules = "internal.ip.ip_tos: 16\n\
                 external.ip.ip_tos.dscp: af11\n\
                 external.tcp.tcp_maxseg: 1000\n\
                 client pass { from: 0/0 to: 0/0 }\n\
                 socks pass { from: 0/0 to: 0/0\n external.socket.so_sndbuf: 200000\n}\n";
    let Some(d) = start_danted_with(rules) else {
        panic!("danted is required for differential tests (apt-get install dante-server)");
    };
    let srv = Server::start(&base_config(rules));
    let (target, held) = holding_server();
    let mut seen = Vec::new();
    for proxy in [d.addr, srv.addr] {
        let (c, rep) = socks5_connect(proxy, target);
        assert_eq!(rep, 0);
        let t = held.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut got = (None, None);
        let start = Instant::now();
        while got.0.is_none() || got.1.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sockets not in ss"
            );
            got = (
                sock_readback(proxy, c.local_addr().unwrap()),
                sock_readback(t.peer_addr().unwrap(), target),
            );
        }
        let (client, out) = (got.0.unwrap(), got.1.unwrap());
        seen.push((client.tos, out.tos, out.sndbuf, out.mss));
    }
    assert_eq!(
        seen[0],
        (0x10, 0x28, 400_000, seen[0].3),
        "danted: {seen:?}"
    );
    assert_eq!(seen[1], seen[0], "rsockd vs danted");
}
