//! `rsockd.log.format: json`: every line of every process is one JSON object that a real JSON
//! parser reads, with the common keys on every line and the session keys on pass and block
//! lines; error and alert lines too.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::procs::{mother_pid, relays_of, spread, wait_until, Orphans, SIGKILL};
use common::*;
use serde_json::Value;

const SIGHUP: i32 = 1;

fn objects(srv: &Server) -> Vec<Value> {
    srv.log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn find<'a>(all: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    all.iter()
        .find(|v| pred(v))
        .unwrap_or_else(|| panic!("no {what} line among {all:#?}"))
}

fn msg(v: &Value) -> &str {
    v["msg"].as_str().unwrap_or("")
}

#[test]
fn every_line_is_a_json_object_with_stable_keys() {
    let echo = echo_server();
    let blocked = free_tcp_port("127.0.0.1");
    let srv = Server::start_with(
        &base_config(&format!(
            "rsockd.log.format: json\n\
             client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
             socks block {{ from: 0/0 to: 127.0.0.1/32 port = {blocked} log: connect error }}\n\
             socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n"
        )),
        &["-N", "2"],
    );
    // A session of known size.
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    let me = s.local_addr().unwrap();
    s.write_all(&[1u8; 1234]).unwrap();
    let mut back = vec![0u8; 1234];
    s.read_exact(&mut back).unwrap();
    drop(s);
    // A blocked one.
    let (_b, rep) = socks5_connect(srv.addr, SocketAddr::from(([127, 0, 0, 1], blocked)));
    assert_eq!(rep, 2);
    let client = dante_addr(me);
    let target = dante_addr(echo.addr);
    srv.wait_log("the session's closing line", 10, |t| {
        t.contains("\"command\":\"connect\"") && t.contains("Session duration")
    });

    // A configuration error on reload: an error line.
    let good = std::fs::read_to_string(&srv.conf).unwrap();
    std::fs::write(&srv.conf, format!("{good}\nthis is not a keyword\n")).unwrap();
    srv.signal(SIGHUP);
    srv.wait_log("the reload error", 10, |t| {
        t.contains("configuration not reloaded")
    });
    std::fs::write(&srv.conf, good).unwrap();

    // Mother 2 killed: its relays' alert lines.
    let st = spread(&srv, echo.addr, 10);
    let m2 = mother_pid(srv.pid, 2).unwrap();
    let _orphans = Orphans::of(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    assert_eq!(unsafe_free_kill(m2, SIGKILL), 0);
    srv.wait_log("an alert", 10, |t| {
        t.contains("mother unexpectedly closed the IPC control channel")
    });
    wait_until("mother 2's replacement", 10, || {
        mother_pid(srv.pid, 2).is_some_and(|p| p != m2)
    });
    drop(st);

    let all = objects(&srv);
    for v in &all {
        for key in ["ts", "level", "pid", "process", "msg"] {
            assert!(!v[key].is_null(), "no {key} in {v}");
        }
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-12-07T09:13:12.239516Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
    let closed = find(&all, "connect closing", |v| {
        v["event"] == "pass"
            && v["command"] == "connect"
            && v["client"] == client.as_str()
            && v["duration_s"].is_u64()
    });
    assert_eq!(closed["rule"], "socks 2");
    assert_eq!(closed["target"], target.as_str());
    assert_eq!(closed["bytes_client_to_target"], 1234);
    assert_eq!(closed["bytes_target_to_client"], 1234);
    assert_eq!(closed["level"], "info");
    assert!(closed["reason"].is_string(), "{closed}");
    assert!(
        closed["process"].as_str().unwrap().starts_with("relay "),
        "{closed}"
    );
    assert!(
        msg(closed).starts_with("pass(2): tcp/connect ]: "),
        "{closed}"
    );
    let accept = find(&all, "accept", |v| {
        v["command"] == "accept" && v["client"] == client.as_str()
    });
    assert_eq!(accept["rule"], "client 1");
    let p = accept["process"].as_str().unwrap();
    assert!(p == "mother 1/2" || p == "mother 2/2", "{accept}");
    let block = find(&all, "block", |v| v["event"] == "block");
    assert_eq!(block["rule"], "socks 1");
    assert_eq!(block["command"], "connect");
    assert_eq!(
        block["target"],
        dante_addr(SocketAddr::from(([127, 0, 0, 1], blocked))).as_str()
    );
    let error = find(&all, "error", |v| v["level"] == "error");
    assert!(msg(error).contains("configuration not reloaded"), "{error}");
    let alert = find(&all, "alert", |v| v["level"] == "alert");
    assert!(
        alert["process"].as_str().unwrap().starts_with("relay "),
        "{alert}"
    );
    assert!(alert["event"].is_null(), "not a session line: {alert}");
}
