//! The proxies under test as processes: start, stop, and their CPU time summed over the whole
//! process tree (from /proc), so that multi-process servers are charged for every process.

use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsockd_sys::process::Signal;

/// Clock ticks per second for /proc times.
fn hz() -> f64 {
    rsockd_sys::process::clock_ticks_per_second().map_or(100.0, |t| t as f64)
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = s.rfind(')')?;
    Some(s[close + 2..].split(' ').map(str::to_string).collect())
}

/// Every process in the tree under `root` (including `root`).
pub fn tree(root: i32) -> Vec<i32> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some(f) = stat_fields(pid) {
                    if let Some(pp) = f.get(1).and_then(|p| p.parse().ok()) {
                        parent.insert(pid, pp);
                    }
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// CPU seconds used by the tree under `root`: live processes' own time plus what their reaped
/// children left in cutime/cstime.
pub fn cpu_secs(root: i32) -> f64 {
    let ticks: u64 = tree(root)
        .iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            // Fields after the command: state=0, ppid=1, ... utime=11, stime=12, cutime=13, cstime=14.
            (11..=14)
                .filter_map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum();
    ticks as f64 / hz()
}

/// Resident and proportional set size in KiB, summed over the tree under `root`, from
/// /proc/PID/smaps_rollup. RSS counts a page shared by several processes once per process (a
/// forking server looks bigger than it is); PSS splits it between them. Neither includes the
/// kernel's socket memory. None when no process of the tree could be read.
pub fn memory_kib(root: i32) -> Option<Memory> {
    let mut m = Memory::default();
    for pid in tree(root) {
        // A process may exit between the listing and the read: skip it.
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        m.procs += 1;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(kib)) = (
                words.next(),
                words.next().and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            match key {
                "Rss:" => m.rss_kib += kib,
                "Pss:" => m.pss_kib += kib,
                _ => {}
            }
        }
    }
    (m.procs > 0).then_some(m)
}

/// A process tree's memory (`memory_kib`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Processes in the tree.
    pub procs: u64,
}

/// A free TCP port on 127.0.0.1 (for servers that cannot be told to use port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub struct Proxy {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// `rsockd-metrics`' admin port, scraped once a second while it runs.
    pub admin: Option<SocketAddr>,
    child: Child,
    _dir: PathBuf,
    scraper: Option<Scraper>,
    /// The upstream a chained proxy sends its sessions through (dropped after it).
    upstream: Option<Box<Proxy>>,
}

/// Scrapes `/metrics` once a second, as Prometheus would, until dropped.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `GET /metrics` over HTTP/1.0: the body's size, or why not.
pub fn scrape(admin: SocketAddr) -> Result<usize, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).map_err(|e| format!("scrape: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("scrape: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("scrape: {e}"))?;
    if !out.starts_with(b"HTTP/1.0 200") && !out.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "scrape: {}",
            String::from_utf8_lossy(&out[..out.len().min(80)])
        ));
    }
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| out.len() - i - 4);
    Ok(body)
}

impl Proxy {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn cpu(&self) -> f64 {
        cpu_secs(self.pid())
    }
    pub fn memory_kib(&self) -> Option<Memory> {
        memory_kib(self.pid())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The scraper stops before the server does, or it would report the server gone.
        drop(self.scraper.take());
        let _ = rsockd_sys::process::kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

const DANTE_RULES: &str = "client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 0/0 }\n";

fn config(dir: &Path, port: u16, extra: &str) -> std::io::Result<PathBuf> {
    config_with(dir, port, "none", extra)
}

fn config_with(dir: &Path, port: u16, method: &str, extra: &str) -> std::io::Result<PathBuf> {
    config_rules(dir, port, method, extra, DANTE_RULES)
}

fn config_rules(
    dir: &Path,
    port: u16,
    method: &str,
    extra: &str,
    rules: &str,
) -> std::io::Result<PathBuf> {
    let user = if rsockd_sys::privs::is_root() {
        "user.privileged: root\nuser.unprivileged: nobody\n"
    } else {
        ""
    };
    let text = format!(
        "logoutput: {}/log\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
         socksmethod: {method}\n{user}{extra}{rules}",
        dir.display()
    );
    let p = dir.join("sockd.conf");
    fs::write(&p, text)?;
    Ok(p)
}

fn scratch(name: &str) -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("rsockd-bench-{}-{name}", std::process::id()));
    fs::create_dir_all(&d)?;
    Ok(d)
}

fn spawn(
    name: &'static str,
    mut cmd: Command,
    addr: SocketAddr,
    dir: PathBuf,
) -> Result<Proxy, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{name}: cannot start: {e}"))?;
    let p = Proxy {
        name,
        addr,
        admin: None,
        child,
        _dir: dir,
        scraper: None,
        upstream: None,
    };
    if !wait_listening(addr) {
        return Err(format!("{name}: not listening on {addr}"));
    }
    Ok(p)
}

/// rsockd with `-N mothers`.
/// rsockd -N 1 with another relay engine (`RSOCKD_RELAY_PIPE`: a pipe size, or `copy` for
/// read/write), to compare engines in the bulk scenarios.
pub fn rsockd_engine(bin: &Path, name: &'static str, engine: &str) -> Result<Proxy, String> {
    let dir = scratch(name).map_err(|e| e.to_string())?;
    let port = free_port();
    let conf = config(&dir, port, "").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-N")
        .arg("1")
        .env("RSOCKD_RELAY_PIPE", engine);
    spawn(name, cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

pub fn rsockd(bin: &Path, mothers: u32) -> Result<Proxy, String> {
    let dir = scratch(&format!("rsockd{mothers}")).map_err(|e| e.to_string())?;
    let port = free_port();
    let conf = config(&dir, port, "").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg(mothers.to_string());
    let name = if mothers == 1 { "rsockd" } else { "rsockd-N2" };
    spawn(name, cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// rsockd started with `RSOCKD_COUNTERS=off`: no server totals are kept at all, the base
/// line for what counting costs (`rsockd` counts, `rsockd-metrics` also serves scrapes).
pub fn rsockd_uncounted(bin: &Path) -> Result<Proxy, String> {
    let dir = scratch("rsockd-nocount").map_err(|e| e.to_string())?;
    let port = free_port();
    let conf = config(&dir, port, "").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-N")
        .arg("1")
        .env("RSOCKD_COUNTERS", "off");
    spawn(
        "rsockd-nocount",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}

/// rsockd with `rsockd.metrics:`, scraped once a second for as long as it runs.
pub fn rsockd_scraped(bin: &Path) -> Result<Proxy, String> {
    let dir = scratch("rsockd-metrics").map_err(|e| e.to_string())?;
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let conf = config(
        &dir,
        port,
        &format!("rsockd.metrics: {} port = {}\n", admin.ip(), admin.port()),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg("1");
    let mut p = spawn(
        "rsockd-metrics",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )?;
    if !wait_listening(admin) {
        return Err(format!("rsockd-metrics: no admin port on {admin}"));
    }
    p.admin = Some(admin);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = scrape(admin) {
                eprintln!("rsockd-metrics: {e}");
            }
            for _ in 0..10 {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    p.scraper = Some(Scraper {
        stop,
        thread: Some(thread),
    });
    Ok(p)
}

/// rsockd whose socks rule carries `session.max` far above the load: every session takes and
/// gives back a scoreboard slot, so `rate` shows what a limited rule costs.
pub fn rsockd_limited(bin: &Path) -> Result<Proxy, String> {
    let dir = scratch("rsockd-max").map_err(|e| e.to_string())?;
    let port = free_port();
    let rules = "client pass { from: 0/0 to: 0/0 }\n\
                 socks pass { from: 0/0 to: 0/0 session.max: 100000 session.throttle: 1000000/1 }\n";
    let conf = config_rules(&dir, port, "none", "", rules).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg("1");
    spawn(
        "rsockd-max",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}

/// rsockd that takes the load generator (127.0.0.1) for a load balancer sending PROXY v2
/// headers, for `rate`.
pub fn rsockd_behind_balancer(bin: &Path) -> Result<Proxy, String> {
    let dir = scratch("rsockd-pp2").map_err(|e| e.to_string())?;
    let port = free_port();
    // The same rules as plain rsockd: only the header differs.
    let conf = config(&dir, port, "rsockd.proxyprotocol.from: 127.0.0.1/32\n")
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg("1");
    spawn(
        "rsockd-pp2",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}

/// rsockd whose socks rule has `bandwidth: limit` (bytes per second), for the bw scenarios.
pub fn rsockd_paced(bin: &Path, limit: u64) -> Result<Proxy, String> {
    let dir = scratch("rsockd-bw").map_err(|e| e.to_string())?;
    let port = free_port();
    let rules = format!(
        "client pass {{ from: 0/0 to: 0/0 }}\nsocks pass {{ from: 0/0 to: 0/0 bandwidth: {limit} }}\n"
    );
    let conf = config_rules(&dir, port, "none", "", &rules).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg("1");
    spawn(
        "rsockd-bw",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}

pub fn danted() -> Result<Proxy, String> {
    let dir = scratch("danted").map_err(|e| e.to_string())?;
    let port = free_port();
    let conf = config(&dir, port, "").map_err(|e| e.to_string())?;
    let mut cmd = Command::new("danted");
    cmd.arg("-f").arg(&conf).arg("-p").arg(dir.join("pid"));
    spawn("danted", cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// rsockd or danted chaining every session through an upstream of its own (`route { ...
/// via: ... proxyprotocol: socks_v5 }`), for `rate` and `bulk8`. The upstream is the same
/// for both: this rsockd (`-N 1`), fast enough that the chaining server is what is measured;
/// `RSOCKD_BENCH_CHAIN_UPSTREAM` picks another: `microsocks` (the first runs' setting),
/// `danted`, or `rsockd-copy` (rsockd relaying with read/write: an upstream whose bytes do
/// not reach us as spliced pages, as from another machine).
pub fn chained(bin: &Path, name: &'static str) -> Result<Proxy, String> {
    let up = match std::env::var("RSOCKD_BENCH_CHAIN_UPSTREAM").as_deref() {
        Ok("microsocks") => microsocks()?,
        Ok("danted") => danted()?,
        Ok("rsockd-copy") => rsockd_engine(bin, "rsockd-copy", "copy")?,
        _ => rsockd(bin, 1)?,
    };
    let dir = scratch(name).map_err(|e| e.to_string())?;
    let port = free_port();
    let route = format!(
        "route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} proxyprotocol: socks_v5 }}\n",
        up.addr.port()
    );
    // A route is never marked bad here: the scenario measures relaying, and both servers
    // would otherwise stop chaining once load makes the upstream refuse a few.
    let conf = config_rules(
        &dir,
        port,
        "none",
        "route.maxfail: 0\n",
        &format!("{DANTE_RULES}{route}"),
    )
    .map_err(|e| e.to_string())?;
    let cmd = if name == "danted-chain" {
        let mut c = Command::new("danted");
        c.arg("-f").arg(&conf).arg("-p").arg(dir.join("pid"));
        c
    } else {
        let mut c = Command::new(bin);
        c.arg("-f").arg(&conf).arg("-N").arg("1");
        c
    };
    let mut p = spawn(name, cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)?;
    p.upstream = Some(Box::new(up));
    Ok(p)
}

pub fn microsocks() -> Result<Proxy, String> {
    let dir = scratch("microsocks").map_err(|e| e.to_string())?;
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.arg("-i")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string());
    spawn(
        "microsocks",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}

/// The floor (`floor.rs`): this bench binary re-executed as a minimal SOCKS5 server, the least
/// work any server must do per session.
pub fn floor(bench_bin: &Path) -> Result<Proxy, String> {
    let dir = scratch("floor").map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(bench_bin);
    cmd.args(["--role", "floor", "--listen", &addr.to_string()]);
    spawn("floor", cmd, addr, dir)
}

/// A system account with a known password, for the username/password scenario; removed on
/// drop. Needs root (useradd, chpasswd).
pub struct BenchUser {
    pub name: String,
    pub password: String,
}

impl BenchUser {
    pub fn create() -> Result<BenchUser, String> {
        if !rsockd_sys::privs::is_root() {
            return Err("rate-auth needs root to create a system user".into());
        }
        let name = format!("rsbench{}", std::process::id() % 100_000);
        let password = format!("Bench-{}-pw", std::process::id());
        let ok = Command::new("useradd")
            .args(["-M", "-N", "-s", "/usr/sbin/nologin", &name])
            .status()
            .map_err(|e| format!("useradd: {e}"))?;
        if !ok.success() {
            return Err(format!("useradd {name} failed"));
        }
        let u = BenchUser { name, password };
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("chpasswd: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            writeln!(stdin, "{}:{}", u.name, u.password).map_err(|e| e.to_string())?;
        }
        if !child.wait().map_err(|e| e.to_string())?.success() {
            return Err("chpasswd failed".into());
        }
        Ok(u)
    }

    pub fn creds(&self) -> crate::socks::Creds {
        Some((self.name.clone(), self.password.clone()))
    }
}

impl Drop for BenchUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// rsockd `-N mothers` with `socksmethod: username`: the system account, or (`own_file`) our
/// own password file holding the same user and password, hashed as `rsockd --hash-password`
/// does.
pub fn rsockd_auth(
    bin: &Path,
    user: &BenchUser,
    own_file: bool,
    mothers: u32,
) -> Result<Proxy, String> {
    let (tag, name) = match (own_file, mothers) {
        (true, 1) => ("rsockd-file", "rsockd-file"),
        (true, _) => ("rsockd-file-N2", "rsockd-file-N2"),
        (false, _) => ("rsockd-auth", "rsockd"),
    };
    let dir = scratch(tag).map_err(|e| e.to_string())?;
    let port = free_port();
    let extra = if own_file {
        let out = Command::new(bin)
            .args(["--hash-password", &user.name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                if let Some(mut stdin) = c.stdin.take() {
                    use std::io::Write;
                    writeln!(stdin, "{}", user.password)?;
                }
                c.wait_with_output()
            })
            .map_err(|e| format!("rsockd --hash-password: {e}"))?;
        let users = dir.join("users");
        fs::write(&users, &out.stdout).map_err(|e| e.to_string())?;
        format!("rsockd.users.file: {}\n", users.display())
    } else {
        String::new()
    };
    let conf = config_with(&dir, port, "username", &extra).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-N").arg(mothers.to_string());
    spawn(name, cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// danted with `socksmethod: username` (system accounts).
pub fn danted_auth() -> Result<Proxy, String> {
    let dir = scratch("danted-auth").map_err(|e| e.to_string())?;
    let port = free_port();
    let conf = config_with(&dir, port, "username", "").map_err(|e| e.to_string())?;
    let mut cmd = Command::new("danted");
    cmd.arg("-f").arg(&conf).arg("-p").arg(dir.join("pid"));
    spawn("danted", cmd, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// microsocks with its one built-in user (`-u`/`-P`, a plain-text password on its command
/// line: no hashing, so it marks the cost of the protocol alone).
pub fn microsocks_auth(user: &BenchUser) -> Result<Proxy, String> {
    let dir = scratch("microsocks-auth").map_err(|e| e.to_string())?;
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.args([
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        &user.name,
        "-P",
        &user.password,
    ]);
    spawn(
        "microsocks",
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    )
}
