//! Zero-downtime upgrade: `rsockd --upgrade -p PIDFILE` (SIGUSR2) starts the binary at the
//! path the server was started from (replaced on disk meanwhile) and hands it the listening
//! sockets. 50 sessions stream checksummed data and a prober opens a new session every 10 ms
//! across the swap: none refused, none reset, every byte checked; the old family exits after
//! its sessions; the pidfile names the new mother 1; at `-N 1`, `-N 2` and `--supervisor`. A
//! broken new binary, or a configuration the new one refuses, leaves the old one serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::procs::{serve_one, wait_until, Streamers};
use common::*;

/// A copy of the binary at a path of the test's, replaceable like an installed one.
fn install(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("rsockd");
    replace(&p, Path::new(BIN));
    p
}

/// Puts `src` at `bin` as a package manager does: a new file renamed over the old one.
fn replace(bin: &Path, src: &Path) {
    let tmp = bin.with_extension("new");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, bin).unwrap();
    // A fork in another test thread while the copy was open for writing leaves the file
    // "busy" until that child execs; wait it out, so exec (ours or the server's) works.
    for _ in 0..100 {
        match Command::new(bin)
            .arg("-v")
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
            Err(e) if e.raw_os_error() == Some(26) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{}: {e}", bin.display()),
        }
    }
}

/// Ends whatever the pidfile names at the end (the new family after an upgrade), by PID.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(t) = std::fs::read_to_string(&self.0) else {
            return;
        };
        // Only a live rsockd: a pid can be reused once its process is gone.
        if let Ok(pid) = t.trim().parse::<i32>() {
            if !cmdline(pid).starts_with("rsockd:") {
                return;
            }
            let kids = descendants(pid);
            unsafe_free_kill(pid, 9);
            for k in kids {
                unsafe_free_kill(k, 9);
            }
        }
    }
}

fn start(dir: tempfile::TempDir, bin: &Path, extra: &[&str]) -> Server {
    start_with_body(dir, bin, extra, "")
}

fn start_with_body(dir: tempfile::TempDir, bin: &Path, extra: &[&str], body: &str) -> Server {
    let ip = next_loopback();
    let log = dir.path().join("rsockd.log");
    let conf = dir.path().join("rsockd.conf");
    std::fs::write(
        &conf,
        format!(
            "logoutput: {}\ninternal: {ip} port = {}\nexternal: 127.0.0.1\nsocksmethod: none\n\
             rsockd.drain.timeout: 60\n{}{OPEN_RULES}",
            log.display(),
            free_tcp_port("127.0.0.1"),
            body.replace("{IP}", &ip.to_string())
        ),
    )
    .unwrap();
    let pidfile = dir.path().join("rsockd.pid");
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-p").arg(&pidfile).args(extra);
    launch(cmd, dir, ip, conf, log).unwrap()
}

fn pidfile(srv: &Server) -> PathBuf {
    srv.dir.path().join("rsockd.pid")
}

fn order_upgrade(pidfile: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("--upgrade")
        .arg("-p")
        .arg(pidfile)
        .output()
        .unwrap()
}

/// A new session every 10 ms until stopped: (opened, failures).
fn prober(
    proxy: SocketAddr,
    echo: SocketAddr,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let n = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::SeqCst) {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let f = failures.clone();
            // One thread each, so a slow session never delays the next probe.
            let h = thread::spawn(move || serve_one(proxy, echo, i));
            thread::spawn(move || {
                if h.join().is_err() {
                    f.lock().unwrap().push(format!("probe {i} failed"));
                }
            });
            thread::sleep(Duration::from_millis(10));
        }
        // Let the last probes finish.
        thread::sleep(Duration::from_secs(2));
        let failed = failures.lock().unwrap().clone();
        (n.load(Ordering::SeqCst), failed)
    })
}

fn upgrade_under_load(extra: &[&str], mothers: usize) {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let srv = start(dir, &bin, extra);
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    let old = srv.pid;
    let old_tree: Vec<i32> = std::iter::once(old).chain(descendants(old)).collect();
    let streams = Streamers::start(srv.addr, echo.addr, 50);
    streams.wait_established(50);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = prober(srv.addr, echo.addr, stop.clone());
    thread::sleep(Duration::from_millis(300));

    // The package manager puts a new file at the path; the old one is gone from disk.
    replace(&bin, Path::new(BIN));
    let out = order_upgrade(&pf);
    assert!(
        out.status.success(),
        "upgrade: {}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        srv.log_text()
    );
    let new: i32 = std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new, old, "the pidfile names the new process");
    // Same session and process group as the old family (service managers track those).
    let ids = |pid: i32| proc_stat(pid).map(|f| (f[2].clone(), f[3].clone()));
    assert_eq!(
        ids(new),
        ids(old),
        "process group and session of the new mother 1"
    );
    // It runs the file now at the path, not the old one.
    let exe = std::fs::read_link(format!("/proc/{new}/exe")).unwrap();
    assert!(!exe.to_string_lossy().contains("(deleted)"), "{exe:?}");
    assert_eq!(exe, bin);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (opened, failed) = probes.join().unwrap();
    let results = streams.finish();
    let bytes: u64 = results.iter().map(|r| *r.as_ref().unwrap_or(&0)).sum();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(bad.is_empty(), "streams broken across the upgrade: {bad:?}");
    assert!(failed.is_empty(), "new sessions failed: {failed:?}");
    assert!(opened >= 50, "probes: {opened}");
    eprintln!(
        "upgrade {extra:?}: 50 sessions streamed {bytes} bytes byte-exact, {opened} new \
         sessions during the swap, refused or reset: 0"
    );
    // The old family leaves once its sessions are done; the new one serves.
    for p in old_tree {
        assert!(wait_gone(p, 20), "old process {p} left behind");
    }
    let t = srv.log_text();
    assert!(t.contains(&format!("pid {new} took over")), "{t}");
    assert!(
        !t.contains("mother unexpectedly closed"),
        "a hand-over is not a death:\n{t}"
    );
    let new_mothers = common::procs::mothers(new).len();
    assert_eq!(new_mothers, mothers, "{t}");
    serve_one(srv.addr, echo.addr, 999);
}

#[test]
fn upgrade_with_one_mother_drops_nothing() {
    upgrade_under_load(&[], 1);
}

#[test]
fn upgrade_with_two_mothers_drops_nothing() {
    upgrade_under_load(&["-N", "2"], 2);
}

#[test]
fn upgrade_under_the_supervisor_drops_nothing() {
    upgrade_under_load(&["-N", "2", "--supervisor"], 2);
}

#[test]
fn a_broken_binary_or_a_refused_configuration_leaves_the_old_server_serving() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let srv = start(dir, &bin, &[]);
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    let (mut held, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut held, b"before");

    // A binary that cannot start.
    let broken = srv.dir.path().join("broken.sh");
    std::fs::write(&broken, "#!/bin/sh\necho 'not a server' >&2\nexit 3\n").unwrap();
    replace(&bin, &broken);
    let out = order_upgrade(&pf);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upgrade failed") && err.contains("exit"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&pf).unwrap().trim(),
        srv.pid.to_string()
    );
    srv.wait_log("the failure line", 10, |t| {
        t.contains("upgrade failed, this server goes on serving: the new binary exited")
    });
    echo_once(&mut held, b"still relaying");
    serve_one(srv.addr, echo.addr, 1);

    // A good binary, but a configuration it refuses.
    replace(&bin, Path::new(BIN));
    let good = std::fs::read_to_string(&srv.conf).unwrap();
    std::fs::write(&srv.conf, format!("{good}\nthis is no keyword\n")).unwrap();
    let out = order_upgrade(&pf);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    echo_once(&mut held, b"still relaying after the second try");
    serve_one(srv.addr, echo.addr, 2);
    assert_eq!(
        std::fs::read_to_string(&pf).unwrap().trim(),
        srv.pid.to_string()
    );
    // Fixed, it goes through.
    std::fs::write(&srv.conf, good).unwrap();
    let out = order_upgrade(&pf);
    assert!(out.status.success(), "{out:?}");
    echo_once(&mut held, b"the old relay keeps its session");
    wait_until("the new pid in the pidfile", 10, || {
        std::fs::read_to_string(&pf).unwrap().trim() != srv.pid.to_string()
    });
    serve_one(srv.addr, echo.addr, 3);
}

#[test]
fn session_limits_hold_across_the_upgrade() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let srv = start(dir, &bin, &[]);
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    // Two sessions at most, by the scoreboard that every process shares.
    let text = std::fs::read_to_string(&srv.conf).unwrap().replace(
        "socks pass { from: 0/0 to: 0/0 log: connect disconnect error }",
        "socks pass { from: 0/0 to: 0/0 session.max: 2 log: connect disconnect error }",
    );
    std::fs::write(&srv.conf, text).unwrap();
    srv.signal(1);
    srv.wait_log("the reload", 10, |t| t.contains("config reloaded"));
    let (mut a, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    let (mut b, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    assert_ne!(
        socks5_connect(srv.addr, echo.addr).1,
        0,
        "the limit holds before"
    );
    let out = order_upgrade(&pf);
    assert!(out.status.success(), "{out:?}");
    // The old relays still hold two slots in the scoreboard the new family took over.
    let (_, rep) = socks5_connect(srv.addr, echo.addr);
    assert_ne!(rep, 0, "the limit holds across the upgrade");
    echo_once(&mut a, b"old session a");
    echo_once(&mut b, b"old session b");
    drop(a);
    wait_until("a slot freed by the old relay", 10, || {
        socks5_connect(srv.addr, echo.addr).1 == 0
    });
}

#[test]
fn a_new_binary_that_never_gets_ready_is_stopped_after_10_s() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let srv = start(dir, &bin, &[]);
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    let hang = srv.dir.path().join("hang.sh");
    let marker = srv.dir.path().join("hang.pid");
    std::fs::write(
        &hang,
        format!("#!/bin/sh\necho $$ > {}\nexec sleep 60\n", marker.display()),
    )
    .unwrap();
    replace(&bin, &hang);
    let out = order_upgrade(&pf);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was not ready within 10 s"), "{err}");
    let hung: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(hung, 5), "the hung successor was stopped");
    serve_one(srv.addr, echo.addr, 1);
}

#[test]
fn after_an_upgrade_only_the_new_family_answers_the_agent() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let port = free_tcp_port("127.0.0.1");
    let srv = start_with_body(
        dir,
        &bin,
        &["-N", "2"],
        &format!("rsockd.agent: {{IP}} port = {port}\n"),
    );
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    let agent = SocketAddr::from((srv.ip, port));
    let check = || {
        let mut s = std::net::TcpStream::connect(agent).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_all(&mut s)
    };
    assert_eq!(check(), b"up\n");
    // The old family keeps a session, so it drains for a while after the hand-over.
    let (mut held, _) = socks5_connect(srv.addr, echo.addr);
    echo_once(&mut held, b"old family");
    let out = order_upgrade(&pf);
    assert!(out.status.success(), "{out:?}");
    srv.wait_log("the old family draining", 10, |t| t.contains("took over"));
    // Every check lands on a new mother: the old ones closed their agent sockets.
    for _ in 0..30 {
        assert_eq!(check(), b"up\n", "an old mother answered while draining");
    }
    echo_once(&mut held, b"still served by the old family");

    // A drained server stays drained across the next upgrade, every new mother with it.
    let out = Command::new(BIN)
        .arg("--drain")
        .arg("-p")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_until("the drain", 10, || check() == b"drain\n");
    let out = order_upgrade(&pf);
    assert!(out.status.success(), "{out:?}");
    for _ in 0..30 {
        assert_eq!(check(), b"drain\n", "the new family forgot the drain");
    }
}

/// The server's totals go on across an upgrade: the new family maps the old one's counters
/// region, so `/metrics` counters never go back (what the old family still relays counts too).
#[test]
fn metrics_go_on_across_an_upgrade() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let bin = install(dir.path());
    let port = free_tcp_port("127.0.0.1");
    let srv = start_with_body(
        dir,
        &bin,
        &["-N", "2"],
        &format!("rsockd.metrics: {{IP}} port = {port}\n"),
    );
    let pf = pidfile(&srv);
    let _reaper = Reaper(pf.clone());
    let admin = SocketAddr::from((srv.ip, port));
    let sample = |name: &str| -> f64 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://{admin}/metrics"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let ok = "rsockd_sessions_total{command=\"connect\",result=\"ok\"}";
    for i in 0..3 {
        serve_one(srv.addr, echo.addr, i);
    }
    assert_eq!(sample(ok), 3.0);
    let out = order_upgrade(&pf);
    assert!(out.status.success(), "{out:?}");
    srv.wait_log("the hand-over", 10, |t| t.contains("took over"));
    assert_eq!(
        sample(ok),
        3.0,
        "the new family counts on from the old one's totals"
    );
    serve_one(srv.addr, echo.addr, 3);
    assert_eq!(sample(ok), 4.0);
    assert_eq!(
        sample("rsockd_process_restarts_total{role=\"mother\"}"),
        0.0
    );
}
