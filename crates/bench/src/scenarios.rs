//! The scenarios. Each returns one measurement; the driver repeats and takes medians.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::socks;

/// What one run of a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The scenario's headline rate (datagrams/s, set-ups/s ...).
    pub rate: f64,
    /// Median and 99th percentile latency in microseconds, where the scenario has one.
    pub p50_us: f64,
    pub p99_us: f64,
    /// The proxy's CPU microseconds per unit of work (0 for the direct path).
    pub cpu_us_per_op: f64,
    /// Operations that failed (reported, not hidden: danted runs out of ports in `rate`).
    pub failed: u64,
    /// What the `idle` and `scale` scenarios measure besides (`rate` is the sessions held).
    pub held: Option<Held>,
}

/// Sessions held at once (`hold.rs`); memory per session is NaN where there is no proxy.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Sessions that sent their message and got it back.
    pub echoed: f64,
    /// KiB of RSS and PSS per session held, summed over the proxy's process tree: after
    /// establishing them minus before.
    pub rss_kib: f64,
    pub pss_kib: f64,
    /// KiB of RSS per session once every session has carried data.
    pub rss_echo_kib: f64,
    /// Seconds to establish them all (or to give up).
    pub open_secs: f64,
    /// Processes in the proxy's tree with the sessions established.
    pub procs: f64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A UDP echo server on 127.0.0.1, for as long as the returned guard lives.
pub struct UdpEcho {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn udp_echo() -> std::io::Result<UdpEcho> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let addr = s.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !st.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
    Ok(UdpEcho { addr, stop })
}

/// Datagram round trips per second through `proxy` (None: direct to the echo server), with
/// `flows` associations each keeping `window` datagrams of `size` bytes in flight, for `secs`.
pub fn udp(
    proxy: Option<SocketAddr>,
    echo: SocketAddr,
    flows: usize,
    window: usize,
    size: usize,
    secs: f64,
    cpu: &dyn Fn() -> f64,
) -> Result<Sample, String> {
    let mut socks_ = Vec::new();
    for _ in 0..flows {
        let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        u.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let (ctl, dst, header) = match proxy {
            Some(p) => {
                let (ctl, relay) = socks::request(p, 3, SocketAddr::from(([0, 0, 0, 0], 0)))
                    .map_err(|e| format!("UDP ASSOCIATE: {e}"))?;
                (Some(ctl), relay, socks::udp_header(echo))
            }
            None => (None, echo, Vec::new()),
        };
        u.connect(dst).map_err(|e| e.to_string())?;
        socks_.push((u, ctl, header));
    }
    let cpu0 = cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = socks_
        .into_iter()
        .map(|(u, ctl, header)| {
            std::thread::spawn(move || {
                let mut pkt = header.clone();
                pkt.resize(header.len() + size, 0x5a);
                let mut buf = vec![0u8; 65536];
                let mut got = 0u64;
                let mut in_flight = 0usize;
                while Instant::now() < deadline {
                    while in_flight < window {
                        if u.send(&pkt).is_err() {
                            break;
                        }
                        in_flight += 1;
                    }
                    match u.recv(&mut buf) {
                        Ok(_) => {
                            got += 1;
                            in_flight -= 1;
                        }
                        // Lost datagrams: refill the window.
                        Err(_) => in_flight = 0,
                    }
                }
                drop(ctl);
                got
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    let used = cpu() - cpu0;
    Ok(Sample {
        rate: total as f64 / elapsed,
        cpu_us_per_op: if total > 0 {
            used * 1e6 / total as f64
        } else {
            0.0
        },
        ..Sample::default()
    })
}

/// BIND set-up: connect, BIND, first reply, the peer connects, second reply; `n` times in a
/// row. Direct: listen, connect, accept.
pub fn bind(proxy: Option<SocketAddr>, n: usize, cpu: &dyn Fn() -> f64) -> Result<Sample, String> {
    let mut lat = Vec::with_capacity(n);
    let cpu0 = cpu();
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        match proxy {
            Some(p) => {
                let (mut ctl, bound) = socks::request(p, 2, SocketAddr::from(([127, 0, 0, 1], 0)))
                    .map_err(|e| format!("BIND: {e}"))?;
                let peer = TcpStream::connect(bound).map_err(|e| e.to_string())?;
                let (rep, _) = socks::read_reply(&mut ctl).map_err(|e| e.to_string())?;
                if rep != 0 {
                    return Err(format!("second BIND reply {rep}"));
                }
                lat.push(t0.elapsed().as_secs_f64() * 1e6);
                drop(peer);
                let mut b = [0u8; 1];
                let _ = ctl.read(&mut b);
            }
            None => {
                let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                let a = l.local_addr().map_err(|e| e.to_string())?;
                let c = TcpStream::connect(a).map_err(|e| e.to_string())?;
                let _ = l.accept().map_err(|e| e.to_string())?;
                lat.push(t0.elapsed().as_secs_f64() * 1e6);
                drop(c);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let used = cpu() - cpu0;
    Ok(Sample {
        rate: n as f64 / elapsed,
        p50_us: percentile(&mut lat, 0.5),
        p99_us: percentile(&mut lat, 0.99),
        cpu_us_per_op: used * 1e6 / n as f64,
        ..Sample::default()
    })
}

/// Per-connection threads of a target server, joined once finished, never detached: glibc's
/// pthread_detach(3) reads the thread's descriptor after marking it detached, and a thread that
/// exits in between may already have had its stack unmapped by another thread's
/// pthread_create. With thousands of short threads a second in `rate`, the bench died of
/// SIGSEGV in pthread_detach (dropping a JoinHandle detaches).
#[derive(Default)]
struct Joiner(Vec<std::thread::JoinHandle<()>>);

impl Joiner {
    fn spawn(&mut self, f: impl FnOnce() + Send + 'static) {
        let mut i = 0;
        while i < self.0.len() {
            if self.0[i].is_finished() {
                let _ = self.0.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
        self.0.push(std::thread::spawn(f));
    }
}

/// A TCP echo server on 127.0.0.1 (one thread per connection), for as long as the program runs.
pub fn tcp_echo() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        let mut threads = Joiner::default();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            threads.spawn(move || {
                let _ = s.set_nodelay(true);
                let Ok(mut r) = s.try_clone() else { return };
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if std::io::Write::write_all(&mut s, &buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

pub(crate) fn open(proxy: Option<SocketAddr>, target: SocketAddr) -> Result<TcpStream, String> {
    open_with(proxy, target, &socks::Client::default())
}

fn open_with(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
    client: &socks::Client,
) -> Result<TcpStream, String> {
    match proxy {
        Some(p) => socks::connect_with(p, target, client).map_err(|e| format!("CONNECT: {e}")),
        None => {
            let s = TcpStream::connect(target).map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// A byte of a stream's deterministic content at `offset`.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(2654435761) >> 13) as u8
}

/// The bulk target: each connection sends an 8-byte length and that many pattern bytes, which
/// are checked; then the same number of pattern bytes go back. One direction at a time, so a
/// proxy that copies with blocking writes in one thread (microsocks) cannot deadlock against
/// an echo.
pub fn bulk_target() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        let mut threads = Joiner::default();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            threads.spawn(move || {
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let bytes = u64::from_be_bytes(len);
                let mut buf = vec![0u8; 256 * 1024];
                if check_pattern(&mut s, bytes, &mut buf).is_err() {
                    return;
                }
                let _ = send_pattern(&mut s, bytes, &mut buf);
            });
        }
    });
    Ok(addr)
}

fn send_pattern(w: &mut TcpStream, bytes: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        std::io::Write::write_all(w, &buf[..n]).map_err(|e| format!("write: {e}"))?;
        off += n as u64;
    }
    Ok(())
}

fn check_pattern(r: &mut TcpStream, bytes: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut off = 0u64;
    while off < bytes {
        let want = (bytes - off).min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("EOF after {off} of {bytes} bytes"));
        }
        if buf[..n]
            .iter()
            .enumerate()
            .any(|(i, b)| *b != pattern(off + i as u64))
        {
            return Err(format!("corrupt bytes near offset {off}"));
        }
        off += n as u64;
    }
    Ok(())
}

/// `streams` parallel sessions each sending `bytes` to the bulk target and receiving `bytes`
/// back, every byte checked. Rate: Gbit/s each way; CPU: CPU-seconds per GiB relayed (both
/// ways counted).
pub fn bulk(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
    streams: usize,
    bytes: u64,
    cpu: &dyn Fn() -> f64,
) -> Result<Sample, String> {
    let socks_: Vec<TcpStream> = (0..streams)
        .map(|_| open(proxy, target))
        .collect::<Result<_, _>>()?;
    let cpu0 = cpu();
    let start = Instant::now();
    let handles: Vec<_> = socks_
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || -> Result<(), String> {
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; 256 * 1024];
                std::io::Write::write_all(&mut s, &bytes.to_be_bytes())
                    .map_err(|e| e.to_string())?;
                send_pattern(&mut s, bytes, &mut buf)?;
                check_pattern(&mut s, bytes, &mut buf)
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "stream panicked".to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let used = cpu() - cpu0;
    let total = bytes as f64 * streams as f64;
    let gib_both_ways = 2.0 * total / (1u64 << 30) as f64;
    // Each byte crosses once each way, one way after the other.
    Ok(Sample {
        rate: 2.0 * total * 8.0 / secs / 1e9,
        cpu_us_per_op: used / gib_both_ways,
        ..Sample::default()
    })
}

/// `workers` threads each doing connect + SOCKS5 + CONNECT + 64-byte echo + close for `secs`.
/// Rate: sessions/s; latency per session; CPU-µs per session.
pub fn rate(
    proxy: Option<SocketAddr>,
    echo: SocketAddr,
    workers: usize,
    secs: f64,
    cpu: &dyn Fn() -> f64,
    client: &socks::Client,
) -> Result<Sample, String> {
    let cpu0 = cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || -> (Vec<f64>, u64) {
                let mut lat = Vec::new();
                let mut errors = 0;
                let msg = [0x42u8; 64];
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let ok = open_with(proxy, echo, &client).and_then(|mut s| {
                        std::io::Write::write_all(&mut s, &msg).map_err(|e| e.to_string())?;
                        let mut back = [0u8; 64];
                        s.read_exact(&mut back).map_err(|e| e.to_string())?;
                        Ok(())
                    });
                    match ok {
                        Ok(()) => lat.push(t0.elapsed().as_secs_f64() * 1e6),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().map_err(|_| "worker panicked".to_string())?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let used = cpu() - cpu0;
    let n = lat.len();
    Ok(Sample {
        rate: n as f64 / elapsed,
        p50_us: percentile(&mut lat, 0.5),
        p99_us: percentile(&mut lat, 0.99),
        cpu_us_per_op: if n > 0 { used * 1e6 / n as f64 } else { 0.0 },
        failed: errors,
        ..Sample::default()
    })
}

/// One server in a scenario whose servers take turns: its address (None = the direct path)
/// and its CPU clock.
pub struct Contender<'a> {
    pub addr: Option<SocketAddr>,
    pub cpu: &'a dyn Fn() -> f64,
}

/// Latency: `n` 32-byte echoes on one session per server, one after another. The servers take
/// turns in `slices` slices of the echoes (every session open throughout), so a machine whose
/// speed drifts, as shared hosts' does from one second to the next, weighs on all of them
/// alike instead of on whichever ran during a slow moment. A server that waits for its turn
/// spends no CPU, so each one's CPU is read once around the whole run.
pub fn latency(
    cs: &[Contender<'_>],
    echo: SocketAddr,
    n: usize,
    slices: usize,
) -> Vec<Result<Sample, String>> {
    let slices = slices.clamp(1, n.max(1));
    let mut sessions: Vec<Result<TcpStream, String>> =
        cs.iter().map(|c| open(c.addr, echo)).collect();
    let cpu0: Vec<f64> = cs.iter().map(|c| (c.cpu)()).collect();
    let mut lat: Vec<Vec<f64>> = cs.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut busy = vec![0.0f64; cs.len()];
    let msg = [7u8; 32];
    let mut back = [0u8; 32];
    for slice in 0..slices {
        let count = n / slices + usize::from(slice < n % slices);
        for (i, s) in sessions.iter_mut().enumerate() {
            let Ok(stream) = s else { continue };
            let start = Instant::now();
            let mut failed = None;
            for _ in 0..count {
                let t0 = Instant::now();
                let r = std::io::Write::write_all(stream, &msg)
                    .and_then(|()| stream.read_exact(&mut back));
                if let Err(e) = r {
                    failed = Some(e.to_string());
                    break;
                }
                lat[i].push(t0.elapsed().as_secs_f64() * 1e6);
            }
            busy[i] += start.elapsed().as_secs_f64();
            if let Some(e) = failed {
                *s = Err(e);
            }
        }
    }
    sessions
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s?;
            let used = (cs[i].cpu)() - cpu0[i];
            let done = lat[i].len();
            Ok(Sample {
                rate: done as f64 / busy[i],
                p50_us: percentile(&mut lat[i], 0.5),
                p99_us: percentile(&mut lat[i], 0.99),
                cpu_us_per_op: used * 1e6 / done as f64,
                ..Sample::default()
            })
        })
        .collect()
}
