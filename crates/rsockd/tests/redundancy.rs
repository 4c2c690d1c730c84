//! `-N` redundancy (SPEC §7, issue 3): several mothers on one listening socket; killing any
//! process loses only what that process held; mother 1 (or the supervisor) re-spawns mothers.
//! Every wait polls with a deadline; no fixed sleeps except bounded negative checks.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::*;
use common::*;

#[test]
fn four_mothers_share_one_socket_and_all_serve() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "4"]);
    let ms = mothers(srv.pid);
    assert_eq!(
        ms.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "{ms:?}"
    );
    for (i, p) in &ms {
        assert_eq!(cmdline(*p), format!("rsockd: mother {i}/4"));
        let relays = relays_of(*p);
        assert!(!relays.is_empty(), "mother {i} has relays");
        for (r, _) in relays {
            assert!(cmdline(r).starts_with(&format!("rsockd: relay {i}.")));
        }
    }
    let log = srv.log_text();
    for i in 1..=4 {
        assert!(log.contains(&format!("rsockd/server[{i}/4] v")), "{log}");
    }
    // The same listening socket (same inode) in all four mothers, not four sockets.
    let ss = std::process::Command::new("ss")
        .args(["-Htlnpe", &format!("src {}", srv.addr)])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ss.stdout);
    assert_eq!(out.lines().count(), 1, "one listening socket: {out}");
    for (_, p) in &ms {
        assert!(
            out.contains(&format!("pid={p},")),
            "mother {p} holds it: {out}"
        );
    }
    // Clients land on every mother: hold sessions open until each has some (bounded).
    let mut held = Vec::new();
    for _ in 0..400 {
        let (s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 0);
        held.push(s);
        if ms.iter().all(|(_, p)| sessions_of_mother(*p) > 0) {
            break;
        }
    }
    let per: Vec<u32> = ms.iter().map(|(_, p)| sessions_of_mother(*p)).collect();
    assert!(per.iter().all(|n| *n > 0), "sessions per mother: {per:?}");
}

#[test]
fn killing_a_mother_keeps_its_sessions_and_mother_1_respawns_it() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2"]);
    let st = spread(&srv, echo.addr, 50);
    let m2 = mother_pid(srv.pid, 2).unwrap();
    let held_by_m2 = sessions_of_mother(m2);
    let old_relays: Vec<i32> = relays_of(m2).into_iter().map(|(p, _)| p).collect();
    let _orphans = Orphans::of(old_relays.clone());
    unsafe_free_kill(m2, SIGKILL);
    let killed_at = Instant::now();
    // New clients during and right after the kill are all served.
    for i in 0..40 {
        serve_one(srv.addr, echo.addr, i);
    }
    wait_until("mother 2 to be re-spawned", 10, || {
        mother_pid(srv.pid, 2).is_some_and(|p| p != m2)
    });
    let respawn = killed_at.elapsed();
    eprintln!("re-spawned after {respawn:?}; mother 2 held {held_by_m2} sessions");
    srv.wait_log("sigchld warning", 10, |t| {
        t.contains(&format!(
            "warning: sigchld(): mother {m2} exited unexpectedly on signal SIGKILL"
        ))
    });
    srv.wait_log("the orphaned relay's alert", 10, |t| {
        t.contains("alert: run_io(): mother unexpectedly closed the IPC control channel: mother unexpectedly exited")
    });
    // Wait for the new mother's readiness line, then new clients reach it too.
    srv.wait_log("the new mother", 10, |t| {
        t.matches("rsockd/server[2/2]").count() == 2
    });
    for i in 40..60 {
        serve_one(srv.addr, echo.addr, i);
    }
    let results = st.finish();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(bad.is_empty(), "sessions lost or corrupted: {bad:?}");
    let bytes: u64 = results.iter().map(|r| *r.as_ref().unwrap()).sum();
    assert!(bytes > 0);
    // The old mother's relay exits once its sessions are gone and is reaped by mother 1.
    wait_until("the orphaned relays to exit and be reaped", 15, || {
        old_relays
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    });
}

#[test]
fn killing_mother_1_leaves_the_others_serving_and_reloadable() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2"]);
    let st = spread(&srv, echo.addr, 30);
    let m1 = srv.pid;
    let m2 = mother_pid(m1, 2).unwrap();
    let mut tree = descendants(m1);
    tree.push(m2);
    let _orphans = Orphans::of(tree.clone());
    unsafe_free_kill(m1, SIGKILL);
    for i in 0..30 {
        serve_one(srv.addr, echo.addr, i);
    }
    srv.wait_log("mother 2's alert", 10, |t| {
        t.contains(&format!("rsockd[{m2}]: alert: mother_ipc(): mother unexpectedly closed the IPC control channel: mother unexpectedly exited"))
    });
    srv.wait_log("mother 1's relays' alert", 10, |t| {
        t.contains("alert: run_io(): mother unexpectedly closed the IPC control channel: mother unexpectedly exited")
    });
    let results = st.finish();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(bad.is_empty(), "sessions lost or corrupted: {bad:?}");
    // Nobody replaces mother 1 (bounded negative check).
    thread::sleep(Duration::from_millis(1500));
    let titles: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| tree.contains(p) || children_of(m2).contains(p))
        .map(cmdline)
        .collect();
    assert!(
        !titles.iter().any(|t| t == "rsockd: mother 1/2"),
        "{titles:?}"
    );
    // A SIGHUP to the surviving mother still reloads it.
    let text = std::fs::read_to_string(&srv.conf).unwrap().replace(
        "socks pass { from: 0/0 to: 0/0 log: connect disconnect error }",
        "socks block { from: 0/0 to: 0/0 log: connect error }",
    );
    std::fs::write(&srv.conf, text).unwrap();
    unsafe_free_kill(m2, 1);
    srv.wait_log("mother 2's reload", 10, |t| {
        t.contains(&format!("rsockd[{m2}]: info: SIGHUP ]: config reloaded"))
    });
    let (_s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2, "the reloaded block rule applies");
}

#[test]
fn a_dead_relay_loses_only_its_own_sessions_and_is_replaced() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "1"]);
    let st = spread(&srv, echo.addr, 24);
    let relays = relays_of(srv.pid);
    assert!(relays.len() >= 2, "this test needs two relays: {relays:?}");
    // Kill the relay holding the most sessions, so the loss is never empty.
    let (victim, lost) = *relays.iter().max_by_key(|(_, n)| *n).unwrap();
    let total: u32 = relays.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 24);
    let victim_title = cmdline(victim);
    let id = victim_title
        .strip_prefix("rsockd: relay ")
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    unsafe_free_kill(victim, SIGKILL);
    srv.wait_log("the relay death warning", 10, |t| {
        t.contains(&format!(
            "relay {id} (pid {victim}) exited unexpectedly; its {lost} session(s) are lost"
        ))
    });
    let log = srv.wait_log("one line per lost session", 10, |t| {
        t.matches(&format!("session error (relay process {victim} died)"))
            .count()
            == lost as usize
    });
    assert!(log.contains("pass(1): tcp/connect ]: "), "{log}");
    wait_until("a new relay with the same id", 10, || {
        children_of(srv.pid)
            .into_iter()
            .any(|p| p != victim && cmdline(p).starts_with(&format!("rsockd: relay {id}:")))
    });
    for i in 0..20 {
        serve_one(srv.addr, echo.addr, i);
    }
    let results = st.finish();
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(
        failed, lost as usize,
        "exactly the dead relay's sessions fail: {results:?}"
    );
}

#[test]
fn clients_queued_in_the_backlog_survive_the_death_of_a_mother() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2"]);
    let m1 = srv.pid;
    let m2 = mother_pid(m1, 2).unwrap();
    let _orphans = Orphans::of(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    // Nobody accepts while the clients queue up in the kernel's backlog.
    stop(m1);
    stop(m2);
    let mut queued = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = vec![5, 1, 0, 5, 1, 0, 1];
        match echo.addr {
            SocketAddr::V4(a) => req.extend_from_slice(&a.ip().octets()),
            SocketAddr::V6(_) => unreachable!(),
        }
        req.extend_from_slice(&echo.addr.port().to_be_bytes());
        s.write_all(&req).unwrap();
        queued.push(s);
    }
    unsafe_free_kill(m2, SIGKILL);
    unsafe_free_kill(m1, SIGCONT);
    for (i, s) in queued.iter_mut().enumerate() {
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).unwrap();
        assert_eq!(sel, [5, 0], "client {i}");
        assert_eq!(read_socks5_reply(s), 0, "client {i}");
        s.write_all(b"queued").unwrap();
        let mut back = [0u8; 6];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"queued");
    }
}

/// Parses the newest SIGUSR1 dump of mother 1: (its own clients in negotiation, mother 2's).
fn negotiating_counts(log: &str, m1: i32) -> Option<(u32, u32)> {
    let own_marker = format!("rsockd[{m1}]: info: mother[1/2]: relay processes: ");
    let start = log.rfind(&own_marker)?;
    let dump = &log[start..];
    let field = |s: &str| -> Option<u32> {
        s.split("clients negotiating: ")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let own = field(dump.lines().next()?)?;
    let other = dump.lines().find(|l| l.contains("mother[2/2]: pid "))?;
    Some((own, field(other)?))
}

#[test]
fn a_client_negotiating_with_a_dying_mother_is_closed_promptly_and_counted() {
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2"]);
    let m1 = srv.pid;
    let m2 = mother_pid(m1, 2).unwrap();
    let _orphans = Orphans::of(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    let mut clients: Vec<TcpStream> = Vec::new();
    let mut counts = (0, 0);
    // Greeting only: each client waits in negotiation (timeout.negotiate is 30 s).
    for _round in 0..10 {
        for _ in 0..8 {
            let mut s = TcpStream::connect(srv.addr).unwrap();
            s.write_all(&[5, 1, 0]).unwrap();
            let mut sel = [0u8; 2];
            s.read_exact(&mut sel).unwrap();
            assert_eq!(sel, [5, 0]);
            clients.push(s);
        }
        let n = clients.len() as u32;
        let start = Instant::now();
        loop {
            srv.signal(10);
            thread::sleep(Duration::from_millis(50));
            if let Some(c) = negotiating_counts(&srv.log_text(), m1) {
                if c.0 + c.1 == n {
                    counts = c;
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no dump");
        }
        if counts.1 > 0 {
            break;
        }
    }
    let (own, with_m2) = counts;
    assert!(with_m2 > 0, "no client landed on mother 2");
    unsafe_free_kill(m2, SIGKILL);
    let start = Instant::now();
    let closed: usize = clients
        .iter_mut()
        .map(|s| {
            let left = 5u64.saturating_sub(start.elapsed().as_secs()).max(1);
            closed_within(s, left.min(2)) as usize
        })
        .sum();
    assert_eq!(closed, with_m2 as usize, "mother 1 held {own}");
    srv.wait_log("the loss count", 10, |t| {
        t.contains(&format!(
            "mother[2/2]: {with_m2} client(s) still negotiating with it were lost"
        ))
    });
}

#[test]
fn signals_to_mother_1_reach_every_mother() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "3"]);
    let ms = mothers(srv.pid);
    assert_eq!(ms.len(), 3);
    let (mut old, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    // SIGUSR1: every mother and relay dumps its state.
    srv.signal(10);
    srv.wait_log("dumps from every mother", 10, |t| {
        (1..=3).all(|i| t.contains(&format!("info: mother[{i}/3]: relay processes: ")))
    });
    // SIGHUP: the new rules reach the other mothers.
    let text = std::fs::read_to_string(&srv.conf).unwrap().replace(
        "socks pass { from: 0/0 to: 0/0 log: connect disconnect error }",
        "socks block { from: 0/0 to: 0/0 log: connect error }",
    );
    std::fs::write(&srv.conf, text).unwrap();
    srv.signal(1);
    srv.wait_log("the others to apply it", 10, |t| {
        (2..=3).all(|i| {
            t.contains(&format!(
                "mother[{i}/3]: configuration generation 2 applied"
            ))
        })
    });
    for _ in 0..30 {
        let (_s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 2, "every mother blocks now");
    }
    // SIGTERM: all mothers stop accepting; the established session drains, then every
    // mother exits.
    let mut srv = srv;
    srv.signal(15);
    srv.wait_log("every mother stopping", 10, |t| {
        t.matches("sigterm(): exiting on signal 15").count() >= 3
    });
    wait_until("nobody accepts", 10, || {
        TcpStream::connect(srv.addr).is_err()
    });
    old.write_all(b"draining").unwrap();
    let mut back = [0u8; 8];
    old.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"draining");
    drop(old);
    assert_eq!(srv.wait_exit(10), Some(0));
    for (_, p) in &ms {
        wait_until("every mother to exit", 10, || {
            !cmdline(*p).starts_with("rsockd: mother")
        });
    }
}

#[test]
fn supervisor_mode_replaces_mother_1_and_its_loss_is_survivable() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2", "--supervisor"]);
    assert_eq!(cmdline(srv.pid), "rsockd: supervisor");
    let ms = mothers(srv.pid);
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert!(
        ms.iter().all(|(_, p)| children_of(srv.pid).contains(p)),
        "the supervisor is every mother's parent"
    );
    let st = spread(&srv, echo.addr, 30);
    let m1 = mother_pid(srv.pid, 1).unwrap();
    let _orphans = Orphans::of(relays_of(m1).into_iter().map(|(p, _)| p).collect());
    unsafe_free_kill(m1, SIGKILL);
    for i in 0..20 {
        serve_one(srv.addr, echo.addr, i);
    }
    wait_until("mother 1 to be re-spawned", 10, || {
        mother_pid(srv.pid, 1).is_some_and(|p| p != m1)
    });
    srv.wait_log("sigchld warning", 10, |t| {
        t.contains(&format!(
            "warning: sigchld(): mother {m1} exited unexpectedly on signal SIGKILL"
        ))
    });
    // Now kill the supervisor: the mothers keep serving and say so.
    let survivors = mothers(srv.pid);
    let mut all = descendants(srv.pid);
    all.extend(survivors.iter().map(|(_, p)| *p));
    let _orphans2 = Orphans::of(all);
    unsafe_free_kill(srv.pid, SIGKILL);
    for (_, p) in &survivors {
        srv.wait_log("each mother's alert", 10, |t| {
            t.contains(&format!("rsockd[{p}]: alert: mother_ipc(): mother unexpectedly closed the IPC control channel: mother unexpectedly exited"))
        });
    }
    for i in 20..40 {
        serve_one(srv.addr, echo.addr, i);
    }
    let results = st.finish();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(bad.is_empty(), "sessions lost or corrupted: {bad:?}");
    for (_, p) in &survivors {
        assert!(!is_zombie(*p));
    }
}
