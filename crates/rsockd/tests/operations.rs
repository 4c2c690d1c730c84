//! Operations: `-D` (daemonise), `-n` (no keep-alive), `logoutput: stdout|stderr|syslog`,
//! `user.unprivileged`/`user.privileged`, `log: data|iooperation|tcpinfo`,
//! `timeout.tcp_fin_wait` and `external.rotation: route|same-same`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A session through `proxy` to an echo server, ended by the client, so that the relay writes
/// its `]` lines.
fn one_session(proxy: SocketAddr, echo: &Echo, msg: &[u8]) {
    let (mut s, rep) = socks5_connect(proxy, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, msg);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"");
}

/// A fresh temporary directory, its server address and a config file written there with
/// `{IP}` and `{DIR}` substituted (and no `logoutput:` added).
fn prepare(conf: &str) -> (tempfile::TempDir, Ipv4Addr, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ip = next_loopback();
    let path = dir.path().join("rsockd.conf");
    let text = conf
        .replace("{IP}", &ip.to_string())
        .replace("{DIR}", &dir.path().display().to_string());
    std::fs::write(&path, text).unwrap();
    (dir, ip, path)
}

fn lines_with<'a>(log: &'a str, pat: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(pat)).collect()
}

// ---------------------------------------------------------------------------------------------
// -D

/// Kills the daemon and its relays (by PID, SIGKILL) if a test ends before they are gone.
struct Daemon {
    pid: i32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Not our child: once it has gone, its pid may be another process's.
        if !cmdline(self.pid).starts_with("rsockd") {
            return;
        }
        let kids = children_of(self.pid);
        if alive(self.pid) {
            unsafe_free_kill(self.pid, 9);
        }
        for k in kids {
            unsafe_free_kill(k, 9);
        }
    }
}

#[test]
fn detach_daemonises_serves_and_stops_on_sigterm() {
    let echo = echo_server();
    let (dir, ip, conf) = prepare(&format!(
        "logoutput: {{DIR}}/rsockd.log\n{}",
        base_config(OPEN_RULES)
    ));
    let log = dir.path().join("rsockd.log");
    let pidfile = dir.path().join("rsockd.pid");
    let stderr = std::fs::File::create(dir.path().join("launcher.stderr")).unwrap();
    let notify_name = format!("rsockd-daemon-{}-{ip}", std::process::id());
    let notify = {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(notify_name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&a).unwrap()
    };
    let mut launcher = Command::new(BIN)
        .arg("-D")
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(&pidfile)
        .env("NOTIFY_SOCKET", format!("@{notify_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let launcher_pid = launcher.id() as i32;

    // The launching process exits 0 at once.
    let start = Instant::now();
    let status = loop {
        if let Some(st) = launcher.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = launcher.kill();
            let _ = launcher.wait();
            panic!("rsockd -D did not return within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let launcher_err = std::fs::read_to_string(dir.path().join("launcher.stderr")).unwrap();
    assert_eq!(status.code(), Some(0), "launcher stderr: {launcher_err}");

    // The daemon says READY and writes its pid.
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut ready = false;
    let mut buf = [0u8; 256];
    let start = Instant::now();
    while !ready && start.elapsed() < Duration::from_secs(30) {
        if let Ok(n) = notify.recv(&mut buf) {
            ready = String::from_utf8_lossy(&buf[..n]).contains("READY=1");
        }
    }
    let pidtext = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let pid: i32 = pidtext.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no pid in the pidfile ({pidtext:?}); log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let _guard = Daemon { pid };
    assert!(
        ready,
        "the daemon never sent READY=1; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(alive(pid), "daemon {pid} from the pidfile is not running");
    assert_ne!(
        pid, launcher_pid,
        "the pidfile names the daemon, not the launcher"
    );
    assert_eq!(cmdline(pid), "rsockd: mother 1/1");

    // Detached: not our child nor the launcher's, in a session of its own, no terminal, and
    // standard descriptors on /dev/null.
    let stat = proc_stat(pid).unwrap();
    let ppid: i32 = stat[1].parse().unwrap();
    assert_ne!(
        ppid,
        std::process::id() as i32,
        "the daemon is still our child"
    );
    assert_ne!(ppid, launcher_pid);
    let our_sid = proc_stat(std::process::id() as i32).unwrap()[3].clone();
    assert_ne!(stat[3], our_sid, "the daemon is still in our session");
    assert_eq!(stat[4], "0", "the daemon has a controlling terminal");
    for fd in 0..=2 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd} of the daemon");
    }

    // It serves.
    let logtext = std::fs::read_to_string(&log).unwrap();
    let port = listening_port(&logtext).unwrap_or_else(|| panic!("no port in log:\n{logtext}"));
    let proxy = SocketAddr::from((ip, port));
    let (mut s, rep) = socks5_connect(proxy, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"served by the daemon");
    drop(s);
    let relays = children_of(pid);
    assert!(!relays.is_empty(), "the daemon has no relay processes");

    // SIGTERM by the pid from the pidfile: it goes, its relays go, the pidfile is truncated.
    assert_eq!(unsafe_free_kill(pid, 15), 0);
    assert!(
        wait_gone(pid, 15),
        "daemon {pid} still running 15 s after SIGTERM"
    );
    for r in relays {
        assert!(
            wait_gone(r, 15),
            "relay {r} still running 15 s after SIGTERM"
        );
    }
    assert_eq!(
        std::fs::metadata(&pidfile).unwrap().len(),
        0,
        "pidfile truncated"
    );
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(
        logtext.contains("sigterm(): exiting on signal 15"),
        "{logtext}"
    );
}

// ---------------------------------------------------------------------------------------------
// logoutput: stdout / stderr / syslog

/// Starts rsockd with `conf` (which names its own `logoutput:`), stdout and stderr piped and
/// captured to `stdout.txt` and `stderr.txt`; `log_in` says which of the two holds the log.
fn start_captured(conf: &str, log_in: &str) -> Server {
    let (dir, ip, path) = prepare(conf);
    let out = dir.path().join("stdout.txt");
    let err = dir.path().join("stderr.txt");
    let log = dir.path().join(log_in);
    let mut cmd = Command::new(BIN);
    cmd.arg("-f")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    launch_with(cmd, dir, ip, path, log, |child| {
        capture(child.stdout.take().unwrap(), out);
        capture(child.stderr.take().unwrap(), err);
    })
    .unwrap()
}

fn assert_session_line_on(conf_dest: &str, on: &str, off: &str) {
    let echo = echo_server();
    let srv = start_captured(
        &format!("logoutput: {conf_dest}\n{}", base_config(OPEN_RULES)),
        on,
    );
    one_session(srv.addr, &echo, b"hello");
    // The relay writes the socks-rule line, then the client-rule line.
    let text = srv.wait_log("the session's ] lines", 10, |t| {
        t.contains("pass(1): tcp/connect ]: 5 -> ") && t.contains("pass(1): tcp/accept ]: 5 -> ")
    });
    let line = lines_with(&text, "tcp/connect ]:")[0];
    assert!(line.contains(": info: pass(1): tcp/connect ]: "), "{line}");
    assert!(line.contains("Session duration: "), "{line}");
    let other = std::fs::read_to_string(srv.dir.path().join(off)).unwrap_or_default();
    assert!(
        !other.contains("tcp/connect"),
        "session lines also went to {off}: {other}"
    );
}

#[test]
fn logoutput_stdout_carries_the_session_lines() {
    assert_session_line_on("stdout", "stdout.txt", "stderr.txt");
}

#[test]
fn logoutput_stderr_carries_the_session_lines() {
    assert_session_line_on("stderr", "stderr.txt", "stdout.txt");
}

/// `logoutput: syslog` without touching the host's files: rsockd runs in a private mount
/// namespace whose `/dev` is a directory of symlinks to the real `/dev` entries plus a `log`
/// entry that points at a datagram socket this test reads.
#[test]
fn logoutput_syslog_goes_to_dev_log() {
    if !tool("unshare") || !tool("mount") {
        println!("skipped: needs unshare(1) and mount(8) for a private /dev/log");
        return;
    }
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("skipped: cannot create a mount namespace (unshare -m) here");
        return;
    }
    let echo = echo_server();
    let (dir, ip, path) = prepare(&format!("logoutput: syslog\n{}", base_config(OPEN_RULES)));
    let d = dir.path().to_path_buf();
    let sink = UnixDatagram::bind(d.join("syslog.sock")).unwrap();
    let received = d.join("syslog.txt");
    {
        let received = received.clone();
        thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(received)
                .unwrap();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sink.recv(&mut buf) {
                let mut line = buf[..n].to_vec();
                line.push(b'\n');
                if f.write_all(&line).is_err() {
                    break;
                }
            }
        });
    }
    let script = r#"set -e
D="$1"; shift
mount --make-rprivate /
mkdir "$D/olddev" "$D/newdev"
mount --rbind /dev "$D/olddev"
for f in "$D"/olddev/* "$D"/olddev/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    n=$(basename "$f")
    [ "$n" = log ] || ln -s "$f" "$D/newdev/$n"
done
ln -s "$D/syslog.sock" "$D/newdev/log"
mount --bind "$D/newdev" /dev
exec "$@"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .arg(&d)
        .arg(BIN)
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr.txt")).unwrap());
    let srv = match launch(cmd, dir, ip, path, received) {
        Ok(s) => s,
        Err(e) => panic!(
            "{e}\nstderr: {}",
            std::fs::read_to_string(d.join("stderr.txt")).unwrap_or_default()
        ),
    };
    one_session(srv.addr, &echo, b"hello");
    let text = srv.wait_log("the session's ] line in syslog", 10, |t| {
        t.contains("pass(1): tcp/connect ]: 5 -> ")
    });
    let line = lines_with(&text, "tcp/connect ]:")[0];
    // <30> is facility daemon (3 << 3) + info (6); ident rsockd with the logging pid.
    assert!(line.starts_with("<30>"), "{line}");
    assert!(line.contains(" rsockd["), "{line}");
    assert!(
        line.contains("]: info: pass(1): tcp/connect ]: 5 -> "),
        "{line}"
    );
    let logger: i32 = line
        .split(" rsockd[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(
        srv.children().contains(&logger),
        "the ] line comes from a relay ({logger}), children {:?}",
        srv.children()
    );
}

// ---------------------------------------------------------------------------------------------
// user.privileged / user.unprivileged

const NOBODY: u32 = 65534;

fn check_runs_as_nobody(extra: &str, saved_of_mother: Option<u32>) {
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!("{extra}{OPEN_RULES}")));
    let relays = srv.children();
    assert!(!relays.is_empty());
    let m = uids(srv.pid).unwrap();
    assert_eq!(m[0], NOBODY, "mother real uid: {m:?}");
    assert_eq!(m[1], NOBODY, "mother effective uid: {m:?}");
    assert_eq!(m[3], NOBODY, "mother filesystem uid: {m:?}");
    if let Some(saved) = saved_of_mother {
        assert_eq!(m[2], saved, "mother saved uid: {m:?}");
    }
    for r in &relays {
        let u = uids(*r).unwrap();
        assert_eq!(u[0], NOBODY, "relay {r} real uid: {u:?}");
        assert_eq!(u[1], NOBODY, "relay {r} effective uid: {u:?}");
    }
    for i in 0..3 {
        let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 0);
        echo_once(&mut s, format!("session {i} as nobody").as_bytes());
    }
}

fn running_as_root() -> bool {
    let root = uids(std::process::id() as i32).is_some_and(|u| u[1] == 0);
    if !root {
        println!("skipped: user.unprivileged needs the tests to run as root");
    }
    root
}

#[test]
fn user_unprivileged_runs_mother_and_relays_as_nobody() {
    if running_as_root() {
        check_runs_as_nobody("user.unprivileged: nobody\n", None);
    }
}

#[test]
fn user_privileged_root_and_unprivileged_nobody() {
    if running_as_root() {
        // The mother keeps root as its saved uid, as Dante keeps its privileged uid.
        check_runs_as_nobody(
            "user.privileged: root\nuser.unprivileged: nobody\n",
            Some(0),
        );
    }
}

/// A log file laid out as in /var/log: created by root (the server, before it drops its
/// privileges) in a directory everyone may traverse. The session lines are written by relay
/// processes running as nobody; they must still reach the file, as Dante's i/o children (which
/// inherit the descriptor) do.
#[test]
fn user_unprivileged_relays_still_write_the_session_log() {
    if !running_as_root() {
        return;
    }
    let echo = echo_server();
    let (dir, ip, path) = prepare(&format!(
        "logoutput: {{DIR}}/rsockd.log\nuser.unprivileged: nobody\n{}",
        base_config(OPEN_RULES)
    ));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = dir.path().join("rsockd.log");
    let err = dir.path().join("stderr.txt");
    let mut cmd = Command::new(BIN);
    cmd.arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let srv = launch(cmd, dir, ip, path, log).unwrap();
    one_session(srv.addr, &echo, b"hello");
    let start = Instant::now();
    let mut text = srv.log_text();
    while !text.contains("pass(1): tcp/connect ]: 5 -> ")
        && start.elapsed() < Duration::from_secs(10)
    {
        thread::sleep(Duration::from_millis(20));
        text = srv.log_text();
    }
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        text.contains("pass(1): tcp/connect ]: 5 -> "),
        "no session line in the log file\nlog:\n{text}\nstderr:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// -n: TCP keep-alive

/// The kernel timer column of the TCP socket `local -> remote` (see `proc_net_tcp`).
fn timer_of(pred: impl Fn(SocketAddr, SocketAddr) -> bool) -> Vec<u8> {
    proc_net_tcp()
        .into_iter()
        .filter(|(l, r, state, _)| *state == 1 && pred(*l, *r))
        .map(|(_, _, _, t)| t)
        .collect()
}

/// Timers of the proxy's two sockets of a session: the one facing `client` and the one
/// facing `target`, once both are idle (no retransmit timer pending).
fn proxy_socket_timers(proxy: SocketAddr, client: SocketAddr, target: SocketAddr) -> (u8, u8) {
    let start = Instant::now();
    loop {
        let c = timer_of(|l, r| l == proxy && r == client);
        let t = timer_of(|l, r| r == target && l != proxy && l.ip() == Ipv4Addr::LOCALHOST);
        if c.len() == 1 && t.len() == 1 && c[0] != 1 && t[0] != 1 {
            return (c[0], t[0]);
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("proxy sockets not found idle in /proc/net/tcp: {c:?} {t:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn keepalive_is_on_for_both_relayed_sockets_by_default() {
    let echo = echo_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"keep me alive");
    let (c, t) = proxy_socket_timers(srv.addr, s.local_addr().unwrap(), echo.addr);
    assert_eq!(c, 2, "client-side socket has no keep-alive timer");
    assert_eq!(t, 2, "target-side socket has no keep-alive timer");
}

#[test]
fn no_keepalive_with_dash_n() {
    let echo = echo_server();
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-n"]);
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut s, b"no keep-alive");
    let (c, t) = proxy_socket_timers(srv.addr, s.local_addr().unwrap(), echo.addr);
    assert_eq!(c, 0, "client-side socket has a timer with -n");
    assert_eq!(t, 0, "target-side socket has a timer with -n");
}

// ---------------------------------------------------------------------------------------------
// log: data / iooperation / tcpinfo

const PAYLOAD: &[u8] = b"hi \\ there\x01\n";
const PAYLOAD_ESCAPED: &str = "hi \\\\ there\\001\\012";

/// One session with `log:` flags on the socks rule; returns (log, client, target) once the
/// `]` line is there.
fn logged_session(flags: &str) -> (String, SocketAddr, SocketAddr, SocketAddr) {
    let echo = echo_server();
    let rules = format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: {flags} }}\n"
    );
    let srv = Server::start(&base_config(&rules));
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    let client = s.local_addr().unwrap();
    echo_once(&mut s, PAYLOAD);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"");
    let log = srv.wait_log("the ] line", 10, |t| t.contains("tcp/connect ]: "));
    (log, client, srv.addr, echo.addr)
}

#[test]
fn log_data_dumps_the_payload_escaped() {
    let (log, c, i, t) = logged_session("connect disconnect data");
    let (c, i, t) = (dante_addr(c), dante_addr(i), dante_addr(t));
    let n = PAYLOAD.len();
    let ops = lines_with(&log, "pass(1): tcp/connect -: ");
    let up = format!(" {t} ({n}): {PAYLOAD_ESCAPED}");
    assert!(
        ops.iter()
            .any(|l| l.contains(&format!("-: {c} {i} -> ")) && l.ends_with(&up)),
        "no client->target data line ending {up:?}:\n{log}"
    );
    let down = format!(" -> {i} {c} ({n}): {PAYLOAD_ESCAPED}");
    assert!(
        ops.iter()
            .any(|l| l.contains(&format!("-: {t} ")) && l.ends_with(&down)),
        "no target->client data line ending {down:?}:\n{log}"
    );
    assert!(
        ops.iter()
            .any(|l| l.contains(&format!("-: {c} {i} -> ")) && l.ends_with(&format!(" {t} (0)"))),
        "no EOF line (0) for the client's half-close:\n{log}"
    );
}

#[test]
fn log_iooperation_gives_only_the_count() {
    let (log, c, i, t) = logged_session("connect disconnect iooperation");
    let (c, i, t) = (dante_addr(c), dante_addr(i), dante_addr(t));
    let n = PAYLOAD.len();
    let ops = lines_with(&log, "pass(1): tcp/connect -: ");
    assert!(
        ops.iter()
            .any(|l| l.contains(&format!("-: {c} {i} -> ")) && l.ends_with(&format!(" {t} ({n})"))),
        "no client->target i/o line ({n}):\n{log}"
    );
    assert!(
        ops.iter()
            .any(|l| l.contains(&format!("-: {t} ")) && l.ends_with(&format!(" -> {i} {c} ({n})"))),
        "no target->client i/o line ({n}):\n{log}"
    );
    assert!(
        !log.contains("there"),
        "iooperation must not dump the payload:\n{log}"
    );
}

#[test]
fn log_tcpinfo_appends_tcp_info_to_the_disconnect_line() {
    let (log, c, i, t) = logged_session("connect disconnect tcpinfo");
    let line = lines_with(&log, "pass(1): tcp/connect ]: ")[0];
    let n = PAYLOAD.len();
    let head = format!("{n} -> {} {} -> {n}, {n} -> ", dante_addr(c), dante_addr(i));
    assert!(line.contains(&head), "{line}");
    assert!(
        line.contains(&format!(" {} -> {n}: ", dante_addr(t))),
        "{line}"
    );
    let (before, info) = line
        .split_once(" TCP_INFO: ")
        .unwrap_or_else(|| panic!("no TCP_INFO block: {line}"));
    assert!(before.contains(".  Session duration: "), "{line}");
    let names = [
        "state",
        "ca_state",
        "retransmits",
        "rto",
        "mss",
        "rtt",
        "rttvar",
        "cwnd",
        "ssthresh",
        "pmtu",
        "total_retrans",
    ];
    let fields: Vec<&str> = info.split(", ").collect();
    assert_eq!(fields.len(), names.len(), "{info}");
    let mut values = std::collections::HashMap::new();
    for (f, name) in fields.iter().zip(names) {
        let rest = f
            .strip_prefix(&format!("{name}: "))
            .unwrap_or_else(|| panic!("field {name} expected, got {f:?} in {info}"));
        let (a, b) = rest
            .split_once(" <-> ")
            .unwrap_or_else(|| panic!("{f:?} is not 'client <-> target'"));
        let a: u32 = a.parse().unwrap_or_else(|_| panic!("{f:?}"));
        let b: u32 = b.parse().unwrap_or_else(|_| panic!("{f:?}"));
        values.insert(name, (a, b));
    }
    // Real sockets were read: a TCP state (1..=11) and a path MTU on both sides.
    let (sc, st) = values["state"];
    assert!((1..=11).contains(&sc) && (1..=11).contains(&st), "{info}");
    let (pc, pt) = values["pmtu"];
    assert!(pc > 0 && pt > 0, "{info}");
}

// ---------------------------------------------------------------------------------------------
// timeout.tcp_fin_wait

#[test]
fn tcp_fin_wait_closes_a_half_closed_session() {
    let (target, accepted) = holding_server();
    let srv = Server::start(&base_config(&format!(
        "timeout.tcp_fin_wait: 2\n{OPEN_RULES}"
    )));
    let (mut s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 0);
    let mut t = accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    t.read_exact(&mut b).unwrap();
    // The client half-closes; the target sees the FIN and stays open and silent.
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(t.read(&mut b).unwrap(), 0, "half-close reaches the target");
    let half_closed = Instant::now();
    assert!(
        closed_within(&mut s, 15),
        "session still open 15 s after the half-close with timeout.tcp_fin_wait: 2"
    );
    let took = half_closed.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "closed after {took:?}, before the 2 s fin-wait"
    );
    let log = srv.wait_log("the ] line", 10, |t| t.contains("pass(1): tcp/connect ]: "));
    let line = lines_with(&log, "pass(1): tcp/connect ]: ")[0];
    assert!(line.contains("Session duration: "), "{line}");
    drop(t);
}

#[test]
fn without_tcp_fin_wait_a_half_closed_session_stays_open() {
    let (target, accepted) = holding_server();
    let srv = Server::start(&base_config(OPEN_RULES));
    let (mut s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 0);
    let mut t = accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(t.read(&mut b).unwrap(), 0, "half-close reaches the target");
    // Negative check: a bounded wait is the only way to see that nothing happens.
    assert!(
        !closed_within(&mut s, 3),
        "half-closed session ended without timeout.tcp_fin_wait"
    );
    t.write_all(b"late").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"late", "the open direction still relays");
    t.shutdown(Shutdown::Write).unwrap();
    assert!(closed_within(&mut s, 10));
    srv.wait_log("the ] line", 10, |t| t.contains("pass(1): tcp/connect ]: "));
}

// ---------------------------------------------------------------------------------------------
// external.rotation

/// Connects through `proxy` to a peer reporter and returns the source address it saw.
fn source_seen(proxy: SocketAddr, reporter: SocketAddr) -> String {
    let (mut s, rep) = socks5_connect(proxy, reporter);
    assert_eq!(rep, 0);
    String::from_utf8(read_all(&mut s)).unwrap()
}

fn rotation_config(externals: &[&str], rotation: Option<&str>) -> String {
    let mut c = String::from("internal: {IP} port = 0\n");
    for e in externals {
        c.push_str(&format!("external: {e}\n"));
    }
    if let Some(r) = rotation {
        c.push_str(&format!("external.rotation: {r}\n"));
    }
    c.push_str("socksmethod: none\n");
    c.push_str(OPEN_RULES);
    c
}

#[test]
fn rotation_none_uses_the_first_external() {
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&rotation_config(&["127.0.0.2", "127.0.0.1"], None));
    assert_eq!(source_seen(srv.addr, reporter), "127.0.0.2");
}

#[test]
fn rotation_route_uses_the_kernel_route_source_when_listed() {
    // The route to 127.0.0.1 has source 127.0.0.1, listed second.
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&rotation_config(&["127.0.0.2", "127.0.0.1"], Some("route")));
    assert_eq!(source_seen(srv.addr, reporter), "127.0.0.1");
}

#[test]
fn rotation_route_with_an_interface_name() {
    // `lo` expands to 127.0.0.1 (and ::1); the route picks it over the first external.
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&rotation_config(&["127.0.0.2", "lo"], Some("route")));
    assert_eq!(source_seen(srv.addr, reporter), "127.0.0.1");
}

#[test]
fn rotation_route_never_uses_an_unlisted_address() {
    // Since Dante 1.4.0 only addresses listed in `external` are used: the route's source
    // 127.0.0.1 is not listed here.
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&rotation_config(&["127.0.0.2", "127.0.0.3"], Some("route")));
    let seen = source_seen(srv.addr, reporter);
    assert!(seen == "127.0.0.2" || seen == "127.0.0.3", "source {seen}");
}

#[test]
fn rotation_same_same_uses_the_internal_address_the_client_connected_to() {
    let reporter = peer_reporter(Ipv4Addr::LOCALHOST);
    let second = next_loopback();
    let port = std::net::TcpListener::bind((second, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = rotation_config(&["127.0.0.1"], Some("same-same")).replace(
        "internal: {IP} port = 0\n",
        &format!("internal: {{IP}} port = 0\ninternal: {second} port = {port}\n"),
    );
    let srv = Server::start(&conf);
    assert_eq!(source_seen(srv.addr, reporter), srv.ip.to_string());
    let other = SocketAddr::from((second, port));
    assert_eq!(source_seen(other, reporter), second.to_string());
}

/// Every thread of `pid`: the value of `key` in its /proc status (e.g. `Cpus_allowed_list`).
fn thread_status(pid: i32, key: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with(&format!("{key}:"))) {
            v.push(l.split_once(':').unwrap().1.trim().to_string());
        }
    }
    v
}

/// `cpu.schedule.negotiate` (Dante's name for what our mothers do) and `cpu.mask.io` (our
/// relays), read back from /proc.
#[test]
fn cpu_schedule_and_mask_are_applied_to_their_processes() {
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!(
        "cpu.schedule.negotiate: batch/0\ncpu.mask.io: 0\n{OPEN_RULES}"
    )));
    assert_serving(&srv, &echo);
    let sched = std::fs::read_to_string(format!("/proc/{}/sched", srv.pid)).unwrap();
    let policy = sched
        .lines()
        .find(|l| l.starts_with("policy"))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string());
    assert_eq!(policy.as_deref(), Some("3"), "SCHED_BATCH is 3:\n{sched}");
    let relays = common::procs::relays_of(srv.pid);
    assert!(!relays.is_empty());
    for (pid, _) in relays {
        let masks = thread_status(pid, "Cpus_allowed_list");
        assert!(
            !masks.is_empty() && masks.iter().all(|m| m == "0"),
            "relay {pid}: {masks:?}"
        );
    }
    // The mother keeps every CPU.
    let mine = thread_status(srv.pid, "Cpus_allowed_list");
    assert!(
        mine.iter().all(|m| m != "0") || rsockd_cpus() == 1,
        "{mine:?}"
    );
}

fn rsockd_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
