//! The relay pool grows past one process's open-files limit and shrinks again.
//!
//! rsockd runs under `prlimit --nofile=400:400`, so each relay may spend only about 144
//! descriptors on sessions (two per CONNECT session) and counts as near full at 80. Two base
//! relays then hold about 80 sessions; 200 sessions need extra relays, which must appear, carry
//! their sessions byte for byte, never exceed their limit, and retire once idle.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::procs::*;
use common::*;

const SESSIONS: usize = 200;
/// What one relay can hold under the 400-descriptor limit: (400 - 256 reserved) / 2.
const MOST_PER_RELAY: u32 = 72;

fn start_limited() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ip = next_loopback();
    let log = dir.path().join("rsockd.log");
    let conf = dir.path().join("rsockd.conf");
    let text = format!(
        "logoutput: {}\n{}",
        log.display(),
        base_config(OPEN_RULES).replace("{IP}", &ip.to_string())
    );
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=400:400")
        .arg(BIN)
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    launch(cmd, dir, ip, conf, log).unwrap()
}

/// Session `i`'s message of `round` comes back: each session gets its own bytes, no one else's.
fn echo_round(s: &mut TcpStream, i: usize, round: u8) {
    echo_once(s, format!("session {i} round {round}\n").as_bytes());
}

/// The mother: under prlimit, rsockd is the direct child of our `prlimit` process (it execs).
fn mother_of(srv: &Server) -> i32 {
    mother_pid(srv.pid, 1).unwrap_or(srv.pid)
}

#[test]
fn extra_relays_start_near_the_descriptor_limit_and_retire_when_idle() {
    if !tool("prlimit") {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let srv = start_limited();
    let echo = echo_server();
    let mother = mother_of(&srv);
    let base = relays_of(mother).len();
    assert!(base >= 1, "no relays under mother {mother}");

    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 0, "session {i} refused; log:\n{}", srv.log_text());
        echo_round(&mut s, i, 1);
        sessions.push(s);
    }
    wait_until("every session to be counted by its relay", 20, || {
        relays_of(mother).iter().map(|r| r.1).sum::<u32>() as usize == SESSIONS
    });
    let relays = relays_of(mother);
    assert!(
        relays.len() > base,
        "{SESSIONS} sessions at 400 descriptors need more than {base} relays: {relays:?}"
    );
    for (pid, n) in &relays {
        assert!(
            *n <= MOST_PER_RELAY,
            "relay {pid} holds {n} sessions, beyond its descriptor limit"
        );
    }
    let log = srv.log_text();
    assert!(
        log.contains(&format!("relay 1.{} started", base + 1)),
        "no growth line in the log:\n{log}"
    );

    // Every session, old and new relays alike, still carries its own bytes.
    for (i, s) in sessions.iter_mut().enumerate() {
        echo_round(s, i, 2);
    }

    drop(sessions);
    wait_until("the extra relays to retire", 40, || {
        relays_of(mother).len() == base
    });
    assert!(srv.log_text().contains("idle extra relay retired"));
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_round(&mut s, 0, 3);
}

/// Clients that finish negotiating together are handed off together: many sessions per
/// message, every descriptor arriving with its session, no hand-off refused and no relay
/// started for want of one. The clients pipeline greeting and request in one write, all at
/// the same moment, so the mother finishes many in one turn of its event loop.
#[test]
fn sessions_negotiated_together_are_handed_off_in_batches() {
    const CLIENTS: usize = 120;
    let srv = Server::start(&base_config(OPEN_RULES));
    let echo = echo_server();
    let mother = mother_of(&srv);
    let base = relays_of(mother).len();
    let std::net::SocketAddr::V4(target) = echo.addr else {
        panic!("echo server not on IPv4");
    };
    let mut request = vec![5u8, 1, 0, 5, 1, 0, 1];
    request.extend_from_slice(&target.ip().octets());
    request.extend_from_slice(&target.port().to_be_bytes());
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let go = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let handles: Vec<_> = clients
        .iter()
        .map(|c| {
            let (mut c, go, request) = (c.try_clone().unwrap(), go.clone(), request.clone());
            std::thread::spawn(move || {
                go.wait();
                c.write_all(&request).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut reply = [0u8; 12];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..2], &[5, 0], "session {i}: method reply");
        assert_eq!(reply[3], 0, "session {i} refused; log:\n{}", srv.log_text());
        echo_round(c, i, 1);
    }
    srv.signal(10); // SIGUSR1: the state dump
    let log = srv.wait_log("the state dump", 10, |l| l.contains("handed off so far"));
    let line = log
        .lines()
        .find(|l| l.contains("handed off so far"))
        .unwrap()
        .to_string();
    let counts: Vec<u64> = line
        .split("handed off so far: ")
        .nth(1)
        .and_then(|r| r.split(", listening").next())
        .map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(counts.len(), 2, "{line}");
    assert_eq!(counts[0], CLIENTS as u64, "{line}");
    eprintln!("{CLIENTS} sessions in {} hand-off messages", counts[1]);
    // 120 clients released at once: some messages must carry several sessions.
    assert!(
        counts[1] < counts[0],
        "no hand-off carried two sessions: {line}"
    );
    assert!(!log.contains("hand-off"), "a hand-off failed:\n{log}");
    assert_eq!(relays_of(mother).len(), base, "a relay was started:\n{log}");
}

/// The mother's CPU time so far (all its threads), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let f = proc_stat(pid).unwrap();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Out of descriptors, the mother pauses accepting instead of spinning on a listener that
/// stays ready (a peer's bug: 190 % CPU at EMFILE), says so once, keeps relaying the sessions
/// it has, and accepts again as soon as descriptors are free.
#[test]
fn out_of_descriptors_pauses_accepting_without_spinning() {
    if !tool("prlimit") {
        panic!("prlimit (util-linux) is needed for this test");
    }
    const IDLE: usize = 500;
    let srv = start_limited();
    let echo = echo_server();
    let mother = mother_of(&srv);
    let (mut before, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_round(&mut before, 0, 1);

    // Clients that connect and say nothing stay with the mother, one descriptor each, until
    // its 400 are gone; the rest wait in the listen queue.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    srv.wait_log("the pause at EMFILE", 20, |l| {
        l.contains("pausing accepting while descriptors are short")
    });

    let (t0, c0) = (std::time::Instant::now(), cpu_ticks(mother));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let spent = cpu_ticks(mother) - c0;
    let hz: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let share = spent as f64 / hz / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.5,
        "the mother spun at {:.0} % CPU while out of descriptors",
        share * 100.0
    );
    let log = srv.log_text();
    assert_eq!(
        log.matches("pausing accepting").count(),
        1,
        "the pause is logged once, not per attempt:\n{log}"
    );

    // A session handed off before the shortage is not touched by it.
    echo_round(&mut before, 0, 2);

    // With the silent clients gone, new clients are served again.
    drop(idle);
    wait_until("a new session to be served", 30, || {
        let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
        rep == 0 && {
            echo_round(&mut s, 1, 3);
            true
        }
    });
    echo_round(&mut before, 0, 4);
}

/// Pids of the relays that opened sessions, in the order of their `tcp/connect [` lines.
fn session_relays(srv: &Server) -> Vec<i32> {
    srv.log_text()
        .lines()
        .filter(|l| l.contains("tcp/connect [: "))
        .filter_map(line_pid)
        .collect()
}

/// `child.maxrequests: 3`: a relay takes three sessions, then a new relay takes its place;
/// the old one finishes what it has and exits.
#[test]
fn a_relay_takes_at_most_child_maxrequests_sessions_and_is_replaced() {
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!("child.maxrequests: 3\n{OPEN_RULES}")));
    let mut held = Vec::new();
    for i in 0..7 {
        let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 0, "session {i}");
        echo_once(&mut s, b"counted");
        held.push(s);
    }
    srv.wait_log("seven session lines", 10, |t| {
        t.matches("tcp/connect [: ").count() >= 7
    });
    let pids = session_relays(&srv);
    let mut distinct: Vec<i32> = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for p in &distinct {
        let n = pids.iter().filter(|x| *x == p).count();
        assert!(n <= 3, "relay {p} took {n} sessions: {pids:?}");
    }
    assert!(
        distinct.len() >= 3,
        "seven sessions need three relays: {pids:?}"
    );
    srv.wait_log("the recycling line", 10, |t| {
        t.contains("took 3 sessions (child.maxrequests): it finishes its")
    });
    // The full relays keep their sessions until they end...
    for s in &mut held {
        echo_once(s, b"still relayed");
    }
    assert!(alive(pids[0]));
    // ...and then exit.
    drop(held);
    assert!(
        wait_gone(pids[0], 10),
        "relay {} exits once its sessions end",
        pids[0]
    );
    assert_serving(&srv, &echo);
}

/// `child.maxlifetime: 1`: after a second a relay takes no new sessions; a new relay does, and
/// the old one's session runs on.
#[test]
fn a_relay_takes_new_sessions_for_child_maxlifetime_seconds() {
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!("child.maxlifetime: 1\n{OPEN_RULES}")));
    let (mut first, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut first, b"young relay");
    let old = srv.wait_log("the first session line", 10, |t| {
        t.contains("tcp/connect [: ")
    });
    let old = old
        .lines()
        .find(|l| l.contains("tcp/connect [: "))
        .and_then(line_pid)
        .unwrap();
    srv.wait_log("the lifetime line", 10, |t| {
        t.contains(&format!(
            "(pid {old}) took sessions for 1s (child.maxlifetime)"
        ))
    });
    let (mut second, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut second, b"new relay");
    srv.wait_log("the second session line", 10, |t| {
        t.matches("tcp/connect [: ").count() >= 2
    });
    let pids = session_relays(&srv);
    assert_ne!(pids[1], old, "the second session went to a new relay");
    echo_once(&mut first, b"old relay finishes its own");
    drop(first);
    assert!(
        wait_gone(old, 10),
        "the old relay exits once its session ended"
    );
    drop(second);
}
