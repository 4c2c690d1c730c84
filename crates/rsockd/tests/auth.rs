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

// ---------------------------------------------------------------------------------------------
// Processes and privileges

#[test]
fn helper_keeps_root_while_mothers_and_relays_run_as_nobody() {
    require_root!();
    let user = TestUser::new("priv");
    let echo = echo_server();
    let srv = start(&open("username"));
    let helper = the_helper(&srv);
    assert_eq!(
        uids(helper).unwrap(),
        [0, 0, 0, 0],
        "the auth helper keeps user.privileged (root)"
    );
    assert!(
        children_of(srv.pid).contains(&helper),
        "mother 1 started the helper"
    );
    let m = uids(srv.pid).unwrap();
    assert_eq!(
        [m[0], m[1], m[3]],
        [NOBODY; 3],
        "mother runs as nobody: {m:?}"
    );
    let relays = relays_of(srv.pid);
    assert!(!relays.is_empty());
    for (r, _) in relays {
        let u = uids(r).unwrap();
        assert_eq!(u, [NOBODY; 4], "relay {r} runs as nobody");
    }
    // And it works: shadow is read by the helper, not by the unprivileged mother.
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "username", &user.name, me);
}

/// Dante 1.4.2 closes an authenticated session with `pass(1): tcp/accept ]: N -> CLIENT
/// SERVER -> M: ...`: the client-rule line has the bare client address, and only the
/// socks-rule (`tcp/connect`) lines carry `username%USER@` (seen with Debian's danted). rsockd
/// writes `username%USER@CLIENT` in the closing `tcp/accept` line too.
#[test]
fn closing_accept_line_has_the_bare_client_address() {
    require_root!();
    let user = TestUser::new("acc");
    let echo = echo_server();
    let srv = start(&open("username"));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    let pair = format!("{} {} -> ", dante_addr(me), dante_addr(srv.addr));
    let closing = |l: &str| l.contains(": info: pass(1): tcp/accept ]: ") && l.contains(&pair);
    let text = srv.wait_log("the closing accept line", 15, |t| t.lines().any(closing));
    let line = text.lines().find(|l| closing(l)).unwrap();
    assert!(line.contains(&format!(" -> {pair}")), "{line}");
}

#[test]
fn no_helper_without_a_password_method() {
    require_root!();
    let srv = start(&open("none"));
    assert_eq!(helpers(&srv), Vec::<i32>::new(), "no method needs it");
    let srv = start(&open("rfc931"));
    assert_eq!(
        helpers(&srv),
        Vec::<i32>::new(),
        "ident needs no privileges"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. System users with real clients

fn curl(proxy: SocketAddr, proxy_user: &str, url: &str) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks5"])
        .arg(proxy.to_string())
        .args(["--proxy-user", proxy_user, url])
        .output()
        .unwrap()
}

#[test]
fn system_user_with_curl() {
    require_root!();
    assert!(tool("curl"), "curl is required (scripts/deps.sh)");
    let user = TestUser::new("curl");
    let web = http_server("body through an authenticated proxy");
    let url = format!("http://127.0.0.1:{}/", web.port());
    let srv = start(&open("username"));
    let good = format!("{}:{}", user.name, user.password);

    let out = curl(srv.addr, &good, &url);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "body through an authenticated proxy"
    );
    srv.wait_log("the session line", 15, |t| {
        t.contains(&format!(
            ": info: pass(1): tcp/connect [: username%{}@127.0.0.1.",
            user.name
        ))
    });

    // Wrong password: curl gives up (CURLE_PROXY, 97), the log says why.
    let wrong_pw = format!("Wrong-{}-pw", std::process::id());
    let out = curl(srv.addr, &format!("{}:{wrong_pw}", user.name), &url);
    assert_eq!(out.status.code(), Some(97), "{out:?}");
    assert!(out.stdout.is_empty());
    let reason = format!(
        "system password authentication failed for user \"{}\"",
        user.name
    );
    let text = srv.wait_log("the wrong password's line", 15, |t| t.contains(&reason));
    let line = text.lines().find(|l| l.contains(&reason)).unwrap();
    assert!(
        line.contains(": info: block(1): tcp/accept ]: 127.0.0.1.")
            && line.contains(&format!(" {}: error after reading ", dante_addr(srv.addr)))
            && line.ends_with(&format!(" seconds: {reason}")),
        "{line}"
    );

    // Unknown user.
    let ghost = format!("rskghost{}", std::process::id());
    let out = curl(srv.addr, &format!("{ghost}:{wrong_pw}"), &url);
    assert_eq!(out.status.code(), Some(97), "{out:?}");
    let reason = format!(
        "could not access user \"{ghost}\"'s records in the system password file: no system error"
    );
    srv.wait_log("the unknown user's line", 15, |t| {
        t.lines()
            .any(|l| l.contains(": info: block(1): tcp/accept ]: ") && l.ends_with(&reason))
    });

    // Still serving.
    let out = curl(srv.addr, &good, &url);
    assert!(out.status.success(), "{out:?}");
    let text = srv.log_text();
    assert!(!text.contains(&wrong_pw), "a password in the log:\n{text}");
    assert!(
        !text.contains(&user.password),
        "a password in the log:\n{text}"
    );
}

const PY_CLIENT: &str = "import socks, sys\n\
ip, port, user, pw, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])\n\
s = socks.socksocket()\n\
s.set_proxy(socks.SOCKS5, ip, port, username=user, password=pw)\n\
s.settimeout(20)\n\
try:\n\
\x20   s.connect(('127.0.0.1', tport))\n\
except Exception as e:\n\
\x20   print('refused', e)\n\
\x20   sys.exit(0)\n\
s.sendall(b'py-auth')\n\
got = b''\n\
while len(got) < 7:\n\
\x20   b = s.recv(7 - len(got))\n\
\x20   if not b: break\n\
\x20   got += b\n\
print('ok', got.decode())\n";

fn python_client(srv: &Server, user: &str, pw: &str, echo: &Echo) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(srv.ip.to_string())
        .arg(srv.addr.port().to_string())
        .arg(user)
        .arg(pw)
        .arg(echo.addr.port().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn system_user_with_python_socks() {
    require_root!();
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "Debian's python3 with python3-socks is required (scripts/deps.sh)"
    );
    let user = TestUser::new("py");
    let echo = echo_server();
    let srv = start(&open("username"));
    assert_eq!(
        python_client(&srv, &user.name, &user.password, &echo),
        "ok py-auth"
    );
    assert_eq!(
        python_client(&srv, &user.name, "not-the-password", &echo),
        // PySocks wraps its SOCKS5AuthError("SOCKS5 authentication failed") raised on 01 01.
        "refused Socket error: SOCKS5 authentication failed"
    );
    let reason = format!(
        "system password authentication failed for user \"{}\"",
        user.name
    );
    srv.wait_log("the refusal", 15, |t| {
        t.lines()
            .any(|l| l.ends_with(&format!(" seconds: {reason}")))
    });
    assert_eq!(
        python_client(&srv, &user.name, &user.password, &echo),
        "ok py-auth"
    );
    assert!(!srv.log_text().contains("not-the-password"));
}

// ---------------------------------------------------------------------------------------------
// 2. RFC 1929 on the wire

#[test]
fn rfc1929_right_wrong_and_unknown_user() {
    require_root!();
    let user = TestUser::new("wire");
    let echo = echo_server();
    let srv = start(&open("username"));
    let (name, pw) = (user.name.as_bytes(), user.password.as_bytes());

    let me = session(srv.addr, &user.name, &user.password, &echo);
    let line = wait_pass_line(&srv, "username", &user.name, me);
    assert!(
        line.ends_with(&format!(" {}", dante_addr(echo.addr))),
        "{line}"
    );

    let bad = b"Wrong-password-1";
    let me = refused(srv.addr, name, bad);
    refusal_line(
        &srv,
        me,
        login_bytes(name, bad),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );

    let ghost = format!("rskghost{}", std::process::id());
    let me = refused(srv.addr, ghost.as_bytes(), pw);
    refusal_line(
        &srv,
        me,
        login_bytes(ghost.as_bytes(), pw),
        &format!(
            "could not access user \"{ghost}\"'s records in the system password file: no system error"
        ),
    );

    // Case matters; a right password for another name is no login.
    let upper = user.name.to_uppercase();
    let me = refused(srv.addr, upper.as_bytes(), pw);
    refusal_line(
        &srv,
        me,
        login_bytes(upper.as_bytes(), pw),
        &format!(
            "could not access user \"{upper}\"'s records in the system password file: no system error"
        ),
    );

    session(srv.addr, &user.name, &user.password, &echo);
    let text = srv.log_text();
    assert!(!text.contains(&user.password) && !text.contains("Wrong-password-1"));
}

#[test]
fn rfc1929_version_byte_and_empty_user() {
    require_root!();
    let user = TestUser::new("ver");
    let echo = echo_server();
    let srv = start(&open("username"));
    let (name, pw) = (user.name.as_bytes(), user.password.as_bytes());

    // Version 5 in the sub-negotiation (a common client mistake) is taken like 1; the reply
    // says 1, as RFC 1929 has it.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(5, name, pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"version five");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());

    // Version 2: refused before any check, even with the right password.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(2, name, pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    // The whole request arrived in one segment and was read before the version was checked.
    refusal_line(
        &srv,
        me,
        3 + auth_request(2, name, pw).len(),
        "bad username/password auth version 2 (expected 1)",
    );

    // ULEN 0.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, b"", pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3 + auth_request(1, b"", pw).len(),
        "empty username",
    );

    session(srv.addr, &user.name, &user.password, &echo);
    assert!(!srv.log_text().contains(&user.password));
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

#[test]
fn rfc1929_longest_user_and_password() {
    require_root!();
    let echo = echo_server();
    // 255-byte name and password: the RFC's limits, through a password file (system names
    // are far shorter).
    let long_user: String = (0..255).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let long_pw: String = (0..255).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let prep = Prepared::new();
    let users = prep.path("users");
    write_users(&users, &hash_line("sha512", &long_user, &long_pw));
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let me = session(srv.addr, &long_user, &long_pw, &echo);
    wait_pass_line(&srv, "username", &long_user, me);

    // The same name with the last password byte changed.
    let mut bad = long_pw.clone().into_bytes();
    bad[254] = b'!';
    let me = refused(srv.addr, long_user.as_bytes(), &bad);
    refusal_line(
        &srv,
        me,
        login_bytes(long_user.as_bytes(), &bad),
        &format!(
            "password authentication failed for user \"{long_user}\" (password file {})",
            users.display()
        ),
    );

    // And a system user with a 255-byte password.
    let mut user = TestUser::new("long");
    user.set_password(&long_pw);
    let srv2 = start(&open("username"));
    session(srv2.addr, &user.name, &user.password, &echo);
    let me = refused(srv2.addr, user.name.as_bytes(), &bad);
    refusal_line(
        &srv2,
        me,
        login_bytes(user.name.as_bytes(), &bad),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    session(srv.addr, &long_user, &long_pw, &echo);
}

#[test]
fn rfc1929_lying_length_then_close() {
    require_root!();
    let user = TestUser::new("lie");
    let echo = echo_server();
    let srv = start(&open("username"));
    // ULEN 200, then 3 bytes of name, then the client closes its side.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&[1, 200, b'a', b'b', b'c']).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let me = s.local_addr().unwrap();
    assert_eq!(
        read_upto(&mut s, 16),
        b"",
        "no reply to a request cut short, and the server closes"
    );
    refusal_line(&srv, me, 3 + 5, "eof from local client");
    // Nothing was checked, nothing stuck: the next login works.
    session(srv.addr, &user.name, &user.password, &echo);
}

#[test]
fn rfc1929_split_byte_by_byte() {
    require_root!();
    let user = TestUser::new("split");
    let echo = echo_server();
    let srv = start(&open("username"));
    let mut s = client(srv.addr);
    let mut all = vec![5, 1, 2];
    all.extend(auth_request(
        1,
        user.name.as_bytes(),
        user.password.as_bytes(),
    ));
    // Each byte its own segment (no delay, a pause between writes), the greeting included.
    for (i, b) in all.iter().enumerate() {
        s.write_all(&[*b]).unwrap();
        if i == 2 {
            assert_eq!(read_upto(&mut s, 2), [5, 2]);
        }
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"byte by byte");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());

    // A wrong password split the same way is refused the same way.
    let mut s = client(srv.addr);
    let bad = auth_request(1, user.name.as_bytes(), b"split-but-wrong");
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    for b in &bad {
        s.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3 + bad.len(),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. SOCKS v4 and method selection

#[test]
fn socks4_refused_where_only_username_is_allowed() {
    require_root!();
    let web = http_server("must not be reached");
    let user = TestUser::new("s4");
    let echo = echo_server();
    let srv = start(&open("username"));

    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks4"])
        .arg(srv.addr.to_string())
        .arg(format!("http://127.0.0.1:{}/", web.port()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // Raw: CD 91 (rejected), then close.
    let mut s = client(srv.addr);
    let SocketAddr::V4(t) = echo.addr else {
        unreachable!()
    };
    let mut req = vec![4, 1];
    req.extend_from_slice(&t.port().to_be_bytes());
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(b"rsk\0");
    s.write_all(&req).unwrap();
    assert_eq!(read_upto(&mut s, 8), [0, 91, 0, 0, 0, 0, 0, 0]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        req.len(),
        "SOCKS v4 client refused: it cannot authenticate and this rule requires a method other \
         than \"none\"",
    );
    session(srv.addr, &user.name, &user.password, &echo);
}

#[test]
fn method_preference_is_the_servers() {
    require_root!();
    let user = TestUser::new("pref");
    let echo = echo_server();

    // username first: a client offering none and username gets username.
    let srv = start(&open("username none"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0, 2]), [5, 2]);
    s.write_all(&auth_request(
        1,
        user.name.as_bytes(),
        user.password.as_bytes(),
    ))
    .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"username first");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());
    // The client's order does not matter either.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2, 0]), [5, 2]);
    // A client offering only none still gets in: none is allowed.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"none allowed too");

    // none first: the same client gets none, and its session line names no user.
    let srv = start(&open("none username"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0, 2]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"none first");
    let me = s.local_addr().unwrap();
    srv.wait_log("the session line without a user", 15, |t| {
        t.contains(&format!(
            ": info: pass(1): tcp/connect [: {} {} -> ",
            dante_addr(me),
            dante_addr(srv.addr)
        ))
    });

    // Only username allowed, the client offers only none: 05 FF and close.
    let srv = start(&open("username"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0xff]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3,
        "client offered no acceptable authentication method",
    );
    // GSSAPI alone is no better.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[1]), [5, 0xff]);
    session(srv.addr, &user.name, &user.password, &echo);
}

// ---------------------------------------------------------------------------------------------
// 4. user: and group: in socks rules

/// Logs in and asks for a CONNECT; returns REP (the login itself must succeed) and the
/// client's address.
fn login_then_connect(proxy: SocketAddr, user: &TestUser, target: SocketAddr) -> (u8, SocketAddr) {
    let (mut s, rep) = login(proxy, user.name.as_bytes(), user.password.as_bytes());
    assert_eq!(rep, [1, 0], "{} authenticates", user.name);
    let r = connect_req(&mut s, target);
    if r == 0 {
        echo_once(&mut s, b"rule passed");
    } else {
        assert!(closed_within(&mut s, 10), "closed after the refusal");
    }
    (r, s.local_addr().unwrap())
}

/// Waits for the two lines of a request that socks rule #2 blocked, from `me` (logged in as
/// `user`) to `target`, exactly `block(2): tcp/connect ]: username%USER@CLIENT SERVER ->
/// 0.0.0.0.0 TARGET` and `block(1): tcp/accept ]: CLIENT SERVER: blocked by higher-level
/// socks-rule #2` (client-rule lines name the bare client), as Dante writes them.
fn wait_rule_block(srv: &Server, user: &TestUser, me: SocketAddr, target: SocketAddr) {
    let pair = format!("{} {}", dante_addr(me), dante_addr(srv.addr));
    let connect = format!(
        ": info: block(2): tcp/connect ]: username%{}@{pair} -> 0.0.0.0.0 {}",
        user.name,
        dante_addr(target)
    );
    let accept =
        format!(": info: block(1): tcp/accept ]: {pair}: blocked by higher-level socks-rule #2");
    srv.wait_log("the block lines", 15, |t| {
        t.lines().any(|l| l.ends_with(&connect)) && t.lines().any(|l| l.ends_with(&accept))
    });
}

#[test]
fn user_condition_in_socks_rule() {
    require_root!();
    let alice = TestUser::new("ua");
    let bob = TestUser::new("ub");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 user: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        alice.name
    ));
    let (rep, me) = login_then_connect(srv.addr, &alice, echo.addr);
    assert_eq!(rep, 0, "alice is listed");
    wait_pass_line(&srv, "username", &alice.name, me);

    // bob's password is right, so the login succeeds; the rule then blocks him (REP 02).
    let (rep, me) = login_then_connect(srv.addr, &bob, echo.addr);
    assert_eq!(rep, 2, "bob is not listed: not allowed by ruleset");
    wait_rule_block(&srv, &bob, me, echo.addr);

    let (rep, _) = login_then_connect(srv.addr, &alice, echo.addr);
    assert_eq!(rep, 0);
}

/// Dante 1.4.2 writes the authenticated client in a socks rule's block line, as in its pass
/// lines: `block(2): tcp/connect ]: username%bob@127.0.0.1.PORT 127.0.0.1.1080 -> 0.0.0.0.0
/// TARGET` (seen with Debian's danted), so the log says which user a `user:`/`group:` rule
/// turned away.
#[test]
fn socks_rule_block_line_names_the_authenticated_user() {
    require_root!();
    let alice = TestUser::new("bla");
    let bob = TestUser::new("blb");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 user: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        alice.name
    ));
    let (rep, me) = login_then_connect(srv.addr, &bob, echo.addr);
    assert_eq!(rep, 2);
    let want = format!(
        ": info: block(2): tcp/connect ]: username%{}@{} {} -> 0.0.0.0.0 {}",
        bob.name,
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(echo.addr)
    );
    srv.wait_log(&format!("`{want}`"), 15, |t| t.contains(&want));
}

#[test]
fn group_condition_primary_and_supplementary_members() {
    require_root!();
    let group = TestGroup::new("g");
    let primary = TestUser::with_groups("gp", Some(&group), None);
    let extra = TestUser::with_groups("gs", None, Some(&group));
    let outsider = TestUser::new("gn");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 group: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        group.name
    ));
    for u in [&primary, &extra] {
        let (rep, me) = login_then_connect(srv.addr, u, echo.addr);
        assert_eq!(rep, 0, "{} is in group {}", u.name, group.name);
        wait_pass_line(&srv, "username", &u.name, me);
    }
    let (rep, me) = login_then_connect(srv.addr, &outsider, echo.addr);
    assert_eq!(rep, 2, "{} is not in the group", outsider.name);
    wait_rule_block(&srv, &outsider, me, echo.addr);
    let (rep, _) = login_then_connect(srv.addr, &extra, echo.addr);
    assert_eq!(rep, 0);
}

// ---------------------------------------------------------------------------------------------
// 5. rsockd.users.file

#[test]
fn password_file_every_hash_kind_from_a_root_only_file() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let kinds = [
        ("yescrypt", "ky", "$y$"),
        ("bcrypt", "kb", "$2b$12$"),
        ("sha512", "ks", "$6$"),
    ];
    let mut text = String::from("# made by rsockd --hash-password\n");
    for (kind, user, prefix) in kinds {
        let line = hash_line(kind, user, &format!("pw-of-{user}"));
        assert!(line.starts_with(&format!("{user}:{prefix}")), "{line}");
        text.push_str(&line);
    }
    write_users(&users, &text);
    let meta = std::fs::metadata(&users).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.uid(), 0, "owned by root");
    }
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    // The mothers could not read the file; the helper did.
    assert_eq!(uids(srv.pid).unwrap()[1], NOBODY);
    srv.wait_log("the load line", 15, |t| {
        t.contains(&format!(
            ": info: password file {} loaded: 3 user(s)",
            users.display()
        ))
    });
    assert!(
        !srv.log_text().contains("readable by every user"),
        "no permission warning for a 0600 file"
    );
    for (_, user, _) in kinds {
        let me = session(srv.addr, user, &format!("pw-of-{user}"), &echo);
        wait_pass_line(&srv, "username", user, me);
        // Twice: the second answer may come from the helper's cache and must agree.
        session(srv.addr, user, &format!("pw-of-{user}"), &echo);
        let me = refused(srv.addr, user.as_bytes(), b"pw-of-someone");
        refusal_line(
            &srv,
            me,
            login_bytes(user.as_bytes(), b"pw-of-someone"),
            &format!(
                "password authentication failed for user \"{user}\" (password file {})",
                users.display()
            ),
        );
    }
    // A system account is no password-file user.
    let me = refused(srv.addr, b"root", b"pw-of-ky");
    refusal_line(
        &srv,
        me,
        login_bytes(b"root", b"pw-of-ky"),
        &format!(
            "user \"root\" is not in the password file {}",
            users.display()
        ),
    );
    session(srv.addr, "ky", "pw-of-ky", &echo);
    let log = srv.log_text();
    assert!(!log.contains("pw-of-"), "a password in the log:\n{log}");
}

#[test]
fn password_file_with_a_plain_text_entry_refuses_to_start() {
    require_root!();
    let prep = Prepared::new();
    let users = prep.path("users");
    let good = hash_line("sha512", "alice", "alice-pw");
    write_users(&users, &format!("{good}bob:bob-secret\n"));
    let err = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .map(|_| ())
        .expect_err("a plain-text entry must refuse the start");
    let want = format!(
        "{}:2: the entry of user \"bob\" is not a crypt(3) hash (plain-text passwords are \
         refused); use yescrypt ($y$), bcrypt ($2b$) or SHA-512 ($6$), for example from \
         'rsockd --hash-password'",
        users.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("exited early"), "{err}");
    assert!(
        !err.contains("bob-secret"),
        "the password is not echoed: {err}"
    );
}

#[test]
fn password_file_reloaded_on_sighup() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let alice = hash_line("sha512", "alice", "alice-pw");
    let carl = hash_line("sha512", "carl", "carl-pw");
    let bob = hash_line("sha512", "bob", "bob-pw");
    write_users(&users, &format!("{alice}{carl}"));
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let loaded = format!(
        ": info: password file {} loaded: 2 user(s)",
        users.display()
    );
    srv.wait_log("the first load", 15, |t| count(t, &loaded) == 1);
    session(srv.addr, "alice", "alice-pw", &echo);
    session(srv.addr, "carl", "carl-pw", &echo);
    let me = refused(srv.addr, b"bob", b"bob-pw");
    refusal_line(
        &srv,
        me,
        login_bytes(b"bob", b"bob-pw"),
        &format!(
            "user \"bob\" is not in the password file {}",
            users.display()
        ),
    );

    // carl out, bob in.
    write_users(&users, &format!("{alice}{bob}"));
    srv.signal(SIGHUP);
    srv.wait_log("the reload", 15, |t| count(t, &loaded) == 2);
    session(srv.addr, "bob", "bob-pw", &echo);
    let me = refused(srv.addr, b"carl", b"carl-pw");
    refusal_line(
        &srv,
        me,
        login_bytes(b"carl", b"carl-pw"),
        &format!(
            "user \"carl\" is not in the password file {}",
            users.display()
        ),
    );
    session(srv.addr, "alice", "alice-pw", &echo);

    // A broken file: the error is logged and the loaded users go on working.
    write_users(&users, &format!("{alice}carl:carl-pw\n"));
    srv.signal(SIGHUP);
    let broken = format!(
        "{}:2: the entry of user \"carl\" is not a crypt(3) hash (plain-text passwords are \
         refused); use yescrypt ($y$), bcrypt ($2b$) or SHA-512 ($6$), for example from \
         'rsockd --hash-password'; keeping the previously loaded password file",
        users.display()
    );
    let text = srv.wait_log("the broken file's error", 15, |t| t.contains(&broken));
    let line = text.lines().find(|l| l.contains(&broken)).unwrap();
    assert!(line.contains(": error: "), "{line}");
    session(srv.addr, "alice", "alice-pw", &echo);
    session(srv.addr, "bob", "bob-pw", &echo);
    refused(srv.addr, b"carl", b"carl-pw");
    assert_eq!(count(&srv.log_text(), &loaded), 2, "no third load");
    assert!(!srv.log_text().contains("carl-pw"));
}

// ---------------------------------------------------------------------------------------------
// 6. PAM

#[test]
fn pam_username_right_and_wrong_password() {
    require_root!();
    let user = TestUser::new("pam");
    let service = Service::new("pam", PAM_UNIX);
    let echo = echo_server();
    let srv = start(&format!(
        "pam.servicename: {}\n{}",
        service.name,
        open("pam.username")
    ));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "pam.username", &user.name, me);

    // pam_unix waits about two seconds after a failure; no time is asserted.
    let me = refused(srv.addr, user.name.as_bytes(), b"wrong-for-pam");
    let reason = format!("pam_authenticate() for user \"{}\" failed: ", user.name);
    let prefix = format!(
        ": info: block(1): tcp/accept ]: {} {}: error after reading {} bytes in ",
        dante_addr(me),
        dante_addr(srv.addr),
        login_bytes(user.name.as_bytes(), b"wrong-for-pam")
    );
    let text = srv.wait_log("the PAM refusal", 15, |t| {
        t.lines()
            .any(|l| l.contains(&prefix) && l.contains(&reason))
    });
    let line = text
        .lines()
        .find(|l| l.contains(&prefix) && l.contains(&reason))
        .unwrap();
    assert!(
        line.ends_with(&format!("{reason}Authentication failure")),
        "{line}"
    );
    session(srv.addr, &user.name, &user.password, &echo);
    assert!(!srv.log_text().contains("wrong-for-pam"));
    assert!(!srv.log_text().contains(&user.password));
}

/// Dante 1.4.2 words a PAM refusal `pam_authenticate() for user "NAME" failed: Authentication
/// failure` (seen with Debian's danted and pam_unix), and log scrapers match it (fail2ban's
/// filter for dante looks for `pam_authenticate() for user "NAME"`). rsockd writes `pam
/// authentication failed for user "NAME" (service S): pam_authenticate: Authentication
/// failure (PAM error 7)`.
#[test]
fn pam_refusal_reason_in_dantes_words() {
    require_root!();
    let user = TestUser::new("pamd");
    let service = Service::new("pamd", PAM_UNIX);
    let srv = start(&format!(
        "pam.servicename: {}\n{}",
        service.name,
        open("pam.username")
    ));
    let me = refused(srv.addr, user.name.as_bytes(), b"wrong-for-pam");
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"wrong-for-pam"),
        &format!(
            "pam_authenticate() for user \"{}\" failed: Authentication failure",
            user.name
        ),
    );
}

#[test]
/// Dante runs PAM at request time with the matched socks rule's `pam.servicename`: the RFC
/// 1929 exchange succeeds (01 00) and a wrong password is refused with reply 02 and a
/// `tcp/connect` block line naming the user.
fn pam_servicename_in_a_socks_rule_applies_at_request_time() {
    require_root!();
    let user = TestUser::new("pamr");
    let service = Service::new("pamr", PAM_UNIX);
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: pam.username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 pam.servicename: {} log: connect disconnect error }}\n",
        service.name
    ));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "pam.username", &user.name, me);

    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, user.name.as_bytes(), b"wrong-at-request"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0], "PAM waits for the socks rule");
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    let want = format!(
        ": info: block(1): tcp/connect ]: pam.username%{}@{} {} -> 0.0.0.0.0 {}: \
         pam_authenticate() for user \"{}\" failed: Authentication failure",
        user.name,
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(echo.addr),
        user.name
    );
    srv.wait_log("the request-time PAM refusal", 15, |t| {
        t.lines()
            .any(|l| l.ends_with(&want[2..]) || l.contains(&want))
    });
    assert!(!srv.log_text().contains("wrong-at-request"));
    session(srv.addr, &user.name, &user.password, &echo);
}

// ---------------------------------------------------------------------------------------------
// 7. The helper's death, and a mother's

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 01 00 and a working session.
    Served,
    /// 01 01, then the server closed.
    Refused,
    /// Closed (EOF or reset) before an RFC 1929 reply.
    Closed,
    /// Anything else: a hang (no answer within the read timeout) or wrong bytes.
    Bad(String),
}

fn attempt(proxy: SocketAddr, user: &str, pw: &str, echo: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect(proxy) {
        Ok(s) => s,
        Err(e) => return Outcome::Bad(format!("connect: {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut msg = vec![5, 1, 2];
    msg.extend(auth_request(1, user.as_bytes(), pw.as_bytes()));
    if s.write_all(&msg).is_err() {
        return Outcome::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    while got.len() < 4 {
        match s.read(&mut buf[..4 - got.len()]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if timed_out(&e) => return Outcome::Bad(format!("hung after {got:?}")),
            Err(_) => break,
        }
    }
    match got.as_slice() {
        [5, 2, 1, 0] => {
            let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
            req.extend_from_slice(&echo.port().to_be_bytes());
            if s.write_all(&req).is_err() {
                return Outcome::Bad("write after 01 00".into());
            }
            let mut rep = [0u8; 10];
            if s.read_exact(&mut rep).is_err() || rep[1] != 0 {
                return Outcome::Bad(format!("CONNECT reply {rep:?}"));
            }
            if s.write_all(b"ping").is_err() {
                return Outcome::Bad("write to the session".into());
            }
            let mut back = [0u8; 4];
            match s.read_exact(&mut back) {
                Ok(()) if &back == b"ping" => Outcome::Served,
                r => Outcome::Bad(format!("echo: {r:?} {back:?}")),
            }
        }
        [5, 2, 1, 1] => {
            if closed_within(&mut s, 10) {
                Outcome::Refused
            } else {
                Outcome::Bad("not closed after 01 01".into())
            }
        }
        [] | [5] | [5, 2] => Outcome::Closed,
        other => Outcome::Bad(format!("bytes {other:?}")),
    }
}

#[test]
fn helper_killed_during_logins_is_respawned() {
    require_root!();
    let user = TestUser::new("kill");
    let echo = echo_server();
    let srv = start(&open("username"));
    let old = the_helper(&srv);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (proxy, name, pw, target) = (
        srv.addr,
        user.name.clone(),
        user.password.clone(),
        echo.addr,
    );
    // Three clients in a loop each (at most 200 attempts or 20 s in all), so that checks are
    // in flight when the helper dies.
    let attempts = Arc::new(AtomicUsize::new(0));
    let loopers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, served, attempts) = (stop.clone(), served.clone(), attempts.clone());
            let (name, pw) = (name.clone(), pw.clone());
            thread::spawn(move || {
                let start = Instant::now();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst)
                    && attempts.fetch_add(1, Ordering::SeqCst) < 200
                    && start.elapsed() < Duration::from_secs(20)
                {
                    let o = attempt(proxy, &name, &pw, target);
                    if o == Outcome::Served {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    outcomes.push(o);
                }
                outcomes
            })
        })
        .collect();
    wait_until("a few logins before the kill", 15, || {
        served.load(Ordering::SeqCst) >= 3
    });
    assert_eq!(unsafe_free_kill(old, SIGKILL), 0);
    let warning = format!(
        ": warning: auth helper (pid {old}) exited unexpectedly; logins fail until it is \
         re-spawned"
    );
    srv.wait_log("the helper warning", 15, |t| t.contains(&warning));
    let mut new = 0;
    wait_until("a new helper", 15, || {
        let h = helpers(&srv);
        match h.as_slice() {
            [p] if *p != old => {
                new = *p;
                true
            }
            _ => false,
        }
    });
    assert!(wait_gone(old, 10), "the old helper is gone (reaped)");
    assert_eq!(
        uids(new).unwrap(),
        [0, 0, 0, 0],
        "the new helper is root too"
    );
    let before = served.load(Ordering::SeqCst);
    wait_until("logins through the new helper", 20, || {
        served.load(Ordering::SeqCst) >= before + 3
    });
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = loopers
        .into_iter()
        .flat_map(|l| l.join().unwrap())
        .collect();
    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Bad(_)))
        .collect();
    assert!(bad.is_empty(), "unclean attempts: {bad:?} of {outcomes:?}");
    eprintln!(
        "{} attempts: {} served, {} refused, {} closed",
        outcomes.len(),
        outcomes.iter().filter(|o| **o == Outcome::Served).count(),
        outcomes.iter().filter(|o| **o == Outcome::Refused).count(),
        outcomes.iter().filter(|o| **o == Outcome::Closed).count()
    );
    // A refusal during the gap says why.
    let text = srv.log_text();
    for l in text
        .lines()
        .filter(|l| l.contains("block(1): tcp/accept ]: "))
    {
        eprintln!("{l}");
        assert!(
            l.ends_with("the auth helper exited before answering")
                || l.ends_with("the auth helper is not available")
                || l.contains("cannot reach the auth helper"),
            "unexpected refusal: {l}"
        );
    }
    session(srv.addr, &user.name, &user.password, &echo);
    let me = refused(srv.addr, user.name.as_bytes(), b"after-the-kill");
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"after-the-kill"),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    assert_eq!(helpers(&srv), vec![new], "one helper only");
}

#[test]
fn second_mother_killed_logins_go_on_and_its_successor_authenticates() {
    require_root!();
    let user = TestUser::new("m2");
    let echo = echo_server();
    let srv = Prepared::new()
        .start(&open("username"), &["-N", "2"])
        .unwrap();
    let m1 = srv.pid;
    let m2 = mother_pid(srv.pid, 2).unwrap();
    let helper = the_helper(&srv);
    assert_eq!(uids(m2).unwrap()[1], NOBODY);
    let _orphans = Orphans(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    assert_eq!(unsafe_free_kill(m2, SIGKILL), 0);
    // Whichever mother accepts, every login works.
    for _ in 0..10 {
        session(srv.addr, &user.name, &user.password, &echo);
    }
    refused(srv.addr, user.name.as_bytes(), b"not-it");
    let mut new_m2 = 0;
    wait_until("mother 2 to be re-spawned", 15, || {
        match mother_pid(srv.pid, 2) {
            Some(p) if p != m2 && alive(p) && !relays_of(p).is_empty() => {
                new_m2 = p;
                true
            }
            _ => false,
        }
    });
    assert_eq!(the_helper(&srv), helper, "the helper outlived mother 2");
    // With mother 1 stopped, only the new mother 2 accepts: its own channel to the helper
    // works.
    stop(m1);
    let resume = Resume(m1);
    for _ in 0..3 {
        let me = session(srv.addr, &user.name, &user.password, &echo);
        let text = srv.wait_log("mother 2's accept line", 15, |t| {
            t.contains(&format!(
                "rsockd[{new_m2}]: info: pass(1): tcp/accept [: {} ",
                dante_addr(me)
            ))
        });
        assert!(text.contains("username%"));
    }
    let me = refused(srv.addr, user.name.as_bytes(), b"not-it");
    let line = refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"not-it"),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    assert!(line.contains(&format!("rsockd[{new_m2}]: ")), "{line}");
    drop(resume);
    session(srv.addr, &user.name, &user.password, &echo);
}

// ---------------------------------------------------------------------------------------------
// 8. rfc931

/// A fake ident server on `ip`:113. For each query it sends `answer(ports)` (ports: the
/// query line without its line end) and reports the query line and who asked.
fn identd(
    ip: Ipv4Addr,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> mpsc::Receiver<(String, SocketAddr)> {
    let l = TcpListener::bind((ip, 113)).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let peer = s.peer_addr().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut w = s;
            let _ = w.write_all(answer(line.trim_end_matches(['\r', '\n'])).as_bytes());
            if tx.send((line, peer)).is_err() {
                break;
            }
        }
    });
    rx
}

/// A client from its own loopback address, with its own ident server there.
struct IdentClient {
    ip: Ipv4Addr,
    queries: mpsc::Receiver<(String, SocketAddr)>,
}

impl IdentClient {
    fn new(answer: impl Fn(&str) -> String + Send + 'static) -> IdentClient {
        let ip = next_loopback();
        IdentClient {
            ip,
            queries: identd(ip, answer),
        }
    }

    /// The one query the ident server got: it must be about `client` -> `srv` and come from
    /// the address the client connected to.
    fn check_query(&self, srv: &Server, client: SocketAddr) {
        let (line, peer) = self
            .queries
            .recv_timeout(Duration::from_secs(15))
            .expect("an ident query");
        assert_eq!(line, format!("{} , {}\r\n", client.port(), srv.addr.port()));
        assert_eq!(peer.ip(), srv.addr.ip(), "asked from the proxy's address");
    }
}

fn userid(user: &str) -> impl Fn(&str) -> String + Send + 'static {
    let user = user.to_string();
    move |ports| format!("{ports} : USERID : UNIX : {user}\r\n")
}

#[test]
fn rfc931_ident_user_passes() {
    require_root!();
    let user = TestUser::new("id");
    let echo = echo_server();
    let srv = start(&open("rfc931"));

    // A client offering "no authentication": the ident answer names it.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"known by ident");
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    wait_pass_line(&srv, "rfc931", &user.name, me);

    // A client offering only username/password: the RFC 1929 exchange happens, but the user
    // is the one ident names, whatever name and password the client sent.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, b"someone-else", b"anything"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"ident over rfc1929");
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    wait_pass_line(&srv, "rfc931", &user.name, me);
    assert!(!srv.log_text().contains("someone-else"));
}

#[test]
fn rfc931_refusals() {
    require_root!();
    let user = TestUser::new("idr");
    let echo = echo_server();
    let srv = start(&open("rfc931"));

    // ERROR : NO-USER. The method was chosen (05 00); the lookup runs once the request is in,
    // and a failure answers it with 02 (not allowed), as Dante does.
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 15), "closed after the failed lookup");
    refusal_line(&srv, me, 13, "ident server said ERROR: NO-USER");

    // A name that is no system user.
    let ghost = format!("rskidghost{}", std::process::id());
    let c = IdentClient::new(userid(&ghost));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 15));
    refusal_line(
        &srv,
        me,
        13,
        &format!("no user \"{ghost}\" found in system password file"),
    );

    // Over RFC 1929 the failure is 01 01.
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : HIDDEN-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, user.name.as_bytes(), b"x"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"x"),
        "ident server said ERROR: HIDDEN-USER",
    );

    // No ident server at all on the client's address: connection refused.
    let lonely = next_loopback();
    let mut s = client_from(lonely, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    assert!(closed_within(&mut s, 15));
    refusal_line(
        &srv,
        me,
        13,
        &format!("ident lookup to {lonely}.113 failed: Connection refused"),
    );

    // And a known user still gets through.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"still serving");
}

/// Dante 1.4.2 with `socksmethod: rfc931` and an ident server answering `ERROR : NO-USER`
/// (seen with Debian's danted): selects 00, reads the request, answers it `05 02` (not
/// allowed by ruleset), then closes, and logs `block(1): tcp/accept ]: CLIENT SERVER: blocked
/// by higher-level socks-rule #0: no rules matched; using default block rule`. rsockd closes
/// right after `05 00` without reading the request: the client gets no SOCKS reply at all.
#[test]
fn rfc931_failed_lookup_answers_the_request_with_rep_2() {
    require_root!();
    let echo = echo_server();
    let srv = start(&open("rfc931"));
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let SocketAddr::V4(t) = echo.addr else {
        unreachable!()
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    let _ = s.write_all(&req);
    let reply = read_upto(&mut s, 10);
    assert_eq!(reply.get(..2), Some(&[5u8, 2][..]), "reply {reply:?}");
    assert!(closed_within(&mut s, 10));
}

// ---------------------------------------------------------------------------------------------
// 9. rsockd --hash-password

#[test]
fn hash_password_cli() {
    // Output: one line USER:HASH, a fresh salt each time.
    let (code, out, err) = hash_password(&["alice"], b"correct horse");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("alice:$y$") && out.ends_with('\n'), "{out}");
    assert_eq!(out.lines().count(), 1);
    let hash = out.trim_end().strip_prefix("alice:").unwrap();
    assert!(!hash.contains(':') && !hash.contains(' '), "{hash}");
    assert!(!out.contains("correct horse"));
    let (_, again, _) = hash_password(&["alice"], b"correct horse");
    assert_ne!(out, again, "a new salt each time");

    // Without a user: the hash alone.
    let (code, out, _) = hash_password(&["--kind", "sha512"], b"pw");
    assert_eq!(code, 0);
    assert!(out.starts_with("$6$") && !out.contains(':'), "{out}");
    let (code, out, _) = hash_password(&["--kind", "bcrypt", "bee"], b"pw");
    assert_eq!(code, 0);
    assert!(out.starts_with("bee:$2b$12$"), "{out}");

    // Refusals.
    let name_rule = "the user name must be 1-255 bytes without ':' or spaces";
    let too_long = "u".repeat(256);
    for bad in ["a:b", "a b", "", too_long.as_str()] {
        let (code, out, err) = hash_password(&[bad], b"pw");
        assert_eq!(code, 1, "user {bad:?}");
        assert!(out.is_empty());
        assert!(err.contains(name_rule), "{bad:?}: {err}");
    }
    let (code, out, err) = hash_password(&["alice"], b"");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "rsockd: refusing an empty password\n");
    let (code, _, err) = hash_password(&["alice"], &[b'p'; 256]);
    assert_eq!(code, 1);
    assert_eq!(err, "rsockd: RFC 1929 passwords are at most 255 bytes\n");
    let (code, _, err) = hash_password(&["--kind", "md5", "alice"], b"pw");
    assert_eq!(code, 1);
    assert!(err.contains("unknown kind \"md5\""), "{err}");
}

#[test]
fn hash_password_output_verifies_in_a_password_file() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let (code, line, _) = hash_password(&["dora"], b"dora's pass phrase");
    assert_eq!(code, 0);
    write_users(&users, &line);
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let me = session(srv.addr, "dora", "dora's pass phrase", &echo);
    wait_pass_line(&srv, "username", "dora", me);
    refused(srv.addr, b"dora", b"dora's pass phrase ");
    refused(srv.addr, b"Dora", b"dora's pass phrase");
}
