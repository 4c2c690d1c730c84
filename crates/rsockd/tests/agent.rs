//! `rsockd.agent:` answers HAProxy's agent-check on a port of its own, from whichever mother
//! accepts; `rsockd --drain` / `--resume` switch every mother (a re-spawned one too) between
//! `up` and `drain` while sessions go on being served.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::procs::{mother_pid, wait_until, SIGKILL};
use common::*;

/// The agent's address, from its log line.
fn agent_addr(srv: &Server) -> SocketAddr {
    logged_addr(srv, "answering agent checks on ")
}

/// One agent check, as HAProxy does it (with an `agent-send` line): the answer.
fn check(agent: SocketAddr) -> String {
    let mut s = TcpStream::connect(agent).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello from haproxy\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn order(flag: &str, pidfile: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg(flag)
        .arg("-p")
        .arg(pidfile)
        .output()
        .unwrap()
}

#[test]
fn drain_and_resume_reach_every_mother_and_sessions_go_on() {
    let echo = echo_server();
    let piddir = tempfile::tempdir().unwrap();
    let pidfile = piddir.path().join("rsockd.pid");
    let srv = Server::start_with(
        &base_config(&format!(
            "rsockd.agent: {{IP}} port = {}\n{OPEN_RULES}",
            free_tcp_port("127.0.0.1")
        )),
        &["-N", "2", "-p", pidfile.to_str().unwrap()],
    );
    let agent = agent_addr(&srv);
    for _ in 0..6 {
        assert_eq!(check(agent), "up\n");
    }
    // A session that runs across the drain.
    let (mut long, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut long, b"before the drain");

    let out = order("--drain", &pidfile);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("told to answer \"drain\""));
    srv.wait_log("both mothers draining", 10, |t| {
        t.contains("mother[1/2]: draining: agent checks answer \"drain\" from now on")
            && t.contains("mother[2/2]: draining: agent checks answer \"drain\" from now on")
    });
    for _ in 0..10 {
        assert_eq!(check(agent), "drain\n");
    }
    // The state dump says so too.
    srv.signal(10);
    srv.wait_log("the dump's agent state", 10, |t| {
        t.contains("agent says: drain, listening on: ")
    });
    // Draining is the balancer's cue, not a refusal: old and new sessions are served.
    echo_once(&mut long, b"during the drain");
    assert_serving(&srv, &echo);

    // A mother re-spawned while draining answers "drain" from its first check.
    let m2 = mother_pid(srv.pid, 2).unwrap();
    assert_eq!(unsafe_free_kill(m2, SIGKILL), 0);
    wait_until("mother 2 re-spawned", 20, || {
        mother_pid(srv.pid, 2).is_some_and(|p| p != m2)
    });
    srv.wait_log("the new mother 2 running", 20, |t| {
        t.matches("rsockd/server[2/2]").count() >= 2
    });
    for _ in 0..20 {
        assert_eq!(check(agent), "drain\n");
    }

    let out = order("--resume", &pidfile);
    assert!(out.status.success(), "{out:?}");
    srv.wait_log("both mothers resuming", 10, |t| {
        t.contains("mother[1/2]: resuming") && t.matches("mother[2/2]: resuming").count() >= 1
    });
    for _ in 0..10 {
        assert_eq!(check(agent), "up\n");
    }
    echo_once(&mut long, b"after the drain");
}

#[test]
fn drain_orders_refuse_a_missing_or_foreign_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pid");
    let out = order("--drain", &missing);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read pidfile"));

    let junk = dir.path().join("junk.pid");
    std::fs::write(&junk, "not a pid\n").unwrap();
    let out = order("--resume", &junk);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no pid"));

    // A stale pidfile naming another program (this test): never signalled.
    let foreign = dir.path().join("foreign.pid");
    std::fs::write(&foreign, format!("{}\n", std::process::id())).unwrap();
    let out = order("--drain", &foreign);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not an rsockd server"),
        "{out:?}"
    );
}

#[test]
fn the_agent_port_is_no_proxy_and_must_differ_from_internal() {
    let echo = echo_server();
    // Port 0 would be the internal: socket's address too (both `IP:0`): a port of its own.
    let srv = Server::start(&base_config(&format!(
        "rsockd.agent: {{IP}} port = {}\n{OPEN_RULES}",
        free_tcp_port("127.0.0.1")
    )));
    let agent = agent_addr(&srv);
    // A SOCKS request on the agent port gets the agent's answer, never a SOCKS reply.
    let mut s = TcpStream::connect(agent).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&[5, 1, 0]);
    assert_eq!(read_all(&mut s), b"up\n");
    assert_serving(&srv, &echo);

    // The same address and port for both is a start-up error naming the file.
    let port = free_tcp_port("127.0.0.1");
    let err = Server::try_start(
        &format!(
            "internal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\nsocksmethod: none\n\
             rsockd.agent: 127.0.0.1 port = {port}\n{OPEN_RULES}"
        ),
        &[],
    )
    .err()
    .unwrap();
    assert!(
        err.contains("rsockd.agent: 127.0.0.1.") && err.contains("is also an internal: address"),
        "{err}"
    );
}
