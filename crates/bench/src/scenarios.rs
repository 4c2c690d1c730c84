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
    })
}
