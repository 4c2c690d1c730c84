//! The `bw1`, `bw10` and `bw100` scenarios: 1, 10 or 100 sessions send as fast as they can
//! through a rule with `bandwidth:` (proxy `rsockd-bw`), and a sink counts what arrives over
//! a few seconds. Rate: the sessions' MB/s together, to hold against the rule's limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::scenarios::{open, Sample};

/// The limit `rsockd-bw` is started with, in bytes per second.
pub const LIMIT: u64 = 50_000_000;

/// A target that reads and discards, counting every byte.
pub fn sink() -> std::io::Result<(SocketAddr, Arc<AtomicU64>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Ok((addr, count))
}

/// `sessions` writers for a warm-up and then `secs` measured; MB/s arrived at the sink and
/// the proxy's CPU-µs per MB.
pub fn paced(
    proxy: Option<SocketAddr>,
    sink: &(SocketAddr, Arc<AtomicU64>),
    sessions: usize,
    secs: f64,
    cpu: &dyn Fn() -> f64,
) -> Result<Sample, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..sessions {
        let mut s = open(proxy, sink.0)?;
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let chunk = vec![7u8; 64 << 10];
            while !stop.load(Ordering::Relaxed) {
                match s.write(&chunk) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(700));
    let (b0, c0, t0) = (sink.1.load(Ordering::Relaxed), cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (b1, c1, took) = (
        sink.1.load(Ordering::Relaxed),
        cpu(),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let mb = (b1 - b0) as f64 / 1e6;
    Ok(Sample {
        rate: mb / took,
        // cpu() counts seconds.
        cpu_us_per_op: if mb > 0.0 { (c1 - c0) * 1e6 / mb } else { 0.0 },
        ..Sample::default()
    })
}
