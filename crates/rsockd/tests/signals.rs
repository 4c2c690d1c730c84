//! SIGHUP reload (good and broken files, `internal:` changes, sessions keep their rule),
//! SIGUSR1 state dump, SIGTERM drain, process titles and the pidfile.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn titles_show_roles() {
    let srv = Server::start(&base_config(OPEN_RULES));
    assert_eq!(cmdline(srv.pid), "rsockd: mother 1/1");
    let kids = srv.children();
    assert!(!kids.is_empty());
    for k in &kids {
        let t = cmdline(*k);
        assert!(t.starts_with("rsockd: relay 1."), "{t}");
    }
}

#[test]
fn sighup_applies_a_good_file_and_keeps_running_sessions_on_their_rule() {
    let echo = echo_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut old, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut old, b"before");
    // New rules block every request.
    let text = std::fs::read_to_string(&srv.conf).unwrap().replace(
        "socks pass { from: 0/0 to: 0/0 log: connect disconnect error }",
        "socks block { from: 0/0 to: 0/0 log: connect error }",
    );
    std::fs::write(&srv.conf, text).unwrap();
    srv.signal(1);
    srv.wait_log("reload", 10, |t| t.contains("SIGHUP ]: config reloaded"));
    let (_new, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 2, "new sessions see the new block rule");
    echo_once(&mut old, b"after reload, old rule");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_configuration() {
    let echo = echo_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let good = std::fs::read_to_string(&srv.conf).unwrap();
    std::fs::write(&srv.conf, format!("{good}\nthis is not a keyword\n")).unwrap();
    srv.signal(1);
    let log = srv.wait_log("reload refusal", 10, |t| {
        t.contains("configuration not reloaded, keeping the running one")
    });
    assert!(log.contains("rsockd.conf:"), "error names the file: {log}");
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0, "still serving with the old configuration");
    echo_once(&mut s, b"alive");
}

#[test]
fn sighup_adds_and_removes_internal_addresses() {
    let echo = echo_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let extra_ip = next_loopback();
    let extra = std::net::TcpListener::bind((extra_ip, 0)).unwrap();
    let extra_addr = extra.local_addr().unwrap();
    drop(extra);
    let text = std::fs::read_to_string(&srv.conf).unwrap().replace(
        &format!("internal: {} port = 0\n", srv.ip),
        &format!("internal: {extra_ip} port = {}\n", extra_addr.port()),
    );
    std::fs::write(&srv.conf, text).unwrap();
    srv.signal(1);
    srv.wait_log("reload", 10, |t| t.contains("SIGHUP ]: config reloaded"));
    let (mut s, rep) = socks5_connect(extra_addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"new address");
    assert!(
        TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)).is_err(),
        "the removed address no longer accepts"
    );
}

#[test]
fn sigusr1_dumps_sessions() {
    let echo = echo_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"0123456789abcde");
    srv.signal(10);
    let log = srv.wait_log("dump", 10, |t| t.contains("bytes transferred: 15"));
    let line = log
        .lines()
        .find(|l| l.contains("bytes transferred"))
        .unwrap();
    assert!(
        line.contains("info: tcp: ") && line.contains(" <-> "),
        "{line}"
    );
    assert!(line.contains("age: ") && line.contains("idle: "), "{line}");
    assert!(log.contains("mother[1/1]: relay processes:"), "{log}");
}

#[test]
fn sigterm_stops_accepting_and_drains_sessions() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("rsockd.pid");
    let mut srv = Server::start_with(
        &base_config(OPEN_RULES),
        &["-p", &pidfile.display().to_string()],
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        srv.pid.to_string()
    );
    let relays = srv.children();
    let (mut s, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut s, b"before term");
    srv.signal(15);
    srv.wait_log("the stop line", 10, |t| {
        t.contains("sigterm(): exiting on signal 15")
    });
    // Accepting stops at once; the established session drains, and the server waits for it.
    assert!(TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)).is_err());
    echo_once(&mut s, b"draining session still relays");
    assert!(
        srv.wait_exit(1).is_none(),
        "the mother waits for its sessions"
    );
    drop(s);
    assert_eq!(srv.wait_exit(10), Some(0));
    let log = srv.log_text();
    assert!(
        log.contains("sigterm(): sessions drained: 1, ended: 0"),
        "{log}"
    );
    assert!(log.contains("alert: mother[1/1]: shutting down"), "{log}");
    assert_eq!(
        std::fs::metadata(&pidfile).unwrap().len(),
        0,
        "pidfile truncated, not removed"
    );
    // The relays exit once their sessions are gone.
    let start = std::time::Instant::now();
    while relays.iter().any(|p| {
        std::path::Path::new(&format!("/proc/{p}")).exists()
            && !std::fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "relays did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !srv.log_text().contains("mother unexpectedly closed"),
        "an orderly stop is not a mother death"
    );
}

/// After dropping to user.unprivileged, a reload can still bind a privileged port: like Dante,
/// the mother keeps user.privileged as its saved uid and uses it just for the bind.
#[test]
fn sighup_binds_a_privileged_port_after_dropping_privileges() {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        eprintln!("skipped: needs root");
        return;
    }
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!(
        "user.privileged: root\nuser.unprivileged: nobody\n{OPEN_RULES}"
    )));
    let text = std::fs::read_to_string(&srv.conf).unwrap();
    std::fs::write(
        &srv.conf,
        format!("internal: {} port = 1023\n{text}", srv.ip),
    )
    .unwrap();
    srv.signal(1);
    srv.wait_log("the new privileged listener", 10, |t| {
        t.contains(&format!("accepting clients on {}.1023", srv.ip))
    });
    let low = std::net::SocketAddr::from((srv.ip, 1023));
    let (mut s, rep) = socks5_connect(low, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"privileged port");
    // The mother is back to nobody after the bind.
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.pid)).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(2), Some("65534"), "{uid}");
}
