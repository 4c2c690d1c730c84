//! `bandwidth:` through the real binary: the rate a rule's sessions get together, measured at
//! the target over a few seconds, for 1 and for 20 sessions (with a generous band: machines
//! are noisy), and that no session of the 20 starves. Loads are bounded in bytes and time.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const RATE: u64 = 2_000_000;

/// A target that reads and counts what each connection sends, in accept order.
fn sink() -> (SocketAddr, Arc<Mutex<Vec<Arc<AtomicU64>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts: Arc<Mutex<Vec<Arc<AtomicU64>>>> = Arc::default();
    let c = counts.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let n = Arc::new(AtomicU64::new(0));
            c.lock().unwrap().push(n.clone());
            thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 65536];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n.fetch_add(k as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, counts)
}

/// `sessions` clients send as fast as they can for `secs` (plus a warm-up); the bytes the
/// target got per session during the measured window.
fn measure(proxy: SocketAddr, sessions: usize, secs: f64) -> Vec<u64> {
    let (target, counts) = sink();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..sessions)
        .map(|_| {
            let (mut s, rep) = socks5_connect(proxy, target);
            assert_eq!(rep, 0);
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let stop = stop.clone();
            thread::spawn(move || {
                let chunk = vec![7u8; 16 << 10];
                while !stop.load(Ordering::Relaxed) {
                    match s.write(&chunk) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts.lock().unwrap().len() < sessions {
        assert!(
            Instant::now() < deadline,
            "not every session reached the target"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Let socket buffers fill and the pace settle, then measure.
    thread::sleep(Duration::from_millis(700));
    let snap = |c: &Arc<Mutex<Vec<Arc<AtomicU64>>>>| -> Vec<u64> {
        c.lock()
            .unwrap()
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    };
    let before = snap(&counts);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    let after = snap(&counts);
    let took = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    after
        .iter()
        .zip(&before)
        .map(|(a, b)| ((a - b) as f64 * secs / took) as u64)
        .collect()
}

fn start(bandwidth: &str) -> Server {
    Server::start(&base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 }}\nsocks pass {{ from: 0/0 to: 0/0 {bandwidth} }}\n"
    )))
}

#[test]
fn one_session_gets_the_rules_rate() {
    let srv = start(&format!("bandwidth: {RATE}"));
    let secs = 3.0;
    let got: u64 = measure(srv.addr, 1, secs).iter().sum();
    let rate = got as f64 / secs;
    eprintln!("1 session: {rate:.0} bytes/s of {RATE}");
    assert!(
        rate > RATE as f64 * 0.7 && rate < RATE as f64 * 1.25,
        "1 session: {rate:.0} bytes/s for a limit of {RATE}"
    );
}

#[test]
fn twenty_sessions_share_the_rate_and_none_starves() {
    let srv = start(&format!("bandwidth: {RATE}"));
    let secs = 3.0;
    let got = measure(srv.addr, 20, secs);
    let total: u64 = got.iter().sum();
    let rate = total as f64 / secs;
    eprintln!("20 sessions: {rate:.0} bytes/s of {RATE}; per session {got:?}");
    assert!(
        rate > RATE as f64 * 0.7 && rate < RATE as f64 * 1.25,
        "20 sessions: {rate:.0} bytes/s for a limit of {RATE}"
    );
    let fair = total / 20;
    assert!(
        got.iter().all(|&g| g > fair / 4),
        "a session got less than a quarter of its share: {got:?}"
    );
}

#[test]
fn without_bandwidth_the_rate_is_not_held_back() {
    // The same load through a rule without `bandwidth:` runs far past the limit above.
    let srv = start("");
    let got: u64 = measure(srv.addr, 1, 1.0).iter().sum();
    assert!(got > RATE * 5, "{got} bytes/s without a limit");
}

#[test]
fn both_directions_pay_and_the_dump_names_the_rate() {
    let srv = start("bandwidth: 100000");
    let echo = echo_server();
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    // 50,000 bytes out and the same back: 100,000 bytes at 100,000 bytes/s take about a
    // second (not half of one, as one direction alone would).
    let data = vec![1u8; 50_000];
    let t0 = Instant::now();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&data).unwrap());
    let mut back = vec![0u8; 50_000];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert!(took > 0.7, "both ways took {took:.2} s");
    srv.signal(10);
    srv.wait_log("the dump", 10, |t| {
        t.contains("socks-rule #1: bandwidth 100000 bytes/s")
    });
}

/// UDP counts against the control connection's rule: 100 datagrams of 1,000 bytes out and
/// echoed back are 200,000 bytes, two seconds at 100,000 bytes/s.
#[test]
fn udp_associations_pay_too() {
    use std::net::UdpSocket;
    let srv = start("bandwidth: 100000");
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let mut control = std::net::TcpStream::connect(srv.addr).unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    control
        .write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut sel = [0u8; 2];
    control.read_exact(&mut sel).unwrap();
    let mut reply = [0u8; 10];
    control.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "UDP ASSOCIATE admitted");
    let relay = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let SocketAddr::V4(t) = echo_addr else {
        panic!()
    };
    let mut dgram = vec![0, 0, 0, 1];
    dgram.extend_from_slice(&t.ip().octets());
    dgram.extend_from_slice(&t.port().to_be_bytes());
    dgram.extend_from_slice(&[9u8; 1000]);
    let t0 = Instant::now();
    // Sent in small groups, so the client's socket never overflows while the relay waits.
    let mut back = 0;
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        for _ in 0..5 {
            client.send_to(&dgram, relay).unwrap();
        }
        for _ in 0..5 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(n, dgram.len());
            back += 1;
        }
    }
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(back, 100);
    assert!(
        (1.4..4.0).contains(&took),
        "200,000 bytes at 100,000 bytes/s took {took:.2} s"
    );
}
