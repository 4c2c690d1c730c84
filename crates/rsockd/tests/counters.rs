//! The server's running totals, as SIGUSR1 dumps them: summed over every process of `-N 2`,
//! exact for known sessions and bytes, and never going back when a relay or a mother is
//! SIGKILLed or the configuration is reloaded.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::procs::{mother_pid, relays_of, wait_until, SIGKILL};
use common::*;

const SIGUSR1: i32 = 10;

/// Asks for a dump and returns its `counters:` lines; `seen` counts the dumps asked for.
fn dump(srv: &Server, seen: &mut usize) -> Vec<String> {
    *seen += 1;
    let n = *seen;
    srv.signal(SIGUSR1);
    let t = srv.wait_log("a counters dump", 10, |t| {
        t.matches("info: counters: processes: ").count() >= n
    });
    let lines: Vec<&str> = t.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.contains("info: counters: processes: "))
        .unwrap();
    let first = lines[..=last]
        .iter()
        .rposition(|l| l.contains("info: counters: sessions running: "))
        .unwrap();
    lines[first..=last]
        .iter()
        .map(|l| l.split("info: counters: ").nth(1).unwrap().to_string())
        .collect()
}

fn line<'a>(d: &'a [String], prefix: &str) -> &'a str {
    d.iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no \"{prefix}\" line in {d:#?}"))
}

/// The number after `key ` in `text`.
fn num(text: &str, key: &str) -> u64 {
    let at = text
        .find(&format!("{key} "))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    text[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn bytes(d: &[String]) -> (u64, u64) {
    let l = line(d, "bytes client to target: ");
    (num(l, "target:"), num(l, "client:"))
}

/// A CONNECT that sends `n` bytes and reads them back from the echo server, then closes.
fn echo_session(srv: &Server, echo: &Echo, n: usize) {
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    let data = vec![7u8; n];
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn totals_are_exact_summed_over_processes_and_survive_kills_and_reloads() {
    let echo = echo_server();
    let blocked = free_tcp_port("127.0.0.1");
    let srv = Server::start_with(
        &base_config(&format!(
            "client pass {{ from: 0/0 to: 0/0 }}\n\
             socks block {{ from: 0/0 to: 127.0.0.1/32 port = {blocked} }}\n\
             socks pass {{ from: 0/0 to: 0/0 log: connect disconnect }}\n"
        )),
        &["-N", "2"],
    );
    let mut seen = 0;
    let d = dump(&srv, &mut seen);
    assert_eq!(
        line(&d, "sessions running: "),
        "sessions running: connect 0, bind 0, udpassociate 0, clients negotiating: 0"
    );
    assert_eq!(bytes(&d), (0, 0));
    let procs = line(&d, "processes: ");
    assert_eq!(num(procs, "mother"), 2, "{procs}");
    assert!(num(procs, "relay") >= 2, "{procs}");

    // Three echoed sessions of known size, one blocked by a rule, one bad request.
    for n in [1000, 20_000, 300_000] {
        echo_session(&srv, &echo, n);
    }
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], blocked));
    let (_s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 2, "the block rule answers 'not allowed'");
    let mut junk = TcpStream::connect(srv.addr).unwrap();
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_within(&mut junk, 10));
    // A session that stays open, counted as running.
    let (mut held, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut held, b"still here");

    let want = 1000 + 20_000 + 300_000 + 10;
    let mut d = Vec::new();
    wait_until("the bytes to reach the counters", 15, || {
        d = dump(&srv, &mut seen);
        bytes(&d) == (want, want)
    });
    let connect = line(&d, "sessions of connect: ");
    assert_eq!(
        connect, "sessions of connect: ok 4, blocked 1, failed 0",
        "{d:#?}"
    );
    assert_eq!(
        line(&d, "sessions of none: "),
        "sessions of none: ok 0, blocked 0, failed 1"
    );
    assert_eq!(num(line(&d, "sessions running: "), "connect"), 1);
    assert_eq!(num(line(&d, "handshakes: "), "handshakes:"), 4);
    let rules = line(&d, "sessions per rule: ");
    for want in ["client #1 6", "socks #1 1", "socks #2 4"] {
        assert!(rules.contains(want), "no {want} in {rules}");
    }

    // A relay holding the open session is killed: its session leaves the gauge, its bytes
    // and the totals stay, and its replacement is counted.
    let mut relay = None;
    wait_until("the relay holding the session to show it", 10, || {
        relay = [1, 2]
            .iter()
            .filter_map(|&i| mother_pid(srv.pid, i))
            .flat_map(relays_of)
            .find(|(_, n)| *n == 1)
            .map(|(p, _)| p);
        relay.is_some()
    });
    let relay = relay.unwrap();
    assert_eq!(unsafe_free_kill(relay, SIGKILL), 0);
    let mut d = Vec::new();
    wait_until(
        "the dead relay to leave the gauge and be replaced",
        15,
        || {
            d = dump(&srv, &mut seen);
            let procs = line(&d, "processes: ");
            num(line(&d, "sessions running: "), "connect") == 0
                && procs.contains("relay")
                && procs
                    .split("relay ")
                    .nth(1)
                    .is_some_and(|r| r.contains("(1 restarted)"))
        },
    );
    assert_eq!(bytes(&d), (want, want), "bytes never go back");

    // Mother 2 is killed and replaced; a reload follows: nothing goes back.
    common::procs::replace_mother_2_then_reload(&srv);
    echo_session(&srv, &echo, 5);
    wait_until("the new session's bytes", 15, || {
        d = dump(&srv, &mut seen);
        bytes(&d) == (want + 5, want + 5)
    });
    assert_eq!(
        line(&d, "sessions of connect: "),
        "sessions of connect: ok 5, blocked 1, failed 0"
    );
    let procs = line(&d, "processes: ");
    assert!(procs.contains("mother 2 (1 restarted)"), "{procs}");
}
