//! Session limits through the real binary: `session.max` and `session.throttle` in socks and
//! client rules, Dante's replies and lines, exact across `-N 4` mothers and their relays, and
//! slots that come back when the process holding them is SIGKILLed. Every wait polls with a
//! deadline; sessions are held open by the test until it says so.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{mother_pid, relays_of, SIGKILL};
use common::*;

const SIGUSR1: i32 = 10;

fn socks(limits: &str) -> String {
    base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 {limits} log: connect disconnect error }}\n"
    ))
}

/// A session that must be admitted: reply 00 and one echo through it.
fn admitted(proxy: SocketAddr, echo: &Echo) -> TcpStream {
    let (mut s, rep) = socks5_connect(proxy, echo.addr);
    assert_eq!(rep, 0, "the session must be admitted");
    echo_once(&mut s, b"within the limit");
    s
}

/// One CONNECT through `proxy`: its reply code, or None when the connection closed before a
/// reply (a session handed to a relay in the instant it was SIGKILLed is lost with it).
fn try_connect(proxy: SocketAddr, target: SocketAddr) -> Option<(TcpStream, u8)> {
    let mut s = TcpStream::connect(proxy).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let SocketAddr::V4(a) = target else {
        return None;
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&a.ip().octets());
    req.extend_from_slice(&a.port().to_be_bytes());
    s.write_all(&req).ok()?;
    let mut head = [0u8; 2 + 10];
    s.read_exact(&mut head).ok()?;
    Some((s, head[3]))
}

/// Waits until the server admits a session again (slots freed), within `secs`.
fn admitted_within(proxy: SocketAddr, echo: &Echo, secs: u64) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    loop {
        match try_connect(proxy, echo.addr) {
            Some((mut s, 0)) => {
                echo_once(&mut s, b"slot back");
                return s;
            }
            Some((_, rep)) => last = Some(rep),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "no slot came back within {secs} s (last reply {last:?})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn socks_rule_session_max_refuses_with_02_and_dantes_lines() {
    let echo = echo_server();
    let srv = Server::start(&socks("session.max: 2"));
    let a = admitted(srv.addr, &echo);
    let _b = admitted(srv.addr, &echo);
    let (mut c, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2, "over the limit: not allowed by ruleset");
    assert!(closed_within(&mut c, 10));
    let me = c.local_addr().unwrap();
    let want = format!(
        "info: block(1): tcp/connect ]: {} {} -> 0.0.0.0.0 {}: session limit reached (2/2 slots in use)",
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(echo.addr)
    );
    srv.wait_log("the socks-rule limit line", 10, |t| t.contains(&want));
    let want = format!(
        "info: block(1): tcp/accept ]: {} {}: blocked by higher-level socks-rule #1: session limit reached (2/2 slots in use)",
        dante_addr(me),
        dante_addr(srv.addr)
    );
    srv.wait_log("the client-rule line", 10, |t| t.contains(&want));
    // One session ends: its slot is free again, and a SOCKS v4 client is counted too.
    drop(a);
    let _c = admitted_within(srv.addr, &echo, 10);
    let mut v4 = TcpStream::connect(srv.addr).unwrap();
    v4.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = vec![4, 1];
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    req.extend_from_slice(&[127, 0, 0, 1, 0]);
    std::io::Write::write_all(&mut v4, &req).unwrap();
    let mut rep = [0u8; 8];
    v4.read_exact(&mut rep).unwrap();
    assert_eq!(rep[1], 91, "SOCKS v4 refusal");
}

#[test]
fn one_slot_is_a_slot_in_dantes_words() {
    let echo = echo_server();
    let srv = Server::start(&socks("session.max: 1"));
    let _a = admitted(srv.addr, &echo);
    let (_b, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2);
    srv.wait_log("singular", 10, |t| {
        t.contains("session limit reached (1/1 slot in use)")
    });
}

/// 100 clients race at `-N 4` (several relays each) for `session.max: 10`: exactly 10 are
/// admitted, whichever mother accepted them.
#[test]
fn racing_clients_across_four_mothers_get_exactly_the_limit() {
    let echo = echo_server();
    let srv = Server::start_with(&socks("session.max: 10"), &["-N", "4"]);
    let start = Arc::new(Barrier::new(100));
    let workers: Vec<_> = (0..100)
        .map(|_| {
            let (start, proxy, target) = (start.clone(), srv.addr, echo.addr);
            thread::spawn(move || {
                start.wait();
                let (s, rep) = socks5_connect(proxy, target);
                (s, rep)
            })
        })
        .collect();
    let results: Vec<(TcpStream, u8)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let ok = results.iter().filter(|(_, r)| *r == 0).count();
    let refused = results.iter().filter(|(_, r)| *r == 2).count();
    assert_eq!((ok, refused), (10, 90), "admitted and refused of 100");
    let accepted_by: std::collections::HashSet<String> = srv
        .log_text()
        .lines()
        .filter(|l| l.contains("pass(1): tcp/accept ["))
        .filter_map(|l| {
            l.split("rsockd[")
                .nth(1)?
                .split(']')
                .next()
                .map(String::from)
        })
        .collect();
    assert!(
        accepted_by.len() > 1,
        "the clients were spread over several mothers"
    );
    drop(results);
    // All ten end: ten new ones fit again.
    let again: Vec<TcpStream> = (0..10)
        .map(|_| admitted_within(srv.addr, &echo, 10))
        .collect();
    let (_s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2);
    drop(again);
}

/// A relay holding every slot is SIGKILLed: its sessions are lost, and the slots are free
/// within a second or so (its mother reaps it and clears them).
#[test]
fn a_killed_relay_gives_its_slots_back() {
    let echo = echo_server();
    let srv = Server::start(&socks("session.max: 3"));
    let held: Vec<TcpStream> = (0..3).map(|_| admitted(srv.addr, &echo)).collect();
    let (_r, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2);
    let m1 = mother_pid(srv.pid, 1).unwrap_or(srv.pid);
    let holders: Vec<i32> = relays_of(m1)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(p, _)| p)
        .collect();
    assert!(!holders.is_empty(), "some relay holds the sessions");
    for p in &holders {
        unsafe_free_kill(*p, SIGKILL);
    }
    let _again: Vec<TcpStream> = (0..3)
        .map(|_| admitted_within(srv.addr, &echo, 10))
        .collect();
    drop(held);
}

/// Mother 2 of `-N 2` is SIGKILLed while sessions it accepted live on in its relays: they
/// keep their slots (the limit still holds for the new mother 2), and give them back when
/// they end.
#[test]
fn a_killed_mothers_slots_come_back() {
    let echo = echo_server();
    let srv = Server::start_with(&socks("session.max: 4"), &["-N", "2"]);
    let m2 = mother_pid(srv.pid, 2).expect("mother 2");
    // Sessions live in relays, not mothers: killing mother 2 loses none, and whatever slots
    // it held are cleared when mother 1 reaps it.
    let mut held: Vec<TcpStream> = (0..4).map(|_| admitted(srv.addr, &echo)).collect();
    unsafe_free_kill(m2, SIGKILL);
    assert!(wait_gone(m2, 10));
    for s in &mut held {
        echo_once(s, b"still relayed");
    }
    for _ in 0..4 {
        let (_s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 2, "the sessions still count, whichever mother asks");
    }
    drop(held);
    let _back = admitted_within(srv.addr, &echo, 10);
}

#[test]
fn client_rule_limit_resets_the_connection_and_inherits() {
    let echo = echo_server();
    let srv = Server::start(&base_config(
        "client pass { from: 0/0 to: 0/0 session.max: 1 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n",
    ));
    let _a = admitted(srv.addr, &echo);
    // Inherited: the whole session holds the client rule's slot, so the next client is turned
    // away at accept, with a reset and Dante's line.
    let mut b = TcpStream::connect(srv.addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = b.local_addr().unwrap();
    let _ = std::io::Write::write_all(&mut b, &[5, 1, 0]);
    let mut buf = [0u8; 2];
    let got = b.read(&mut buf);
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset) || matches!(got, Ok(0)),
        "{got:?}"
    );
    let want = format!(
        "info: block(1): tcp/accept ]: {} {}: session limit reached (1/1 slot in use)",
        dante_addr(me),
        dante_addr(srv.addr)
    );
    srv.wait_log("the client-rule limit line", 10, |t| t.contains(&want));
}

#[test]
fn not_inheritable_limits_only_clients_negotiating() {
    let echo = echo_server();
    let srv = Server::start(&base_config(
        "client pass { from: 0/0 to: 0/0 session.max: 1 session.inheritable: no }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    ));
    let held: Vec<TcpStream> = (0..3).map(|_| admitted(srv.addr, &echo)).collect();
    assert_eq!(held.len(), 3);
}

#[test]
fn throttle_admits_n_per_window_in_dantes_words() {
    let echo = echo_server();
    let srv = Server::start(&socks("session.throttle: 2/60"));
    let _a = admitted(srv.addr, &echo);
    let _b = admitted(srv.addr, &echo);
    let (_c, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2);
    srv.wait_log("the throttle line", 10, |t| {
        t.contains("session rate limit reached (already accepted 2 new clients during the last ")
    });
}

#[test]
fn the_state_dump_shows_slots_and_the_window() {
    let echo = echo_server();
    let srv = Server::start(&socks("session.max: 5 session.throttle: 100/60"));
    let _a = admitted(srv.addr, &echo);
    let _b = admitted(srv.addr, &echo);
    srv.signal(SIGUSR1);
    srv.wait_log("the scoreboard dump", 10, |t| {
        t.contains("scoreboard: socks-rule #1: sessions 2/5 slots in use, 2/100 new in the current 60s window")
    });
}

#[test]
fn limits_beyond_what_we_count_refuse_to_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("big.conf");
    let text = socks("session.max: 2000000").replace("{IP}", "127.0.0.1");
    std::fs::write(&conf, text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:5: socks rule #1: session.max: 2000000 is more than the 1000000 sessions rsockd counts per rule",
        conf.display()
    );
    assert!(err.contains(&want), "{err}");
}

/// A SOCKS5 CONNECT from source address `src` (one of our 127.0.0.x); REP and the stream.
fn connect_from(src: std::net::Ipv4Addr, proxy: SocketAddr, target: SocketAddr) -> (TcpStream, u8) {
    use socket2::{Domain, Socket, Type};
    use std::io::Write;
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    sock.connect(&proxy.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 targets only")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let rep = read_socks5_reply(&mut s);
    (s, rep)
}

/// `session.state.key: from`: each client address has its own `session.state.max` and
/// `session.state.throttle`, in Dante's words (`per-key ...`).
#[test]
fn per_address_limits_count_each_client_apart() {
    let echo = echo_server();
    let srv = Server::start(&socks(
        "session.state.key: from session.state.max: 2 session.state.throttle: 3/60",
    ));
    let (a, b) = (next_loopback(), next_loopback());
    let a1 = connect_from(a, srv.addr, echo.addr);
    let a2 = connect_from(a, srv.addr, echo.addr);
    assert_eq!((a1.1, a2.1), (0, 0));
    let (_a3, rep) = connect_from(a, srv.addr, echo.addr);
    assert_eq!(rep, 2, "a third session from one address");
    srv.wait_log("the per-key limit line", 10, |t| {
        t.contains("per-key session limit reached (2/2 slots in use)")
    });
    // Another address has its own slots.
    let b1 = connect_from(b, srv.addr, echo.addr);
    assert_eq!(b1.1, 0);
    // One of a's sessions ends: its slot is back, and that is a's third new session in the
    // window; the fourth is throttled.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let a4 = loop {
        let (s, rep) = connect_from(a, srv.addr, echo.addr);
        if rep == 0 {
            break s;
        }
        if srv
            .log_text()
            .contains("per-key session rate limit reached")
        {
            panic!("throttled before the slot came back");
        }
        assert!(Instant::now() < deadline, "a's slot did not come back");
        thread::sleep(Duration::from_millis(50));
    };
    drop(a2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_s, rep) = connect_from(a, srv.addr, echo.addr);
        assert_eq!(rep, 2);
        if srv.log_text().contains(
            "per-key session rate limit reached (already accepted 3 new clients during the last ",
        ) {
            break;
        }
        assert!(Instant::now() < deadline, "no per-key throttle line");
        thread::sleep(Duration::from_millis(50));
    }
    srv.signal(SIGUSR1);
    srv.wait_log("the key count in the dump", 10, |t| {
        t.contains("2 of 4096 from keys in use")
    });
    drop((a4, b1));
}

/// Our extension `session.state.key: user`: the limit follows the authenticated user, from
/// whatever address (here an RFC 1929 login against rsockd's own password file).
#[test]
fn per_user_limits_follow_the_login() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = std::process::Command::new(BIN)
        .args(["--hash-password", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"alice-pw\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let line = String::from_utf8(hash.stdout).unwrap();
    std::fs::write(
        &users,
        format!("{line}bob:{}", line.split_once(':').unwrap().1),
    )
    .unwrap();
    std::fs::set_permissions(
        &users,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let srv = Server::start(&format!(
        "internal: {{IP}} port = 0\nexternal: 127.0.0.1\nsocksmethod: username\n\
         rsockd.users.file: {}\n\
         client pass {{ from: 0/0 to: 0/0 }}\n\
         socks pass {{ from: 0/0 to: 0/0 session.state.key: user session.state.max: 1 }}\n",
        users.display()
    ));
    let login = |user: &str| {
        use std::io::Write;
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&[5, 1, 2]).unwrap();
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).unwrap();
        assert_eq!(sel, [5, 2]);
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(8);
        auth.extend_from_slice(b"alice-pw");
        s.write_all(&auth).unwrap();
        let mut ok = [0u8; 2];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(ok, [1, 0], "login of {user}");
        let SocketAddr::V4(t) = echo.addr else {
            panic!()
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&t.ip().octets());
        req.extend_from_slice(&t.port().to_be_bytes());
        s.write_all(&req).unwrap();
        let rep = read_socks5_reply(&mut s);
        (s, rep)
    };
    let a = login("alice");
    assert_eq!(a.1, 0);
    let (_a2, rep) = login("alice");
    assert_eq!(rep, 2, "alice's second session");
    let b = login("bob");
    assert_eq!(b.1, 0, "bob is another key");
    drop((a, b));
}
