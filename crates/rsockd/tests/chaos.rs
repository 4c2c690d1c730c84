//! Bounded chaos (issue: "A bounded chaos loop (about 60 s in CI)"): `-N 3` under the load of
//! 30 clients streaming checksummed data, while a killer SIGKILLs mothers 2..3 and relays at
//! random. Afterwards the tree under mother 1 is whole again (2 other mothers, each with its
//! relays), nothing in it is a zombie, every process's descriptor count is back to its
//! baseline, the log tells of every killed mother, and every session whose relay lived was
//! byte-exact.
//!
//! `RSOCKD_CHAOS_SECS` sets the length of the chaos (default 60), `RSOCKD_CHAOS_SEED` replays
//! a run (the seed is printed). Every wait polls with a deadline; processes are ended by PID.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::*;
use common::*;

const CLIENTS: usize = 30;
/// A mother index is killed at most this often, so its re-spawn back-off stays short.
const MOTHER_GAP: Duration = Duration::from_secs(4);
/// ... and at most this many times (back-offs 0, 1, 2, 4, 8 s), so the end state is reached in
/// bounded time.
const MAX_KILLS_PER_MOTHER: u32 = 5;
/// A client cut during negotiation is excused if a mother was killed this shortly before.
const NEGOTIATION_WINDOW: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(splitmix(seed ^ splitmix(stream)).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The process tree, read in one pass over /proc.

#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    state: char,
    title: String,
}

/// `root` and every process below it.
fn tree(root: i32) -> Vec<Proc> {
    let mut all: Vec<(i32, i32, char)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(f) = proc_stat(pid) else { continue };
        let state = f.first().and_then(|s| s.chars().next()).unwrap_or('?');
        let Some(ppid) = f.get(1).and_then(|p| p.parse().ok()) else {
            continue;
        };
        all.push((pid, ppid, state));
    }
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        pids.extend(all.iter().filter(|x| x.1 == p).map(|x| x.0));
        i += 1;
    }
    pids.into_iter()
        .filter_map(|pid| {
            let &(_, ppid, state) = all.iter().find(|x| x.0 == pid)?;
            Some(Proc {
                pid,
                ppid,
                state,
                title: cmdline(pid),
            })
        })
        .collect()
}

/// `mother I` or `relay I.K` from a process title.
fn role(title: &str) -> Option<String> {
    if let Some(r) = title.strip_prefix("rsockd: mother ") {
        return Some(format!("mother {}", r.split('/').next()?));
    }
    let r = title.strip_prefix("rsockd: relay ")?;
    Some(format!("relay {}", r.split(':').next()?))
}

fn relay_sessions(title: &str) -> Option<u32> {
    title
        .strip_prefix("rsockd: relay ")?
        .split(": ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The mother index a role belongs to.
fn role_mother(role: &str) -> Option<u32> {
    let r = role
        .strip_prefix("mother ")
        .or_else(|| role.strip_prefix("relay "))?;
    r.split('.').next()?.parse().ok()
}

fn fd_targets(pid: i32) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| {
            let t = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("{}->{t}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    Some(v)
}

/// Role → (fd count, fd listing) of every process in the tree.
type Fds = BTreeMap<String, (usize, Vec<String>)>;

/// Drops pipes whose both ends the process holds: a relay's splice pool keeps up to 32 empty
/// pipes for reuse, so their number depends on past traffic, not on leaks. Pipes shared with
/// other processes (stderr, the supervisor's) stay counted.
fn without_own_pipes(t: Vec<String>) -> Vec<String> {
    let target = |e: &String| e.split_once("->").map(|(_, t)| t.to_string());
    let pipes: Vec<String> = t
        .iter()
        .filter_map(target)
        .filter(|x| x.starts_with("pipe:"))
        .collect();
    t.into_iter()
        .filter(|e| {
            target(e).is_none_or(|x| {
                !x.starts_with("pipe:") || pipes.iter().filter(|p| **p == x).count() < 2
            })
        })
        .collect()
}

fn fds_by_role(snap: &[Proc]) -> Fds {
    snap.iter()
        .filter_map(|p| {
            let r = role(&p.title)?;
            let t = without_own_pipes(fd_targets(p.pid)?);
            Some((r, (t.len(), t)))
        })
        .collect()
}

/// Ok when the tree is exactly `roles` (one process each), every relay is its mother's child
/// and idle, and nothing is a zombie; otherwise what is still off.
fn tree_whole(root: i32, roles: &[String]) -> Result<Vec<Proc>, String> {
    let snap = tree(root);
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in &snap {
        if p.state == 'Z' {
            problems.push(format!("zombie {} (parent {})", p.pid, p.ppid));
            continue;
        }
        let Some(r) = role(&p.title) else {
            problems.push(format!("unknown process {} {:?}", p.pid, p.title));
            continue;
        };
        seen.entry(r.clone()).or_default().push(p.pid);
        if r.starts_with("relay ") {
            if relay_sessions(&p.title) != Some(0) {
                problems.push(format!("{} {:?} still busy", p.pid, p.title));
            }
            let m = role_mother(&r).unwrap();
            let mother = snap
                .iter()
                .find(|x| role(&x.title).as_deref() == Some(&format!("mother {m}")));
            if mother.map(|x| x.pid) != Some(p.ppid) {
                problems.push(format!(
                    "{} {:?} is not a child of its mother (parent {})",
                    p.pid, p.title, p.ppid
                ));
            }
        }
    }
    for r in roles {
        match seen.get(r).map(Vec::len) {
            Some(1) => {}
            Some(n) => problems.push(format!("{n} processes titled {r}: {:?}", seen[r])),
            None => problems.push(format!("no {r}")),
        }
    }
    for (r, pids) in &seen {
        if !roles.contains(r) {
            problems.push(format!("unexpected {r}: {pids:?}"));
        }
    }
    if problems.is_empty() {
        Ok(snap)
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Which relay holds a session: the inode of the proxy's side of the client connection in
// /proc/net/tcp, then the relay process with that socket among its descriptors.

fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((
        std::net::Ipv4Addr::from(ip.to_ne_bytes()),
        port,
    )))
}

fn established_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(3) != Some(&"01")
            || parse_hex_addr(f.get(1)?)? != local
            || parse_hex_addr(f.get(2)?)? != remote
        {
            return None;
        }
        f.get(9)?.parse().ok().filter(|i| *i != 0)
    })
}

fn socket_holder(inode: u64) -> Option<i32> {
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !cmdline(pid).starts_with("rsockd: relay ") {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The relay process holding the proxy's side of the connection from `client`; None if it
/// cannot be found within a few tries (the relay died, or the session already ended).
fn relay_of_session(proxy: SocketAddr, client: SocketAddr) -> Option<i32> {
    for _ in 0..5 {
        if let Some(pid) = established_inode(proxy, client).and_then(socket_holder) {
            return Some(pid);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// One client session.

#[derive(Debug)]
enum Outcome {
    /// Every byte came back, in order, and the close was clean.
    Exact,
    /// Connection refused, closed, reset or timed out before the SOCKS reply.
    PreReply(String),
    /// A SOCKS reply other than success.
    Refused(u8),
    /// An i/o error, EOF or timeout after the reply; every byte read before it was right.
    Broken(String),
    /// A wrong byte, an extra byte or a protocol violation.
    Corrupt(String),
}

#[derive(Debug)]
struct Session {
    id: usize,
    client: Option<SocketAddr>,
    relay: Option<i32>,
    /// Wall-clock start, to match log lines.
    wall: f64,
    ended: Instant,
    bytes: u64,
    outcome: Outcome,
}

enum Fail {
    Io(String),
    Corrupt(String),
}

/// Reads exactly `want.len()` bytes, comparing as they come, so a truncated stream is told
/// from a corrupted one.
fn read_expect(s: &mut TcpStream, want: &[u8], what: &str) -> Result<(), Fail> {
    let mut buf = vec![0u8; want.len()];
    let mut got = 0;
    while got < want.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Fail::Io(format!(
                    "{what}: EOF after {got} of {} bytes",
                    want.len()
                )))
            }
            Ok(n) => {
                if let Some(i) = (got..got + n).find(|&i| buf[i] != want[i]) {
                    return Err(Fail::Corrupt(format!(
                        "{what}: byte {i} of {} differs",
                        want.len()
                    )));
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Fail::Io(format!(
                    "{what}: {e} after {got} of {} bytes",
                    want.len()
                )))
            }
        }
    }
    Ok(())
}

/// SOCKS5 greeting (method none) and CONNECT in one write, then the method selection and the
/// reply.
fn negotiate(s: &mut TcpStream, target: SocketAddr) -> Result<(), Outcome> {
    let SocketAddr::V4(t) = target else {
        unreachable!("the echo server is on IPv4")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req)
        .map_err(|e| Outcome::PreReply(format!("request: {e}")))?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel)
        .map_err(|e| Outcome::PreReply(format!("method selection: {e}")))?;
    if sel != [5, 0] {
        return Err(Outcome::Corrupt(format!("method selection {sel:?}")));
    }
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .map_err(|e| Outcome::PreReply(format!("reply: {e}")))?;
    if head[0] != 5 {
        return Err(Outcome::Corrupt(format!("reply {head:?}")));
    }
    if head[1] != 0 {
        return Err(Outcome::Refused(head[1]));
    }
    let len = match head[3] {
        1 => 4,
        4 => 16,
        a => return Err(Outcome::Corrupt(format!("reply address type {a}"))),
    };
    let mut rest = vec![0u8; len + 2];
    s.read_exact(&mut rest)
        .map_err(|e| Outcome::PreReply(format!("reply address: {e}")))?;
    Ok(())
}

/// Streams `chunk(id, seq)` for `dur` (1 to 3 chunks in flight, checked as they come back),
/// then half-closes and expects a clean EOF.
fn stream(
    s: &mut TcpStream,
    id: usize,
    dur: Duration,
    rng: &mut Rng,
    stop: &AtomicBool,
    bytes: &mut u64,
) -> Outcome {
    let deadline = Instant::now() + dur;
    let mut seq = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let k = 1 + rng.below(3);
        let mut out = Vec::new();
        for i in 0..k {
            out.extend_from_slice(&chunk(id, seq + i));
        }
        if let Err(e) = s.write_all(&out) {
            return Outcome::Broken(format!("write of chunks {seq}..{}: {e}", seq + k));
        }
        match read_expect(s, &out, &format!("chunks {seq}..{}", seq + k)) {
            Ok(()) => *bytes += out.len() as u64,
            Err(Fail::Io(m)) => return Outcome::Broken(m),
            Err(Fail::Corrupt(m)) => return Outcome::Corrupt(m),
        }
        seq += k;
        thread::sleep(rng.millis(2, 6));
    }
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return Outcome::Broken(format!("shutdown: {e}"));
    }
    let mut extra = [0u8; 256];
    loop {
        match s.read(&mut extra) {
            Ok(0) => return Outcome::Exact,
            Ok(n) => return Outcome::Corrupt(format!("{n} extra bytes after the last chunk")),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Broken(format!("waiting for EOF: {e}")),
        }
    }
}

fn session(
    proxy: SocketAddr,
    target: SocketAddr,
    id: usize,
    dur: Duration,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Session {
    let mut rec = Session {
        id,
        client: None,
        relay: None,
        wall: epoch(),
        ended: Instant::now(),
        bytes: 0,
        outcome: Outcome::Exact,
    };
    rec.outcome = match TcpStream::connect_timeout(&proxy, IO_TIMEOUT) {
        Err(e) => Outcome::PreReply(format!("connect: {e}")),
        Ok(mut s) => {
            rec.client = s.local_addr().ok();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            match negotiate(&mut s, target) {
                Err(o) => o,
                Ok(()) => {
                    rec.relay = rec.client.and_then(|c| relay_of_session(proxy, c));
                    stream(&mut s, id, dur, rng, stop, &mut rec.bytes)
                }
            }
        }
    };
    rec.ended = Instant::now();
    rec
}

// ---------------------------------------------------------------------------------------------
// The killer.

#[derive(Clone, Debug)]
struct Kill {
    pid: i32,
    role: String,
    at: Instant,
    /// For a relay: its parent was its own mother (so that mother must log its death).
    mothered: bool,
}

fn killer(root: i32, seed: u64, stop: Arc<AtomicBool>, kills: Arc<Mutex<Vec<Kill>>>) {
    let mut rng = Rng::new(seed, 0xdead);
    let mut last: HashMap<u32, Instant> = HashMap::new();
    let mut count: HashMap<u32, u32> = HashMap::new();
    loop {
        let pause = Instant::now() + rng.millis(700, 2000);
        while Instant::now() < pause && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let snap = tree(root);
        let mother_of = |i: u32| {
            snap.iter()
                .find(|p| role(&p.title) == Some(format!("mother {i}")))
                .map(|p| p.pid)
        };
        let mothers: Vec<(u32, &Proc)> = snap
            .iter()
            .filter(|p| p.pid != root && p.state != 'Z')
            .filter_map(|p| {
                let i = role_mother(&role(&p.title)?)?;
                p.title.starts_with("rsockd: mother ").then_some((i, p))
            })
            .filter(|(i, _)| {
                *i != 1
                    && count.get(i).copied().unwrap_or(0) < MAX_KILLS_PER_MOTHER
                    && last.get(i).is_none_or(|t| t.elapsed() >= MOTHER_GAP)
            })
            .collect();
        let relays: Vec<&Proc> = snap
            .iter()
            .filter(|p| p.state != 'Z' && p.title.starts_with("rsockd: relay "))
            .collect();
        let (victim, index) = if !mothers.is_empty() && rng.below(100) < 35 {
            let (i, p) = mothers[rng.below(mothers.len() as u64) as usize];
            (p, Some(i))
        } else if !relays.is_empty() {
            (relays[rng.below(relays.len() as u64) as usize], None)
        } else {
            continue;
        };
        let r = role(&victim.title).unwrap();
        // The pid is still the process we chose (not re-used since the snapshot).
        if role(&cmdline(victim.pid)).as_ref() != Some(&r) {
            continue;
        }
        let mothered = index.is_none()
            && role_mother(&r).and_then(|i| if i == 1 { Some(root) } else { mother_of(i) })
                == Some(victim.ppid);
        let at = Instant::now();
        if unsafe_free_kill(victim.pid, SIGKILL) != 0 {
            continue;
        }
        if let Some(i) = index {
            last.insert(i, at);
            *count.entry(i).or_insert(0) += 1;
        }
        kills.lock().unwrap().push(Kill {
            pid: victim.pid,
            role: r,
            at,
            mothered,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The log.

/// `(wall time, pid)` of log lines containing every one of `needles`, written at or after
/// `since`.
fn log_lines(log: &str, needles: &[&str], since: f64) -> Vec<(f64, i32)> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| {
            let t: f64 = l.split_once(" (")?.1.split_once(')')?.0.parse().ok()?;
            let pid = l.split_once("rsockd[")?.1.split_once(']')?.0.parse().ok()?;
            (t >= since).then_some((t, pid))
        })
        .collect()
}

/// The relay that a session's client was handed to, by the relay's own `tcp/connect [` line.
fn relay_from_log(log: &str, client: SocketAddr, since: f64) -> Option<i32> {
    let c = format!("tcp/connect [: {} ", dante_addr(client));
    log_lines(log, &[&c], since).first().map(|x| x.1)
}

/// The relay pid of the mother's `session error (relay process P died)` line for `client`.
fn died_with_from_log(log: &str, client: SocketAddr, since: f64) -> Option<i32> {
    let c = format!("tcp/connect ]: {} ", dante_addr(client));
    log.lines()
        .filter(|l| l.contains(&c))
        .filter(|l| {
            l.split_once(" (")
                .and_then(|x| x.1.split_once(')'))
                .and_then(|x| x.0.parse::<f64>().ok())
                .is_some_and(|t| t >= since)
        })
        .find_map(|l| {
            l.split_once("session error (relay process ")?
                .1
                .split_once(' ')?
                .0
                .parse()
                .ok()
        })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn chaos_kills_under_load_lose_only_what_the_dead_held() {
    let secs: u64 = std::env::var("RSOCKD_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("RSOCKD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            splitmix(n.as_nanos() as u64 ^ u64::from(std::process::id()))
        });
    eprintln!("chaos: {secs} s, seed {seed} (RSOCKD_CHAOS_SEED={seed} replays the choices)");
    let t0 = Instant::now();

    let echo = echo_server();
    // Dropped after the server (which kills its tree): whatever we saw and escaped the tree.
    let mut orphans = Orphans(Vec::new());
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "3"]);
    let root = srv.pid;

    // The whole tree, up and idle; a few sessions to warm it, then the baseline.
    wait_until("mothers 2 and 3 with their relays", 30, || {
        let snap = tree(root);
        (1..=3).all(|i| {
            snap.iter()
                .any(|p| role(&p.title) == Some(format!("mother {i}")))
                && snap
                    .iter()
                    .any(|p| role(&p.title).is_some_and(|r| r.starts_with(&format!("relay {i}."))))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..30 {
        let mut rng = Rng::new(seed, 1_000_000 + i);
        let s = session(
            srv.addr,
            echo.addr,
            1_000_000 + i as usize,
            Duration::from_millis(20),
            &mut rng,
            &stop,
        );
        assert!(matches!(s.outcome, Outcome::Exact), "warm-up: {s:?}");
    }
    let roles: Vec<String> = {
        let snap = tree(root);
        let mut r: Vec<String> = snap.iter().filter_map(|p| role(&p.title)).collect();
        r.sort();
        r
    };
    let mut distinct = roles.clone();
    distinct.dedup();
    assert!(
        distinct == roles
            && (1..=3).all(|i| roles.contains(&format!("mother {i}")))
            && roles.len() > 3,
        "one process per role at the start: {roles:?}"
    );
    let mut baseline = Fds::new();
    let mut last: Option<Fds> = None;
    wait_until("the idle tree to settle for its baseline", 30, || {
        let Ok(snap) = tree_whole(root, &roles) else {
            return false;
        };
        let now = fds_by_role(&snap);
        let counts = |f: &Fds| f.iter().map(|(r, v)| (r.clone(), v.0)).collect::<Vec<_>>();
        let settled = last.as_ref().is_some_and(|l| counts(l) == counts(&now));
        if settled {
            baseline = now;
            return true;
        }
        last = Some(now);
        thread::sleep(Duration::from_millis(200));
        false
    });
    eprintln!(
        "chaos: tree {:?}; descriptors {:?}",
        roles,
        baseline
            .iter()
            .map(|(r, v)| format!("{r}: {}", v.0))
            .collect::<Vec<_>>()
    );
    let mut seen_pids: Vec<i32> = tree(root).iter().map(|p| p.pid).collect();

    // Load and chaos.
    let records: Arc<Mutex<Vec<Session>>> = Arc::new(Mutex::new(Vec::new()));
    let kills: Arc<Mutex<Vec<Kill>>> = Arc::new(Mutex::new(Vec::new()));
    let next_id = Arc::new(AtomicUsize::new(1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, records, next_id) = (stop.clone(), records.clone(), next_id.clone());
            let (proxy, target) = (srv.addr, echo.addr);
            thread::spawn(move || {
                let mut rng = Rng::new(seed, c as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let dur = rng.millis(200, 2000);
                    let s = session(proxy, target, id, dur, &mut rng, &stop);
                    records.lock().unwrap().push(s);
                }
            })
        })
        .collect();
    let killer_thread = {
        let (stop, kills) = (stop.clone(), kills.clone());
        thread::spawn(move || killer(root, seed, stop, kills))
    };
    let chaos_start = Instant::now();
    while chaos_start.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_millis(100));
        seen_pids.extend(tree(root).iter().map(|p| p.pid));
    }
    stop.store(true, Ordering::SeqCst);
    killer_thread.join().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    let chaos_secs = chaos_start.elapsed().as_secs_f64();
    seen_pids.sort();
    seen_pids.dedup();
    seen_pids.retain(|p| *p != root);
    orphans.0 = seen_pids;
    let kills = kills.lock().unwrap().clone();
    let records = std::mem::take(&mut *records.lock().unwrap());

    // The tree is whole again: mothers re-spawned (their back-off is at most 8 s), relays
    // replaced, orphaned relays drained and reaped, no zombie.
    let settle = Instant::now();
    let mut why = String::new();
    let whole = loop {
        match tree_whole(root, &roles) {
            Ok(snap) => break Some(snap),
            Err(e) => why = e,
        }
        if settle.elapsed() > Duration::from_secs(40) {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let tree_secs = settle.elapsed().as_secs_f64();
    // Descriptor counts back to the baseline, role by role (respawned processes included).
    let mut fds_now = Fds::new();
    let fds_ok = whole.is_some() && {
        let start = Instant::now();
        loop {
            fds_now = tree_whole(root, &roles)
                .map(|s| fds_by_role(&s))
                .unwrap_or_default();
            let same = fds_now.len() == baseline.len()
                && fds_now
                    .iter()
                    .all(|(r, v)| baseline.get(r).is_some_and(|b| b.0 == v.0));
            if same {
                break true;
            }
            if start.elapsed() > Duration::from_secs(15) {
                break false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    };
    let log = srv.log_text();

    // Classify every session.
    let mut failures: Vec<String> = Vec::new();
    let (mut exact, mut bytes) = (0usize, 0u64);
    let (mut lost_relay, mut lost_handoff, mut lost_negotiating) = (0usize, 0usize, 0usize);
    let mut refused = 0usize;
    // Sessions past their reply whose relay /proc did not show: (byte-exact, broken).
    let mut relay_unknown = (0usize, 0usize);
    let mut lost_by_relay: Vec<(SocketAddr, i32)> = Vec::new();
    let killed_at = |pid: i32| kills.iter().find(|k| k.pid == pid).map(|k| k.at);
    let mother_killed_before = |at: Instant| {
        kills.iter().any(|k| {
            k.role.starts_with("mother ")
                && k.at <= at
                && at.duration_since(k.at) <= NEGOTIATION_WINDOW
        })
    };
    for s in &records {
        if s.relay.is_none() {
            match s.outcome {
                Outcome::Exact => relay_unknown.0 += 1,
                Outcome::Broken(_) => relay_unknown.1 += 1,
                _ => {}
            }
        }
        let since = s.wall - 1.0;
        match &s.outcome {
            Outcome::Exact => {
                exact += 1;
                bytes += s.bytes;
            }
            Outcome::Corrupt(m) => failures.push(format!(
                "session {} (client {:?}, relay {:?}) corrupted: {m}",
                s.id, s.client, s.relay
            )),
            Outcome::Broken(m) => {
                bytes += s.bytes;
                let relay = s.relay.or_else(|| {
                    let c = s.client?;
                    relay_from_log(&log, c, since).or_else(|| died_with_from_log(&log, c, since))
                });
                match relay.map(|r| (r, killed_at(r))) {
                    Some((r, Some(k))) if k <= s.ended => {
                        lost_relay += 1;
                        lost_by_relay.push((s.client.unwrap(), r));
                    }
                    _ => failures.push(format!(
                        "session {} (client {:?}) broke though its relay {relay:?} was not \
                         killed: {m}",
                        s.id, s.client
                    )),
                }
            }
            Outcome::PreReply(m) => {
                let handed_to = s.client.and_then(|c| died_with_from_log(&log, c, since));
                if handed_to.and_then(killed_at).is_some_and(|k| k <= s.ended) {
                    lost_handoff += 1;
                } else if mother_killed_before(s.ended) {
                    lost_negotiating += 1;
                } else {
                    failures.push(format!(
                        "session {} (client {:?}) cut before its reply with no mother killed \
                         in the {NEGOTIATION_WINDOW:?} before: {m}",
                        s.id, s.client
                    ));
                }
            }
            Outcome::Refused(rep) => {
                refused += 1;
                let why = s
                    .client
                    .and_then(|c| {
                        log.lines()
                            .find(|l| {
                                l.contains(&format!("{} ", dante_addr(c)))
                                    && l.contains("session not handed to a relay")
                            })
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let before = kills
                    .iter()
                    .filter(|k| k.at <= s.ended)
                    .max_by_key(|k| k.at)
                    .map(|k| {
                        format!(
                            "{} (pid {}) killed {} ms before",
                            k.role,
                            k.pid,
                            s.ended.duration_since(k.at).as_millis()
                        )
                    })
                    .unwrap_or_default();
                failures.push(format!(
                    "session {} (client {:?}) refused with reply {rep}; last kill: {before}; \
                     log: {why}",
                    s.id, s.client
                ));
            }
        }
    }

    let mother_kills: Vec<&Kill> = kills
        .iter()
        .filter(|k| k.role.starts_with("mother "))
        .collect();
    let relay_kills: Vec<&Kill> = kills
        .iter()
        .filter(|k| k.role.starts_with("relay "))
        .collect();
    eprintln!(
        "chaos: {chaos_secs:.1} s of chaos; kills: {} mothers ({}), {} relays ({} orphaned); \
         {} sessions, {exact} byte-exact, {bytes} bytes verified; lost with their relay: \
         {lost_relay}, lost in hand-off to a dying relay: {lost_handoff}, clients lost in \
         negotiation: {lost_negotiating}, refused: {refused} (clients retried: {}); relay not \
         found by /proc: {} byte-exact + {} broken; tree whole after {tree_secs:.1} s; \
         total {:.1} s",
        mother_kills.len(),
        mother_kills
            .iter()
            .map(|k| format!("{}:{}", k.role, k.pid))
            .collect::<Vec<_>>()
            .join(" "),
        relay_kills.len(),
        relay_kills.iter().filter(|k| !k.mothered).count(),
        records.len(),
        lost_handoff + lost_negotiating + refused,
        relay_unknown.0,
        relay_unknown.1,
        t0.elapsed().as_secs_f64(),
    );

    // The log tells of every death the mothers saw.
    for k in &mother_kills {
        let want = format!(
            "warning: sigchld(): mother {} exited unexpectedly on signal SIGKILL",
            k.pid
        );
        if !log.contains(&want) {
            failures.push(format!("no \"{want}\" in the log"));
        }
    }
    for k in relay_kills.iter().filter(|k| k.mothered) {
        let want = format!("{} (pid {}) exited unexpectedly; its ", k.role, k.pid);
        if !log.contains(&want) {
            failures.push(format!("no \"{want}\" in the log"));
        }
    }
    for (client, relay) in &lost_by_relay {
        let mothered = kills.iter().any(|k| k.pid == *relay && k.mothered);
        let line = format!("tcp/connect ]: {} ", dante_addr(*client));
        let died = format!("session error (relay process {relay} died)");
        if mothered && !log.lines().any(|l| l.contains(&line) && l.contains(&died)) {
            failures.push(format!(
                "session of client {client} lost with relay {relay}, but no \"{died}\" line"
            ));
        }
    }
    if whole.is_none() {
        failures.push(format!(
            "the tree is not whole {tree_secs:.0} s after the chaos: {why}"
        ));
    }
    if whole.is_some() && !fds_ok {
        for (r, (n, list)) in &fds_now {
            let (b, blist) = baseline.get(r).cloned().unwrap_or_default();
            if *n != b {
                failures.push(format!(
                    "{r}: {n} descriptors, {b} before the chaos\n  now:    {list:?}\n  before: \
                     {blist:?}"
                ));
            }
        }
        if fds_now.len() != baseline.len() {
            failures.push(format!(
                "roles with descriptors now {:?}, before {:?}",
                fds_now.keys().collect::<Vec<_>>(),
                baseline.keys().collect::<Vec<_>>()
            ));
        }
    }
    if exact == 0 {
        failures.push("no session completed".into());
    }
    if !failures.is_empty() {
        // Keep what it takes to understand the failure: the server's log and the kills.
        let kept = std::env::temp_dir().join(format!("rsockd-chaos-{seed}.log"));
        let _ = std::fs::write(&kept, &log);
        let timeline: Vec<String> = kills
            .iter()
            .map(|k| {
                format!(
                    "{:.3} s {} pid {}{}",
                    k.at.duration_since(chaos_start).as_secs_f64(),
                    k.role,
                    k.pid,
                    if k.role.starts_with("relay ") && !k.mothered {
                        " (orphan)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        panic!(
            "{} problem(s) (seed {seed}; server log kept in {}):\n{}\nkills after the chaos \
             began:\n  {}",
            failures.len(),
            kept.display(),
            failures.join("\n"),
            timeline.join("\n  ")
        );
    }
}
