//! Authentication through the real server: RFC 1929 username/password against the system
//! password database, `rsockd.users.file` and PAM; `rfc931` against a fake ident server;
//! `user:` and `group:` rule conditions; the privileged auth helper (its uid, its death and
//! re-spawn); `rsockd --hash-password`.
//!
//! Real system accounts, groups and PAM service files are made for each test (names carry the
//! test process id) and removed by Drop guards, failed test or not. That needs root: without
//! it the tests skip. Every check asserts the wire bytes and the log line the server writes,
//! and that the server goes on serving (a good login after every refusal).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{mother_pid, relays_of, stop, wait_until, Orphans, SIGCONT, SIGKILL};
use common::*;
use rsockd_testkit::{require_root, Service, TestGroup, TestUser, PAM_UNIX};

mod clients;
mod helper;
mod ident;
mod pam;
mod rfc1929;
mod rules;
mod users_file;

const NOBODY: u32 = 65534;
const SIGHUP: i32 = 1;

// ---------------------------------------------------------------------------------------------
// Processes stopped by a test

/// A process to resume (SIGCONT) on drop, so a failed test leaves nothing stopped.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        unsafe_free_kill(self.0, SIGCONT);
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// Open rules that log everything, behind the given `socksmethod:` line.
fn open(methods: &str) -> String {
    format!("socksmethod: {methods}\n{OPEN_RULES}")
}

/// A server directory prepared before the server starts, so tests can put a password file in
/// it. The directory may be traversed by everyone (the relays run as nobody and write the
/// log; the password file itself is 0600 root).
struct Prepared {
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
}

impl Prepared {
    fn new() -> Prepared {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Prepared {
            dir,
            ip: next_loopback(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts rsockd on `conf` (`{IP}` and `{DIR}` substituted) as root with
    /// `user.privileged: root` and `user.unprivileged: nobody`. `Err` has the log and stderr.
    fn start(self, conf: &str, args: &[&str]) -> Result<Server, String> {
        let dir = self.dir.path().to_path_buf();
        let conf_path = dir.join("rsockd.conf");
        let log = dir.join("rsockd.log");
        let text = format!(
            "logoutput: {{DIR}}/rsockd.log\n\
             internal: {{IP}} port = 0\n\
             external: 127.0.0.1\n\
             user.privileged: root\n\
             user.unprivileged: nobody\n\
             {conf}"
        )
        .replace("{IP}", &self.ip.to_string())
        .replace("{DIR}", &dir.display().to_string());
        std::fs::write(&conf_path, text).unwrap();
        // Outside the server's directory, which is gone when a failed start returns.
        let errdir = tempfile::tempdir().unwrap();
        let stderr = errdir.path().join("stderr.txt");
        let mut cmd = Command::new(BIN);
        cmd.arg("-f")
            .arg(&conf_path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        launch(cmd, self.dir, self.ip, conf_path, log).map_err(|e| {
            format!(
                "{e}\nstderr: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        })
    }
}

fn start(conf: &str) -> Server {
    Prepared::new().start(conf, &[]).unwrap()
}

/// The live `rsockd: auth-helper` processes below the server.
fn helpers(srv: &Server) -> Vec<i32> {
    descendants(srv.pid)
        .into_iter()
        .filter(|p| alive(*p) && cmdline(*p) == "rsockd: auth-helper")
        .collect()
}

fn the_helper(srv: &Server) -> i32 {
    let h = helpers(srv);
    assert_eq!(h.len(), 1, "one auth helper: {h:?}");
    h[0]
}

// ---------------------------------------------------------------------------------------------
// The wire

fn client(proxy: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A client connected from `src` (one of our 127.0.0.x addresses).
fn client_from(src: Ipv4Addr, proxy: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    sock.connect(&proxy.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads up to `n` bytes: fewer when the peer closes (EOF or reset) or the read times out.
fn read_upto(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; n];
    while out.len() < n {
        match s.read(&mut buf[..n - out.len()]) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
    }
    out
}

/// An RFC 1929 request with version byte `ver`.
fn auth_request(ver: u8, user: &[u8], pw: &[u8]) -> Vec<u8> {
    let mut m = vec![ver, user.len() as u8];
    m.extend_from_slice(user);
    m.push(pw.len() as u8);
    m.extend_from_slice(pw);
    m
}

/// Greets offering `methods`; returns the method selection (fewer bytes when closed).
fn greet(s: &mut TcpStream, methods: &[u8]) -> Vec<u8> {
    let mut g = vec![5, methods.len() as u8];
    g.extend_from_slice(methods);
    s.write_all(&g).unwrap();
    read_upto(s, 2)
}

/// Greets offering username/password only, expects it chosen, sends the RFC 1929 request
/// (version 1) and returns the stream and the reply bytes (fewer than 2 when closed).
fn login(proxy: SocketAddr, user: &[u8], pw: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut s = client(proxy);
    assert_eq!(greet(&mut s, &[2]), [5, 2], "username/password selected");
    s.write_all(&auth_request(1, user, pw)).unwrap();
    let rep = read_upto(&mut s, 2);
    (s, rep)
}

/// Bytes the server has read from a client that greeted with one method and sent `user`/`pw`.
fn login_bytes(user: &[u8], pw: &[u8]) -> usize {
    3 + 3 + user.len() + pw.len()
}

/// CONNECT to `target` on an authenticated stream; returns REP.
fn connect_req(s: &mut TcpStream, target: SocketAddr) -> u8 {
    let SocketAddr::V4(a) = target else {
        panic!("IPv4 targets only")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&a.ip().octets());
    req.extend_from_slice(&a.port().to_be_bytes());
    s.write_all(&req).unwrap();
    read_socks5_reply(s)
}

/// A whole authenticated session to the echo server: RFC 1929 success (`01 00`), CONNECT
/// succeeded, data echoed. Returns the client's address as the server saw it.
fn session(proxy: SocketAddr, user: &str, pw: &str, echo: &Echo) -> SocketAddr {
    let (mut s, rep) = login(proxy, user.as_bytes(), pw.as_bytes());
    assert_eq!(rep, [1, 0], "RFC 1929 success for {user}");
    assert_eq!(connect_req(&mut s, echo.addr), 0, "CONNECT for {user}");
    echo_once(&mut s, format!("hello from {user}").as_bytes());
    s.local_addr().unwrap()
}

/// A login that must fail: RFC 1929 `01 01`, then the server closes. Returns the client's
/// address.
fn refused(proxy: SocketAddr, user: &[u8], pw: &[u8]) -> SocketAddr {
    let (mut s, rep) = login(proxy, user, pw);
    assert_eq!(
        rep,
        [1, 1],
        "RFC 1929 failure for {}",
        String::from_utf8_lossy(user)
    );
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10), "the server closes after 01 01");
    me
}

// ---------------------------------------------------------------------------------------------
// Log lines

/// Waits for the refusal line of the client `client` and returns it: exactly
/// `info: block(1): tcp/accept ]: CLIENT SERVER: error after reading N bytes in S seconds:
/// REASON` (S any whole number).
fn refusal_line(srv: &Server, client: SocketAddr, bytes: usize, reason: &str) -> String {
    let head = format!(
        ": info: block(1): tcp/accept ]: {} {}: error after reading {bytes} byte{} in ",
        dante_addr(client),
        dante_addr(srv.addr),
        if bytes == 1 { "" } else { "s" }
    );
    let tail = format!(" seconds: {reason}");
    let fits = |l: &str| {
        l.split_once(&head).is_some_and(|(_, rest)| {
            rest.strip_suffix(&tail)
                .is_some_and(|secs| !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let text = srv.wait_log(&format!("refusal line `{head}...{tail}`"), 15, |t| {
        t.lines().any(fits)
    });
    text.lines().find(|l| fits(l)).unwrap().to_string()
}

/// Waits for the relay's session line of an authenticated client: `pass(1): tcp/connect [:
/// METHOD%USER@CLIENT SERVER -> `.
fn wait_pass_line(srv: &Server, method: &str, user: &str, client: SocketAddr) -> String {
    let want = format!(
        ": info: pass(1): tcp/connect [: {method}%{user}@{} {} -> ",
        dante_addr(client),
        dante_addr(srv.addr)
    );
    let text = srv.wait_log(&format!("session line `{want}`"), 15, |t| t.contains(&want));
    text.lines()
        .find(|l| l.contains(&want))
        .unwrap()
        .to_string()
}

fn count(text: &str, pat: &str) -> usize {
    text.matches(pat).count()
}

/// `rsockd --hash-password [--kind K] [USER]` with `password` on stdin: (exit code, stdout,
/// stderr).
fn hash_password(args: &[&str], password: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("--hash-password")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = password.to_vec();
    input.push(b'\n');
    // Refused arguments end the process before it reads: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(&input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `user:hash` line from `rsockd --hash-password`.
fn hash_line(kind: &str, user: &str, password: &str) -> String {
    let (code, out, err) = hash_password(&["--kind", kind, user], password.as_bytes());
    assert_eq!(code, 0, "hash-password failed: {err}");
    out
}

/// Writes a password file of mode 0600 (owned by root, who runs the tests).
fn write_users(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
