//! Graceful stop: SIGTERM closes the listening sockets at once, established sessions run on
//! (byte-exact) for up to `rsockd.drain.timeout` seconds, then they are ended with a line
//! each; a second SIGTERM ends them at once; 0 is Dante's behaviour (at once). The server
//! exits when the last relay has gone, with a summary line, and leaves no process behind.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::procs::wait_until;
use common::*;

fn config(timeout: &str) -> String {
    base_config(&format!("{timeout}{OPEN_RULES}"))
}

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(7) % 251) as u8
}

/// A session that streams `total` bytes through the echo once `go` is set, checking every
/// byte that comes back; returns the bytes checked.
fn streaming(
    proxy: SocketAddr,
    echo: SocketAddr,
    total: u64,
    go: std::sync::mpsc::Receiver<()>,
) -> JoinHandle<Result<u64, String>> {
    let (s, rep) = socks5_connect(proxy, echo);
    assert_eq!(rep, 0);
    thread::spawn(move || {
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let mut r = s;
        let _ = go.recv();
        let writer = thread::spawn(move || -> Result<(), String> {
            let mut off = 0u64;
            let mut buf = vec![0u8; 16 * 1024];
            while off < total {
                let n = buf.len().min((total - off) as usize);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern(off + i as u64);
                }
                w.write_all(&buf[..n])
                    .map_err(|e| format!("write at {off}: {e}"))?;
                off += n as u64;
                // Spread over a while, so that the stop lands in the middle.
                thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        });
        let mut got = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while got < total {
            let n = r
                .read(&mut buf)
                .map_err(|e| format!("read at {got}: {e}"))?;
            if n == 0 {
                return Err(format!("closed after {got} of {total} bytes"));
            }
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != pattern(got + i as u64) {
                    return Err(format!("byte {} differs", got + i as u64));
                }
            }
            got += n as u64;
        }
        writer.join().map_err(|_| "writer panicked".to_string())??;
        Ok(got)
    })
}

#[test]
fn sigterm_lets_streaming_sessions_finish_byte_exact_and_refuses_new_ones() {
    let echo = echo_server();
    let mut srv = Server::start(&config("rsockd.drain.timeout: 60\n"));
    let relays = srv.children();
    let mut gos = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let (tx, rx) = std::sync::mpsc::channel();
        streams.push(streaming(srv.addr, echo.addr, 2 << 20, rx));
        gos.push(tx);
    }
    gos.iter().for_each(|g| g.send(()).unwrap());
    thread::sleep(Duration::from_millis(100));
    srv.signal(15);
    srv.wait_log("the stop line", 10, |t| {
        t.contains("sigterm(): exiting on signal 15")
    });
    assert!(
        TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)).is_err(),
        "new connections are refused at once"
    );
    for s in streams {
        assert_eq!(
            s.join().unwrap(),
            Ok(2 << 20),
            "every byte of a draining session"
        );
    }
    assert_eq!(srv.wait_exit(20), Some(0));
    let t = srv.log_text();
    assert!(
        t.contains("sigterm(): 5 session(s) may run on for up to 60s"),
        "{t}"
    );
    assert!(
        t.contains("sigterm(): sessions drained: 5, ended: 0"),
        "{t}"
    );
    assert!(!t.contains("server stopped"), "{t}");
    for p in relays {
        assert!(wait_gone(p, 10), "relay {p} left behind");
    }
}

#[test]
fn the_drain_timeout_ends_the_rest_with_a_line_each() {
    let echo = echo_server();
    let mut srv = Server::start(&config("rsockd.drain.timeout: 1\n"));
    let relays = srv.children();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
            assert_eq!(rep, 0);
            echo_once(&mut s, b"idle until the end");
            s
        })
        .collect();
    let start = Instant::now();
    srv.signal(15);
    for s in &mut held {
        assert!(closed_within(s, 10), "ended after the drain timeout");
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    assert_eq!(srv.wait_exit(10), Some(0));
    let t = srv.log_text();
    assert_eq!(
        t.lines()
            .filter(|l| l.contains("tcp/connect ]: ") && l.contains("server stopped: drain over"))
            .count(),
        3,
        "one closing line per session:\n{t}"
    );
    assert!(
        t.contains("sigterm(): drain over: ending 3 session(s)"),
        "{t}"
    );
    assert!(
        t.contains("sigterm(): sessions drained: 0, ended: 3"),
        "{t}"
    );
    for p in relays {
        assert!(wait_gone(p, 10), "relay {p} left behind");
    }
}

#[test]
fn a_second_sigterm_ends_everything_at_once() {
    let echo = echo_server();
    let mut srv = Server::start(&config("rsockd.drain.timeout: 600\n"));
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"first");
    srv.signal(15);
    srv.wait_log("the stop line", 10, |t| {
        t.contains("sigterm(): exiting on signal 15")
    });
    echo_once(&mut s, b"still relaying after the first SIGTERM");
    srv.signal(15);
    assert!(closed_within(&mut s, 10), "the second SIGTERM ends it");
    assert_eq!(srv.wait_exit(10), Some(0));
    srv.wait_log("the summary", 5, |t| {
        t.contains("sigterm(): sessions drained: 0, ended: 1")
    });
}

#[test]
fn drain_timeout_zero_is_dantes_stop_and_the_agent_says_drain_meanwhile() {
    let echo = echo_server();
    // 0: sessions are ended at once.
    let mut srv = Server::start(&config("rsockd.drain.timeout: 0\n"));
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"x");
    srv.signal(15);
    assert!(closed_within(&mut s, 5));
    assert_eq!(srv.wait_exit(10), Some(0));
    assert!(srv.log_text().contains("sessions drained: 0, ended: 1"));

    // While a drain runs, the agent answers "drain" (and SOCKS is refused).
    let port = free_tcp_port("127.0.0.1");
    let mut srv = Server::start(&config(&format!(
        "rsockd.drain.timeout: 60\nrsockd.agent: {{IP}} port = {port}\n"
    )));
    let agent = SocketAddr::from((srv.ip, port));
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"y");
    srv.signal(15);
    srv.wait_log("the stop line", 10, |t| {
        t.contains("sigterm(): exiting on signal 15")
    });
    let mut a = TcpStream::connect(agent).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_all(&mut a), b"drain\n");
    assert!(TcpStream::connect(srv.addr).is_err());
    drop(s);
    assert_eq!(srv.wait_exit(10), Some(0));
    wait_until("the agent socket closed", 5, || {
        TcpStream::connect(agent).is_err()
    });
}

#[test]
fn every_mother_drains_and_a_second_sigterm_reaches_all_of_them() {
    let echo = echo_server();
    let mut srv = Server::start_with(&config("rsockd.drain.timeout: 600\n"), &["-N", "3"]);
    let ms = common::procs::mothers(srv.pid);
    // Enough sessions to land on several mothers' relays.
    let mut held: Vec<TcpStream> = (0..12)
        .map(|_| {
            let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
            assert_eq!(rep, 0);
            echo_once(&mut s, b"held");
            s
        })
        .collect();
    srv.signal(15);
    srv.wait_log("every mother stopping", 10, |t| {
        t.matches("sigterm(): exiting on signal 15").count() >= 3
    });
    for s in &mut held {
        echo_once(s, b"draining");
    }
    srv.signal(15);
    for s in &mut held {
        assert!(closed_within(s, 10));
    }
    assert_eq!(srv.wait_exit(15), Some(0));
    for (_, p) in ms {
        assert!(wait_gone(p, 10), "mother {p} left behind");
    }
    let t = srv.log_text();
    let ended: usize = t
        .lines()
        .filter_map(|l| l.split("sigterm(): sessions drained: ").nth(1))
        .filter_map(|r| r.split("ended: ").nth(1)?.trim().parse::<usize>().ok())
        .sum();
    assert_eq!(
        ended, 12,
        "the mothers' summaries count every session:\n{t}"
    );
}

#[test]
fn the_supervisor_drains_its_mothers_and_passes_on_a_second_sigterm() {
    let echo = echo_server();
    let mut srv = Server::start_with(
        &config("rsockd.drain.timeout: 600\n"),
        &["-N", "2", "--supervisor"],
    );
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"held");
    srv.signal(15);
    srv.wait_log("both mothers stopping", 10, |t| {
        t.matches("sigterm(): exiting on signal 15").count() >= 3
    });
    wait_until("nobody accepts", 10, || {
        TcpStream::connect(srv.addr).is_err()
    });
    echo_once(&mut s, b"draining under the supervisor");
    assert!(
        srv.wait_exit(1).is_none(),
        "the supervisor waits for the drain"
    );
    srv.signal(15);
    assert!(closed_within(&mut s, 10));
    assert_eq!(srv.wait_exit(15), Some(0));
    srv.wait_log("the supervisor's last line", 5, |t| {
        t.contains("alert: supervisor: shutting down")
    });
}

/// SIGTERM sent to one relay directly (not through the mother): its sessions get
/// `rsockd.drain.timeout` too, then end with a line each; the relay exits, the mother
/// replaces it and the server goes on serving.
#[test]
fn a_relay_stopped_directly_ends_its_sessions_after_the_drain_timeout() {
    let echo = echo_server();
    let srv = Server::start(&config("rsockd.drain.timeout: 1\n"));
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"held by one relay");
    // The relay holding it: the one whose title counts a session.
    let mut relay = None;
    wait_until("a relay with the session", 10, || {
        relay = srv
            .children()
            .into_iter()
            .find(|p| cmdline(*p).contains("relay") && cmdline(*p).contains(": 1 session"));
        relay.is_some()
    });
    let relay = relay.unwrap();
    assert_eq!(unsafe_free_kill(relay, 15), 0);
    assert!(closed_within(&mut s, 10), "ended after the drain timeout");
    assert!(wait_gone(relay, 10), "the relay exited");
    srv.wait_log("the closing line", 10, |t| {
        t.contains("tcp/connect ]: ") && t.contains("server stopped: drain over")
    });
    assert_serving(&srv, &echo);
}
