//! Running under a service manager: the sd_notify messages in order (start, watchdog,
//! reload, rejected reload, stop) on a notify socket the test owns, and socket activation
//! through Debian's real `systemd-socket-activate`: CONNECT works on the passed socket with no
//! `internal:` bound by rsockd, an unprivileged rsockd serves port 80, and a passed socket that
//! matches no configured address is an error naming it.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::wait_until;
use common::*;

/// A notify socket of our own (a path one: what systemd gives).
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Notify {
    fn new(dir: &std::path::Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // An unprivileged server must be able to send to it.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify { sock, path }
    }

    /// Messages until `pred` holds for one of them (returned, with all before it).
    fn until(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < Duration::from_secs(secs) {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = pred(&m);
                seen.push(m);
                if done {
                    return seen;
                }
            }
        }
        panic!("timed out waiting for {what}; got {seen:?}");
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Reaped already: its pid may be another process's by now.
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.0.id() as i32;
        let kids = descendants(pid);
        let _ = self.0.kill();
        let _ = self.0.wait();
        for k in kids {
            unsafe_free_kill(k, 9);
        }
    }
}

fn write_conf(dir: &std::path::Path, body: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("rsockd.log");
    let conf = dir.join("rsockd.conf");
    std::fs::write(
        &conf,
        format!(
            "logoutput: {}\nexternal: 127.0.0.1\nsocksmethod: none\n{body}\n{OPEN_RULES}",
            log.display()
        ),
    )
    .unwrap();
    (conf, log)
}

fn log_of(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn notify_messages_come_in_order_with_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notify::new(dir.path());
    let ip = next_loopback();
    let (conf, log) = write_conf(dir.path(), &format!("internal: {ip} port = 0"));
    let child = Command::new(BIN)
        .arg("-f")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut p = Proc(child);
    let start = n.until("READY=1", 30, |m| m == "READY=1");
    assert!(
        start.iter().all(|m| !m.starts_with("STOPPING")),
        "{start:?}"
    );
    let after = n.until("STATUS and two watchdog pings", 10, {
        let pings = std::cell::Cell::new(0);
        move |m| {
            if m == "WATCHDOG=1" {
                pings.set(pings.get() + 1);
            }
            pings.get() >= 2
        }
    });
    let all: Vec<&String> = start.iter().chain(&after).collect();
    assert!(
        all.iter()
            .any(|m| m.starts_with("STATUS=serving: 0 session(s)")),
        "{all:?}"
    );
    // SIGHUP: RELOADING=1 with a monotonic timestamp, then READY=1.
    unsafe_free_kill(pid, 1);
    let reload = n.until("READY=1 after the reload", 10, |m| m == "READY=1");
    let r = reload
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("{reload:?}"));
    let usec: u64 = reload[r].rsplit('=').next().unwrap().parse().unwrap();
    assert!(usec > 0);
    // A rejected configuration: still RELOADING=1 then READY=1 (the old one serves).
    std::fs::write(&conf, "this is not a config\n").unwrap();
    unsafe_free_kill(pid, 1);
    let bad = n.until("READY=1 after the rejected reload", 10, |m| m == "READY=1");
    assert!(bad.iter().any(|m| m.starts_with("RELOADING=1")), "{bad:?}");
    wait_until("the refusal line", 10, || {
        log_of(&log).contains("configuration not reloaded, keeping the running one")
    });
    // SIGTERM: STOPPING=1, and the process ends.
    unsafe_free_kill(pid, 15);
    n.until("STOPPING=1", 10, |m| m == "STOPPING=1");
    let t0 = Instant::now();
    while p.0.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `systemd-socket-activate -l ADDR ... -- rsockd ...`, its log file and notify socket.
fn activated(
    dir: &std::path::Path,
    listen: &[SocketAddr],
    body: &str,
    prefix: &[&str],
) -> (Proc, std::path::PathBuf, Notify) {
    let n = Notify::new(dir);
    let (conf, log) = write_conf(dir, body);
    let mut cmd = Command::new("systemd-socket-activate");
    for a in listen {
        cmd.arg("-l").arg(a.to_string());
    }
    // It passes the program only the variables it is told to.
    cmd.arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", n.path.display()));
    cmd.args(prefix)
        .arg(BIN)
        .arg("-f")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &n.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let p = Proc(cmd.spawn().unwrap());
    (p, log, n)
}

/// systemd-socket-activate listens before it starts the program; wait for its socket.
fn wait_listening(a: SocketAddr) {
    wait_until("systemd-socket-activate to listen", 10, || {
        proc_net_tcp()
            .iter()
            .any(|(l, _, state, _)| *l == a && *state == 0x0A)
    });
}

#[test]
fn socket_activation_serves_on_the_passed_socket_and_binds_the_rest() {
    assert!(
        tool("systemd-socket-activate"),
        "systemd-socket-activate is missing: run scripts/deps.sh (Debian package systemd)"
    );
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let ip = next_loopback();
    let passed = SocketAddr::from((ip, free_tcp_port("127.0.0.1")));
    let own = SocketAddr::from((next_loopback(), free_tcp_port("127.0.0.1")));
    let (_p, log, n) = activated(
        dir.path(),
        &[passed],
        &format!(
            "internal: {} port = {}\ninternal: {} port = {}",
            passed.ip(),
            passed.port(),
            own.ip(),
            own.port()
        ),
        &[],
    );
    wait_listening(passed);
    // The first client starts the server (systemd-socket-activate waits for one).
    let (mut s, rep) = socks5_connect(passed, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"through a passed socket");
    n.until("READY=1", 30, |m| m == "READY=1");
    let t = log_of(&log);
    assert!(
        t.contains(&format!(
            "socket activation: the service manager's socket serves {}",
            dante_addr(passed)
        )),
        "{t}"
    );
    // The address nobody passed is bound by rsockd itself and serves too.
    let (mut s2, rep) = socks5_connect(own, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s2, b"through our own socket");
}

#[test]
fn an_unprivileged_server_serves_port_80_through_socket_activation() {
    if !rsockd_testkit::is_root() || !tool("setpriv") {
        eprintln!("skipped: needs root (to pass port 80) and setpriv");
        return;
    }
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    // nobody must be able to write the log.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let passed = SocketAddr::from((next_loopback(), 80));
    let (p, _log, n) = activated(
        dir.path(),
        &[passed],
        &format!("internal: {} port = 80", passed.ip()),
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ],
    );
    wait_listening(passed);
    let (mut s, rep) = socks5_connect(passed, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"port 80 without root");
    n.until("READY=1", 30, |m| m == "READY=1");
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.0.id())).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_ne!(uid, "0", "rsockd runs unprivileged");
}

#[test]
fn a_passed_socket_that_matches_nothing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let passed = SocketAddr::from((next_loopback(), free_tcp_port("127.0.0.1")));
    let other = next_loopback();
    let (mut p, log, _n) = activated(
        dir.path(),
        &[passed],
        &format!("internal: {other} port = 1080"),
        &[],
    );
    wait_listening(passed);
    // Its first connection starts rsockd, which refuses the socket and exits.
    let mut c = TcpStream::connect(passed).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    let _ = c.read(&mut b);
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(1));
    let t = log_of(&log);
    assert!(
        t.contains(&format!(
            "socket activation: passed descriptor 3 ({}, name ",
            dante_addr(passed)
        )) && t.contains("matches no internal: or rsockd.agent: address"),
        "{t}"
    );
}

#[test]
fn an_upgrade_moves_mainpid_to_the_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notify::new(dir.path());
    let ip = next_loopback();
    let (conf, _log) = write_conf(dir.path(), &format!("internal: {ip} port = 0"));
    let pidfile = dir.path().join("rsockd.pid");
    let child = Command::new(BIN)
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(&pidfile)
        .env("NOTIFY_SOCKET", &n.path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _p = Proc(child);
    n.until("READY=1", 30, |m| m == "READY=1");
    let out = Command::new(BIN)
        .arg("--upgrade")
        .arg("-p")
        .arg(&pidfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let new = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    // The new process's own READY=1 comes first, then the old one names it the main pid.
    let seen = n.until("MAINPID", 10, |m| m.starts_with("MAINPID="));
    assert_eq!(seen.last().unwrap(), &format!("MAINPID={new}"), "{seen:?}");
    assert!(seen.iter().any(|m| m == "READY=1"), "{seen:?}");
    assert!(
        !seen.iter().any(|m| m == "STOPPING=1"),
        "the service is not stopping: {seen:?}"
    );
    if let Ok(pid) = new.parse::<i32>() {
        let kids = descendants(pid);
        unsafe_free_kill(pid, 9);
        for k in kids {
            unsafe_free_kill(k, 9);
        }
    }
}
