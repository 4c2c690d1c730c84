//! `monitor { }` through the real binary: data alarms raised at the end of a quiet period
//! (even with no sessions) and cleared by traffic, disconnect alarms counted by the side that
//! closed, numbers summed over every mother and relay (`-N 2`), a SIGKILLed relay's sessions
//! no longer counted, and SIGHUP clearing alarms without a line. Periods are one or two
//! seconds; every wait polls with a deadline.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{mother_pid, relays_of, SIGKILL};
use common::*;

const SIGHUP: i32 = 1;
const SIGUSR1: i32 = 10;

fn with_monitor(monitor: &str) -> String {
    base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect }}\n\
         monitor {{\n from: 0/0 to: 0/0\n{monitor}\n}}\n"
    ))
}

/// Lines of the log that contain every one of `parts`.
fn lines_with(log: &str, parts: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

/// A target that accepts and closes at once: the target ends each session.
fn closing_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            drop(s);
        }
    });
    addr
}

/// A CONNECT session that must be admitted.
fn session(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let (s, rep) = socks5_connect(proxy, target);
    assert_eq!(rep, 0);
    s
}

#[test]
fn data_alarm_is_raised_when_quiet_and_cleared_by_traffic() {
    let echo = echo_server();
    let srv = Server::start(&with_monitor("internal.alarm.data.recv: 100 in 1"));
    // No session at all: the first period ends quiet and the alarm is raised.
    let raised = "warning: monitor(1): alarm/data [: 0/0 -> 0/0 internal.recv: 0/100 in 1s.  Session count: 0";
    srv.wait_log("the alarm raised with no sessions", 10, |t| {
        t.contains(raised)
    });
    // 1000 bytes from a client in one period clear it; the session still runs.
    let mut s = session(srv.addr, echo.addr);
    s.write_all(&[7u8; 1000]).unwrap();
    let mut back = [0u8; 1000];
    s.read_exact(&mut back).unwrap();
    let log = srv.wait_log("the alarm cleared", 10, |t| {
        !lines_with(t, &["alarm/data ]: 0/0 -> 0/0 internal.recv: "]).is_empty()
    });
    let cleared = &lines_with(&log, &["alarm/data ]: "])[0];
    let counted: u64 = cleared
        .split("internal.recv: ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        (101..=1000).contains(&counted),
        "the period's bytes from clients: {cleared}"
    );
    assert!(
        cleared.contains("/100 in 1s.  Session count: 1.  Alarm duration: "),
        "{cleared}"
    );
    // Quiet again: raised again, with the session still counted.
    srv.wait_log("the alarm raised again", 10, |t| {
        lines_with(
            t,
            &["alarm/data [: ", "internal.recv: 0/100", "Session count: 1"],
        )
        .len()
            == 1
    });
    // Only client-to-us bytes count for internal.recv: the echo's replies do not add to it.
    assert_eq!(lines_with(&srv.log_text(), &["alarm/data [: "]).len(), 2);
}

#[test]
fn disconnect_alarm_counts_the_side_that_closed() {
    let closer = closing_target();
    let srv = Server::start(&with_monitor(
        "external.alarm.disconnect: 2/4 in 2\ninternal.alarm.disconnect: 1/1 in 2",
    ));
    // Four sessions the target ends: external disconnects; on the internal side they are
    // closed by us, so the internal alarm must stay silent.
    for _ in 0..4 {
        let mut s = session(srv.addr, closer);
        assert!(closed_within(&mut s, 10));
    }
    let log = srv.wait_log("the external disconnect alarm", 10, |t| {
        !lines_with(t, &["alarm/disconnect ]: 0/0 -> 0/0 external: "]).is_empty()
    });
    let line = &lines_with(&log, &["alarm/disconnect ]: "])[0];
    // However the four fall across periods, one period holds at least two of them, and
    // every session of the period was ended by the target.
    let counts = line
        .split("external: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    let (d, n) = counts.split_once('/').unwrap();
    assert_eq!(d, n, "{line}");
    assert!(d.parse::<u32>().unwrap() >= 2, "{line}");
    assert!(
        line.ends_with("disconnects during last 2s.  Session count: 0"),
        "{line}"
    );
    // Two more periods pass: still no internal line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lines_with(
            &srv.log_text(),
            &["alarm/disconnect ]: 0/0 -> 0/0 internal: "]
        )
        .is_empty(),
        "sessions the target closed are not internal disconnects"
    );
}

/// The SIGUSR1 dump's line for monitor 1.
fn dump_line(srv: &Server, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = lines_with(&srv.log_text(), &["monitor #1: sessions"]).len();
        srv.signal(SIGUSR1);
        let log = srv.wait_log("a dump", 10, |t| {
            lines_with(t, &["monitor #1: sessions"]).len() > before
        });
        let last = lines_with(&log, &["monitor #1: sessions"]).pop().unwrap();
        if last.contains(want) || Instant::now() > deadline {
            return last;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn counts_are_summed_over_every_process_and_a_killed_relay_stops_counting() {
    let echo = echo_server();
    let srv = Server::start_with(
        &with_monitor("internal.alarm.data.recv: 1 in 3600"),
        &["-N", "2"],
    );
    // Sessions until both mothers' relays hold some (bounded).
    let mut held = Vec::new();
    let holders = || {
        (1..=2)
            .filter_map(|i| mother_pid(srv.pid, i))
            .flat_map(relays_of)
            .filter(|(_, n)| *n > 0)
            .map(|(p, _)| p)
            .collect::<Vec<_>>()
    };
    while held.len() < 40 && (held.len() < 4 || holders().len() < 2) {
        let mut s = session(srv.addr, echo.addr);
        echo_once(&mut s, &[1u8; 100]);
        held.push(s);
        thread::sleep(Duration::from_millis(20));
    }
    let procs = holders();
    assert!(
        procs.len() >= 2,
        "sessions in at least two relays: {procs:?}"
    );
    let n = held.len() as u64;
    let want = format!("monitor #1: sessions {n}, bytes {0}/{0}/{0}/{0} ", n * 100);
    let line = dump_line(&srv, &want);
    assert!(line.contains(&want), "{line}, want {want}");
    // One relay is SIGKILLed: its sessions are not counted any more.
    let victim = procs[0];
    let lost = relays_of(mother_pid(srv.pid, 1).unwrap())
        .into_iter()
        .chain(relays_of(mother_pid(srv.pid, 2).unwrap()))
        .find(|(p, _)| *p == victim)
        .map(|(_, n)| u64::from(n))
        .unwrap();
    unsafe_free_kill(victim, SIGKILL);
    assert!(wait_gone(victim, 10));
    let want = format!("monitor #1: sessions {}, ", n - lost);
    let line = dump_line(&srv, &want);
    assert!(line.contains(&want), "{line}, want {want}");
}

#[test]
fn sighup_clears_alarms_silently() {
    let srv = Server::start(&with_monitor("external.alarm.data.send: 10 in 1"));
    let raised = "alarm/data [: 0/0 -> 0/0 external.send: 0/10 in 1s.  Session count: 0";
    srv.wait_log("the alarm raised", 10, |t| t.contains(raised));
    srv.signal(SIGHUP);
    // The new configuration's alarm starts cleared: raised again after its first period,
    // and the old one never says it cleared.
    srv.wait_log("the alarm raised again after SIGHUP", 10, |t| {
        lines_with(t, &[raised]).len() >= 2
    });
    assert!(lines_with(&srv.log_text(), &["alarm/data ]: "]).is_empty());
}
