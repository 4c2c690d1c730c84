//! The worker processes of the `idle` and `scale` scenarios: this binary re-executed with a
//! hidden `--role gen|echo` first argument. A process can hold only ~9,000 sessions' sockets
//! here (the hard open-files limit is 20,000 and cannot be raised), so the sessions are spread
//! over several load generators and echo targets, each on an address of its own in
//! 127.0.0.0/8 (see `hold.rs` for the plan). A worker takes one command per line on stdin and
//! answers each with one line on stdout, so the parent can measure the proxy between phases;
//! the end of stdin (the parent is done, or gone) ends the worker. `--role floor` is another
//! use of the same re-execution: the floor proxy of `floor.rs`.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use rsockd_sys::epoll::Epoll;
use rsockd_sys::fdio;
use rsockd_sys::process::Signal;

use crate::args::{opt, parse};
use crate::socks;

/// One connect, one handshake step or one echo gives up on its session after this long.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// A generator thread stops opening after this many timeouts in a row: the proxy has topped
/// out, and waiting out a timeout for each remaining session would take minutes.
const GIVE_UP_AFTER_TIMEOUTS: u32 = 5;
/// ... or after this many failures of any kind in a row. Quick refusals are cheap, and a proxy
/// whose processes fill up one by one (rsockd -N 2: each mother its own relays) refuses some
/// sessions while it still has room for others.
const GIVE_UP_AFTER: u32 = 20;
/// Threads per generator: parallel handshakes for a proxy that is slow per session (danted
/// forks); more would only contend for the 2 cores.
const GEN_THREADS: u64 = 8;

/// Runs a worker role when the arguments ask for one, then exits; returns otherwise.
pub fn run_if_asked() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("--role") {
        return;
    }
    // Die with the bench: a generator busy opening would not read the end of its stdin for
    // up to its whole deadline.
    let _ = rsockd_sys::process::die_with_parent(Signal::SIGKILL);
    let rest = args.get(2..).unwrap_or_default();
    let r = match args.get(1).map(String::as_str) {
        Some("gen") => gen_main(rest),
        Some("echo") => echo_main(rest),
        Some("floor") => crate::floor::main(rest),
        other => Err(format!("unknown role {other:?}")),
    };
    if let Err(e) = r {
        eprintln!("rsockd-bench worker: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// One answer line to the parent; a closed pipe means the parent is gone, which ends us.
fn answer(line: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// The bytes session `index` echoes: its index, then a fixed tag, so a reply that came back on
/// the wrong session is caught.
fn message(index: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&index.to_be_bytes());
    m[8..].copy_from_slice(b"rsbench!");
    m
}

/// A TCP connection from `source` to `dst`, established within `timeout`. The source port is
/// left to connect() (IP_BIND_ADDRESS_NO_PORT): a plain bind would reserve a port for all
/// destinations and leave only ~28,000 for the whole address instead of per destination.
fn connect_from(source: Ipv4Addr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::other("IPv4 destinations only"));
    };
    let sock = fdio::tcp4_socket()?;
    rsockd_sys::sockopt::set_bind_address_no_port(sock.as_fd())?;
    fdio::bind4(sock.as_fd(), SocketAddrV4::new(source, 0))?;
    if !fdio::connect4_started(sock.as_fd(), dst)?
        && !fdio::poll_ready(sock.as_fd(), libc::POLLOUT, timeout)
    {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
    }
    let s = TcpStream::from(sock);
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Where a generator's sessions go.
struct Route {
    source: Ipv4Addr,
    /// None: straight to the targets (the direct baseline).
    proxy: Option<SocketAddr>,
    targets: Vec<SocketAddr>,
}

impl Route {
    /// Session `index`: connect (through the proxy: greeting and CONNECT) to its target.
    fn open(&self, index: u64) -> io::Result<TcpStream> {
        let target = self.targets[(index % self.targets.len() as u64) as usize];
        let mut s = connect_from(self.source, self.proxy.unwrap_or(target), OP_TIMEOUT)?;
        s.set_read_timeout(Some(OP_TIMEOUT))?;
        s.set_write_timeout(Some(OP_TIMEOUT))?;
        s.set_nodelay(true)?;
        if self.proxy.is_some() {
            socks::handshake(&mut s, 1, target, &None)?;
        }
        Ok(s)
    }

    /// Opens the sessions `range` one after the other until the deadline or until the proxy
    /// has failed too many in a row; returns them, the failures and the first error.
    fn open_range(&self, range: Range<u64>, deadline: Instant) -> Opened {
        let mut o = Opened::default();
        let (mut streak, mut timeouts) = (0, 0);
        for i in range {
            if streak >= GIVE_UP_AFTER
                || timeouts >= GIVE_UP_AFTER_TIMEOUTS
                || Instant::now() >= deadline
            {
                break;
            }
            match self.open(i) {
                Ok(s) => {
                    o.sessions.push((i, s));
                    (streak, timeouts) = (0, 0);
                }
                Err(e) => {
                    o.failed += 1;
                    streak += 1;
                    // Read timeouts come back as WouldBlock.
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) {
                        timeouts += 1;
                    } else {
                        timeouts = 0;
                    }
                    o.error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        o
    }
}

#[derive(Default)]
struct Opened {
    sessions: Vec<(u64, TcpStream)>,
    failed: u64,
    error: Option<String>,
}

/// How one group of sessions echoed.
#[derive(Default)]
struct Echoed {
    ok: u64,
    failed: u64,
    corrupt: u64,
}

/// Every session of `group` sends its message, then every reply is read and checked: the
/// whole group is active at once, as a busy proxy's sessions are.
fn echo_group(group: &mut [(u64, TcpStream)], deadline: Instant) -> Echoed {
    let sent: Vec<bool> = group
        .iter_mut()
        .map(|(i, s)| s.write_all(&message(*i)).is_ok())
        .collect();
    let mut t = Echoed::default();
    for ((i, s), sent) in group.iter_mut().zip(sent) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut back = [0u8; 16];
        let got = sent
            && !left.is_zero()
            && s.set_read_timeout(Some(left.min(OP_TIMEOUT))).is_ok()
            && s.read_exact(&mut back).is_ok();
        if !got {
            t.failed += 1;
        } else if back == message(*i) {
            t.ok += 1;
        } else {
            t.corrupt += 1;
        }
    }
    t
}

/// Waits (until the deadline) for the proxy to pass on each target's close, then closes:
/// the parent closes the targets first, so the proxy closes its sides after the far end did and
/// TIME_WAIT stays on the listening ports instead of taking the ephemeral ports on 127.0.0.1
/// that later scenarios (danted's bound outgoing sockets above all) need. Returns how many
/// sessions saw the end.
fn close_group(group: Vec<(u64, TcpStream)>, deadline: Instant) -> u64 {
    let mut eof = 0;
    let mut buf = [0u8; 64];
    for (_, mut s) in group {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => {
                    eof += 1;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    eof
}

/// The load generator: `--source IP --proxy ADDR|direct --targets ADDR,ADDR.. --first N`.
/// Commands: `open N SECS` -> `opened K failed F [error: first error]`; `echo SECS` ->
/// `echoed K failed F corrupt C`; `close SECS` -> `closed K eof E`.
fn gen_main(args: &[String]) -> Result<(), String> {
    let proxy = match opt(args, "--proxy")? {
        "direct" => None,
        p => Some(parse(p, "--proxy")?),
    };
    let route = Route {
        source: parse(opt(args, "--source")?, "--source")?,
        proxy,
        targets: opt(args, "--targets")?
            .split(',')
            .map(|t| parse(t, "--targets"))
            .collect::<Result<_, _>>()?,
    };
    if route.targets.is_empty() {
        return Err("no targets".into());
    }
    let mut next: u64 = parse(opt(args, "--first")?, "--first")?;
    // The open sessions with their index, in one group per thread that opened them.
    let mut groups: Vec<Vec<(u64, TcpStream)>> = Vec::new();
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let secs = |w: &str| parse::<f64>(w, "seconds").map(Duration::from_secs_f64);
        let reply = match words.as_slice() {
            ["open", n, s] => {
                let n: u64 = parse(n, "count")?;
                let o = open(&route, next..next + n, Instant::now() + secs(s)?);
                next += n;
                let k: usize = o.groups.iter().map(Vec::len).sum();
                groups.extend(o.groups);
                let mut reply = format!("opened {k} failed {}", o.failed);
                if let Some(e) = o.error {
                    reply.push_str(&format!(" error: {e}"));
                }
                reply
            }
            ["echo", s] => {
                let deadline = Instant::now() + secs(s)?;
                let t = std::thread::scope(|sc| {
                    let hs: Vec<_> = groups
                        .iter_mut()
                        .map(|g| sc.spawn(move || echo_group(g, deadline)))
                        .collect();
                    hs.into_iter().fold(Echoed::default(), |mut t, h| {
                        let e = h.join().unwrap_or_default();
                        t.ok += e.ok;
                        t.failed += e.failed;
                        t.corrupt += e.corrupt;
                        t
                    })
                });
                format!("echoed {} failed {} corrupt {}", t.ok, t.failed, t.corrupt)
            }
            ["close", s] => {
                let deadline = Instant::now() + secs(s)?;
                let n: usize = groups.iter().map(Vec::len).sum();
                let eof: u64 = std::thread::scope(|sc| {
                    let hs: Vec<_> = groups
                        .drain(..)
                        .map(|g| sc.spawn(move || close_group(g, deadline)))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
                });
                format!("closed {n} eof {eof}")
            }
            _ => format!("error: unknown command {line:?}"),
        };
        answer(&reply)?;
    }
    Ok(())
}

/// Opens `range` over GEN_THREADS threads; the sessions come back in one group per thread.
fn open(route: &Route, range: Range<u64>, deadline: Instant) -> OpenedGroups {
    let per = (range.end - range.start).div_ceil(GEN_THREADS).max(1);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..GEN_THREADS)
            .map(|t| {
                let lo = (range.start + t * per).min(range.end);
                let hi = (lo + per).min(range.end);
                sc.spawn(move || route.open_range(lo..hi, deadline))
            })
            .collect();
        let mut all = OpenedGroups::default();
        for h in hs {
            let o = h.join().unwrap_or_default();
            all.failed += o.failed;
            if all.error.is_none() {
                all.error = o.error;
            }
            all.groups.push(o.sessions);
        }
        all
    })
}

#[derive(Default)]
struct OpenedGroups {
    groups: Vec<Vec<(u64, TcpStream)>>,
    failed: u64,
    error: Option<String>,
}

/// Registers `fd` with `ep`, level-triggered for reading; its events carry the descriptor.
fn watch(ep: &Epoll, fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd();
    ep.add(fd, libc::EPOLLIN as u32, fd.as_raw_fd() as u64)
}

/// The descriptors that are ready, waiting as long as it takes.
fn wait(ep: &Epoll, evs: &mut [libc::epoll_event]) -> io::Result<Vec<RawFd>> {
    loop {
        match ep.wait(evs, -1) {
            Ok(n) => return Ok(evs[..n].iter().map(|e| e.u64 as RawFd).collect()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The echo target: `--listen IP` (on a port of its own), answers `listening ADDR`, then echoes
/// on every connection it accepts, all in one thread. Commands: `close` -> `closed K`.
fn echo_main(args: &[String]) -> Result<(), String> {
    let ip: Ipv4Addr = parse(opt(args, "--listen")?, "--listen")?;
    let l = TcpListener::bind((ip, 0)).map_err(|e| format!("listen on {ip}: {e}"))?;
    // std listens with a backlog of 128; thousands of connects arrive at once.
    fdio::listen(l.as_fd(), 4096).map_err(|e| format!("listen: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    answer(&format!(
        "listening {}",
        l.local_addr().map_err(|e| e.to_string())?
    ))?;
    // Raw reads of fd 0 (a pipe from the parent), not through std's Stdin: that buffers, and
    // a line left in its buffer would never wake epoll. Borrowed: fd 0 is not ours to close.
    let stdin = io::stdin();
    let stdin = stdin.as_fd();
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    watch(&ep, &l).map_err(|e| format!("epoll: {e}"))?;
    watch(&ep, stdin).map_err(|e| format!("epoll: {e}"))?;
    let mut conns: HashMap<RawFd, TcpStream> = HashMap::new();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    loop {
        for fd in wait(&ep, &mut evs).map_err(|e| format!("epoll: {e}"))? {
            if fd == l.as_raw_fd() {
                accept_all(&l, &ep, &mut conns);
            } else if fd == stdin.as_raw_fd() {
                let n = fdio::read(stdin, &mut buf).unwrap_or(0);
                if n == 0 {
                    return Ok(());
                }
                line.extend_from_slice(&buf[..n]);
                while let Some(end) = line.iter().position(|b| *b == b'\n') {
                    let cmd: Vec<u8> = line.drain(..=end).collect();
                    if cmd.trim_ascii() == b"close" {
                        let n = conns.len();
                        // Closing deregisters them from epoll.
                        conns.clear();
                        answer(&format!("closed {n}"))?;
                    } else {
                        answer("error: unknown command")?;
                    }
                }
            } else {
                serve(fd, &ep, &mut conns, &mut buf);
            }
        }
    }
}

/// Takes every connection waiting on the listener.
fn accept_all(l: &TcpListener, ep: &Epoll, conns: &mut HashMap<RawFd, TcpStream>) {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                // Nonblocking: an event for a descriptor closed and reused in the same batch
                // must not block the loop.
                if s.set_nonblocking(true).is_ok() && watch(ep, &s).is_ok() {
                    conns.insert(s.as_raw_fd(), s);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of descriptors: stop listening rather than spin on a listener that stays
                // readable; the generators see the refusals.
                eprintln!("echo target: stopped accepting after {}: {e}", conns.len());
                let _ = ep.delete(l.as_fd());
                return;
            }
        }
    }
}

/// Echoes what connection `fd` has sent; closes it on end, error, or a full send buffer (the
/// messages are small, so that would mean a peer that does not read).
fn serve(fd: RawFd, ep: &Epoll, conns: &mut HashMap<RawFd, TcpStream>, buf: &mut [u8]) {
    let Some(s) = conns.get_mut(&fd) else { return };
    let keep = match s.read(buf) {
        Ok(0) => false,
        Ok(n) => s.write_all(&buf[..n]).is_ok(),
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    if !keep {
        let _ = ep.delete(s.as_fd());
        conns.remove(&fd);
    }
}
