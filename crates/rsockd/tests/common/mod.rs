//! Black-box harness: starts the real rsockd binary with a config in a temp dir, waits for its
//! `READY=1` (sd_notify, no sleeps), learns its port from the log, and talks to it over real
//! loopback sockets. Processes are ended by PID, only the ones we started.
#![allow(dead_code, clippy::unwrap_used)]

pub mod procs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rsockd");

/// Each server listens on its own 127.0.0.x address so parallel tests never collide and
/// TIME_WAIT sockets spread out.
pub fn next_loopback() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        1 + (pid % 200) as u8,
        (n / 250) as u8,
        1 + (n % 250) as u8,
    )
}

pub struct Server {
    pub child: Option<Child>,
    pub pid: i32,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub ip: Ipv4Addr,
    pub log: PathBuf,
    pub conf: PathBuf,
}

/// What every test config starts with; `{IP}` is replaced by the server's loopback address.
pub fn base_config(body: &str) -> String {
    format!("internal: {{IP}} port = 0\nexternal: 127.0.0.1\nsocksmethod: none\n{body}\n")
}

/// A permissive rule set for tests that are not about rules.
pub const OPEN_RULES: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";

fn wait_ready(sock: &UnixDatagram, child: &mut Child, deadline: Duration) -> Result<(), String> {
    let start = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 256];
    while start.elapsed() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                return Ok(());
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("rsockd exited early: {st}"));
        }
    }
    Err("rsockd did not become ready".into())
}

impl Server {
    /// Starts rsockd with `conf` (a full config text; `{IP}` and `{DIR}` are substituted and a
    /// `logoutput:` line to a file is added) and extra command-line arguments.
    pub fn start_with(conf: &str, args: &[&str]) -> Server {
        Self::try_start(conf, args).unwrap()
    }

    pub fn start(conf: &str) -> Server {
        Self::start_with(conf, &[])
    }

    pub fn try_start(conf: &str, args: &[&str]) -> Result<Server, String> {
        let dir = tempfile::tempdir().unwrap();
        let ip = next_loopback();
        let log = dir.path().join("rsockd.log");
        let conf_path = dir.path().join("rsockd.conf");
        let text = format!(
            "logoutput: {}\n{}",
            log.display(),
            conf.replace("{IP}", &ip.to_string())
                .replace("{DIR}", &dir.path().display().to_string())
        );
        std::fs::write(&conf_path, text).unwrap();
        let notify_name = format!("rsockd-test-{}-{}", std::process::id(), ip);
        let notify =
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(notify_name.as_bytes()).unwrap())
                .unwrap();
        let mut child = Command::new(BIN)
            .arg("-f")
            .arg(&conf_path)
            .args(args)
            .env("NOTIFY_SOCKET", format!("@{notify_name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Err(e) = wait_ready(&notify, &mut child, Duration::from_secs(30)) {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            let logtext = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = child.wait();
            return Err(format!("{e}\nstderr: {err}\nlog: {logtext}"));
        }
        let pid = child.id() as i32;
        let logtext = std::fs::read_to_string(&log).unwrap_or_default();
        let port = logtext
            .lines()
            .find_map(|l| {
                let rest = l.split("accepting clients on ").nth(1)?;
                // The address ends the line, or the JSON string (rsockd.log.format: json).
                let rest = rest.split('"').next()?;
                let port = rest.rsplit('.').next()?;
                port.trim().parse::<u16>().ok()
            })
            .ok_or_else(|| format!("no listening port in the log:\n{logtext}"))?;
        Ok(Server {
            child: Some(child),
            pid,
            addr: SocketAddr::from((ip, port)),
            ip,
            dir,
            log,
            conf: conf_path,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the log until `pred` holds for it, or panics with the log after `secs`.
    pub fn wait_log(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.log_text();
            if pred(&t) {
                return t;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; log:\n{t}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        assert_eq!(
            unsafe_free_kill(self.pid, sig),
            0,
            "kill {sig} {}",
            self.pid
        );
    }

    /// Child pids of the mother (its relays).
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid)
    }

    /// Waits until the mother exits; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// `kill(2)` through the `kill` command, so tests need no unsafe code.
pub fn unsafe_free_kill(pid: i32, sig: i32) -> i32 {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if st.success() {
        0
    } else {
        1
    }
}

pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    if f.get(1).and_then(|x| x.parse::<i32>().ok()) == Some(pid) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Every process below `pid` (children, grandchildren, ...).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for k in children_of(p) {
            out.push(k);
            todo.push(k);
        }
    }
    out
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // Once reaped, its pid may be anyone's (pids wrap at 32768 here): no tree to look for.
        if !matches!(c.try_wait(), Ok(None)) {
            return;
        }
        let kids = descendants(self.pid);
        let _ = c.kill();
        let _ = c.wait();
        for k in kids {
            unsafe_free_kill(k, 9);
        }
    }
}

/// A TCP echo server on its own thread; `addr` is where it listens.
pub struct Echo {
    pub addr: SocketAddr,
}

pub fn echo_server() -> Echo {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut buf = vec![0u8; 65536];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.shutdown(Shutdown::Write);
                            break;
                        }
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Echo { addr }
}

/// A tiny HTTP server answering every request with `body`.
pub fn http_server(body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok() {
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    line.clear();
                }
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// SOCKS5 greeting (method none) + CONNECT to `target`; returns the stream and the reply code.
pub fn socks5_connect(proxy: SocketAddr, target: SocketAddr) -> (TcpStream, u8) {
    let (s, rep, _) = socks5_connect_bound(proxy, target);
    (s, rep)
}

/// [`socks5_connect`], also returning the reply's BND address (None for a host name).
pub fn socks5_connect_bound(
    proxy: SocketAddr,
    target: SocketAddr,
) -> (TcpStream, u8, Option<SocketAddr>) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            req.push(1);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(4);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let (rep, bnd) = read_socks5_reply_bound(&mut s);
    (s, rep, bnd)
}

/// Reads a whole SOCKS5 reply and returns REP.
pub fn read_socks5_reply(s: &mut TcpStream) -> u8 {
    read_socks5_reply_bound(s).0
}

/// Reads a whole SOCKS5 reply: REP and BND (None for a host name).
pub fn read_socks5_reply_bound(s: &mut TcpStream) -> (u8, Option<SocketAddr>) {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 5, "reply version");
    let len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).unwrap();
            l[0] as usize
        }
        t => panic!("bad ATYP {t} in reply"),
    };
    let mut rest = vec![0u8; len + 2];
    s.read_exact(&mut rest).unwrap();
    let port = u16::from_be_bytes([rest[len], rest[len + 1]]);
    let ip: Option<std::net::IpAddr> = match head[3] {
        1 => <[u8; 4]>::try_from(&rest[..4]).ok().map(Into::into),
        4 => <[u8; 16]>::try_from(&rest[..16]).ok().map(Into::into),
        _ => None,
    };
    (head[1], ip.map(|ip| SocketAddr::new(ip, port)))
}

/// Writes `msg` on a relayed stream and reads it back from the echo target, byte for byte.
pub fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg, "the echo of {:?}", String::from_utf8_lossy(msg));
}

/// A target a test reaches through the server and that echoes what it gets: [`Echo`] (TCP, by
/// CONNECT) or `udp::UdpEcho` (UDP, by an association).
pub trait EchoTarget {
    /// A fresh session through `srv` carries `msg` to this target and back.
    fn round_trip(&self, srv: &Server, msg: &[u8]);
}

impl EchoTarget for Echo {
    fn round_trip(&self, srv: &Server, msg: &[u8]) {
        let (mut s, rep) = socks5_connect(srv.addr, self.addr);
        assert_eq!(rep, 0);
        echo_once(&mut s, msg);
    }
}

/// The server still serves: a fresh session to `echo` round-trips.
pub fn assert_serving(srv: &Server, echo: &impl EchoTarget) {
    echo.round_trip(srv, b"still serving");
}

/// Reads until EOF (or error) and returns what came.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

/// True when the peer closed `s` (EOF or reset) within `secs`.
pub fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

pub fn tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Starts `cmd` (the caller has set the program, its arguments and where stdout and stderr
/// go), waits for its `READY=1` and learns the listening port from `log`, the file where the
/// caller arranged for the log lines to land (a log file, a captured stream, a syslog sink).
/// The port line may arrive a little after READY when it travels through a pipe, so `log` is
/// polled for it.
pub fn launch(
    cmd: Command,
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
    conf: PathBuf,
    log: PathBuf,
) -> Result<Server, String> {
    launch_with(cmd, dir, ip, conf, log, |_| {})
}

/// `launch`, with `on_spawn` called on the child right after it is spawned (to take and
/// drain its piped stdout or stderr, for example).
pub fn launch_with(
    mut cmd: Command,
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
    conf: PathBuf,
    log: PathBuf,
    on_spawn: impl FnOnce(&mut Child),
) -> Result<Server, String> {
    let notify_name = format!("rsockd-launch-{}-{}", std::process::id(), ip);
    let notify =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(notify_name.as_bytes()).unwrap())
            .unwrap();
    let mut child = cmd
        .env("NOTIFY_SOCKET", format!("@{notify_name}"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    on_spawn(&mut child);
    let pid = child.id() as i32;
    let server = |child| Server {
        child: Some(child),
        pid,
        addr: SocketAddr::from((ip, 0)),
        ip,
        dir,
        log: log.clone(),
        conf,
    };
    if let Err(e) = wait_ready(&notify, &mut child, Duration::from_secs(30)) {
        let srv = server(child);
        return Err(format!("{e}\nlog: {}", srv.log_text()));
    }
    let mut srv = server(child);
    let start = Instant::now();
    loop {
        let text = srv.log_text();
        if let Some(port) = listening_port(&text) {
            srv.addr = SocketAddr::from((ip, port));
            return Ok(srv);
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("no listening port in the log:\n{text}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The port of the first `accepting clients on a.b.c.d.PORT` line of a log text.
pub fn listening_port(text: &str) -> Option<u16> {
    text.lines().find_map(|l| {
        let rest = l.split("accepting clients on ").nth(1)?;
        let port = rest.rsplit('.').next()?;
        port.trim().parse::<u16>().ok()
    })
}

/// Copies everything read from `r` to the file `path` (appending chunk by chunk) on a thread,
/// so a piped stdout or stderr can be polled like a log file.
pub fn capture(mut r: impl Read + Send + 'static, path: PathBuf) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || f.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}

/// An address the way Dante logs it: `a.b.c.d.port`.
pub fn dante_addr(a: SocketAddr) -> String {
    format!("{}.{}", a.ip(), a.port())
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, session, tty_nr…
pub fn proc_stat(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

/// Polls until `pid` is gone (or a zombie); false if it is still running after `secs`.
pub fn wait_gone(pid: i32, secs: u64) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The `Uid:` line of `/proc/PID/status`: real, effective, saved and filesystem uid.
pub fn uids(pid: i32) -> Option<[u32; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let v: Vec<u32> = line[4..]
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    v.try_into().ok()
}

/// A listener on `ip` that writes each connection's peer IP address as text and closes it,
/// so a test learns which source address the proxy used.
pub fn peer_reporter(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            if let Ok(peer) = s.peer_addr() {
                let _ = s.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
    addr
}

/// A target that accepts and hands every accepted connection to the test, which then holds
/// it open (and silent) for as long as it likes.
pub fn holding_server() -> (SocketAddr, std::sync::mpsc::Receiver<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

/// The TCP sockets of this network namespace from `/proc/net/tcp`: (local, remote, state,
/// timer), where timer is the kernel's `tr` column (0 none, 1 retransmit, 2 keep-alive, 3
/// TIME_WAIT, 4 zero-window probe).
pub fn proc_net_tcp() -> Vec<(SocketAddr, SocketAddr, u8, u8)> {
    fn parse(s: &str) -> Option<SocketAddr> {
        let (ip, port) = s.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
    }
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = parse(f.get(1)?)?;
            let remote = parse(f.get(2)?)?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let timer = f.get(5)?.split(':').next()?.parse().ok()?;
            Some((local, remote, state, timer))
        })
        .collect()
}

/// The pid in a log line's `rsockd[PID]:` prefix: which process wrote it.
pub fn line_pid(line: &str) -> Option<i32> {
    line.split("rsockd[")
        .nth(1)?
        .split(']')
        .next()?
        .parse()
        .ok()
}

/// A TCP port nobody listens on at `ip` right now.
pub fn free_tcp_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nobody is bound to at `ip` right now.
pub fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration whose one socks rule redirects sessions from `ip` and `port`.
pub fn redirect_from_config(ip: &str, port: u16) -> String {
    base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 }}\n\
         socks pass {{ from: 0/0 to: 0/0 redirect from: {ip} port = {port} log: connect }}\n"
    ))
}

/// The address a log line of `srv` names after `marker` (`answering agent checks on `,
/// `serving /metrics and /healthz on `): `srv`'s IP with the port the line gives.
pub fn logged_addr(srv: &Server, marker: &str) -> SocketAddr {
    let t = srv.wait_log(marker, 10, |t| t.contains(marker));
    let rest = t.split(marker).nth(1).unwrap();
    let port: u16 = rest
        .lines()
        .next()
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    SocketAddr::from((srv.ip, port))
}

/// A root-only (0600) rsockd password file of `users` (name, password), hashed by
/// `rsockd --hash-password`, in a directory every user may traverse (relays run as nobody).
pub fn password_file(users: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut text = String::new();
    for (user, pw) in users {
        let mut child = Command::new(BIN)
            .args(["--hash-password", "--kind", "sha512", user])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rsockd --hash-password failed");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let path = dir.path().join("users");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

/// What the kernel reports (through `ss`) about the established TCP socket from `local` to
/// `peer`: the options a test sets through the configuration, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SockReadback {
    pub tos: u32,
    /// SO_RCVBUF / SO_SNDBUF as the kernel keeps them (twice the value set).
    pub rcvbuf: u64,
    pub sndbuf: u64,
    pub mss: u32,
}

pub fn sock_readback(local: SocketAddr, peer: SocketAddr) -> Option<SockReadback> {
    let out = std::process::Command::new("ss")
        .args(["-tnie", "-m", "--tos", "state", "established", "src"])
        .arg(local.to_string())
        .arg("dst")
        .arg(peer.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = SockReadback::default();
    let mut found = false;
    for tok in text.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
        if let Some(v) = tok.strip_prefix("tos:0x") {
            r.tos = u32::from_str_radix(v, 16).ok()?;
            found = true;
        } else if let Some(v) = tok.strip_prefix("rb") {
            r.rcvbuf = v.parse().unwrap_or(r.rcvbuf);
        } else if let Some(v) = tok.strip_prefix("tb") {
            r.sndbuf = v.parse().unwrap_or(r.sndbuf);
        } else if let Some(v) = tok.strip_prefix("mss:") {
            r.mss = v.parse().unwrap_or(r.mss);
        }
    }
    found.then_some(r)
}

/// Debian's danted on a loopback address of its own, with `body` after its `logoutput:`,
/// `internal:` and `external: 127.0.0.1` lines; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Danted {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Danted {
    pub fn start(body: &str) -> Danted {
        Self::start_with_external("127.0.0.1", body)
    }

    /// [`Danted::start`] with its own `external:` address.
    pub fn start_with_external(external: &str, body: &str) -> Danted {
        assert!(
            tool("danted"),
            "danted is required (apt-get install dante-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ip = next_loopback();
        let port = free_tcp_port(&ip.to_string());
        let log = dir.path().join("danted.log");
        let conf = dir.path().join("danted.conf");
        std::fs::write(
            &conf,
            format!(
                "logoutput: {}\ninternal: {ip} port = {port}\nexternal: {external}\n{body}",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("danted")
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("danted.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from((ip, port));
        let d = Danted {
            child,
            addr,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "danted did not start"
            );
            thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Danted {
    fn drop(&mut self) {
        unsafe_free_kill(self.child.id() as i32, 15);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
