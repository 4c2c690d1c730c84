//! Server chaining (`route { ... via: ... }`) through real upstreams on loopback: Debian's
//! danted (SOCKS5 and SOCKS4), microsocks (SOCKS5), and an HTTP CONNECT proxy written here;
//! each upstream leaves from an address of its own, so the target tells who connected. Also
//! the refusals (no route, an upstream's 504), failover past a dead upstream without a failed
//! request, routes marked bad, and names passed upstream as names.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::procs::wait_until;
use common::*;

const LOGGED: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n";

/// microsocks on a free port, leaving from `out`; killed on drop.
struct Microsocks {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn microsocks(out: Ipv4Addr) -> Microsocks {
    assert!(
        tool("microsocks"),
        "microsocks is required (scripts/deps.sh)"
    );
    let port = free_tcp_port("127.0.0.1");
    let child = Command::new("microsocks")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-b",
            &out.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("microsocks listening", 10, || {
        TcpStream::connect(addr).is_ok()
    });
    Microsocks { child, addr }
}

/// An HTTP CONNECT proxy: answers `504` for authorities starting with `fail`, else connects
/// from `out` and relays. Every request head it got is kept.
fn http_proxy(out: Ipv4Addr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = seen2.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                seen.lock().unwrap().push(head.clone());
                let authority = head.split(' ').nth(1).unwrap_or("").to_string();
                let mut c = c;
                // Port 9 (discard) stands for a target the proxy cannot reach, for servers
                // that send addresses.
                if authority.starts_with("fail") || authority.ends_with(":9") {
                    let _ = c.write_all(b"HTTP/1.0 504 Gateway Timeout\r\n\r\n");
                    return;
                }
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                sock.bind(&SocketAddr::from((out, 0)).into()).unwrap();
                let target: SocketAddr = match authority.parse() {
                    Ok(a) => a,
                    Err(_) => {
                        let _ = c.write_all(b"HTTP/1.0 502 Bad Gateway\r\n\r\n");
                        return;
                    }
                };
                if sock.connect(&target.into()).is_err() {
                    let _ = c.write_all(b"HTTP/1.0 502 Bad Gateway\r\n\r\n");
                    return;
                }
                let t: TcpStream = sock.into();
                let _ = c.write_all(b"HTTP/1.0 200 Connection established\r\n\r\n");
                let (mut t2, mut c2) = (t.try_clone().unwrap(), c.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut t2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut c, &mut &t);
                let _ = t.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

/// A SOCKS5 CONNECT through `proxy` to `target` (an address or a name); the reply code and,
/// on success, what the target wrote back.
fn connect(proxy: SocketAddr, host: &str, port: u16) -> (u8, String) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    let mut req = vec![5, 1, 0];
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => {
            req.push(1);
            req.extend(ip.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(host.len() as u8);
            req.extend(host.as_bytes());
        }
    }
    req.extend(port.to_be_bytes());
    s.write_all(&req).unwrap();
    let rep = read_socks5_reply(&mut s);
    let mut text = String::new();
    if rep == 0 {
        let _ = s.read_to_string(&mut text);
    }
    (rep, text)
}

#[test]
fn connect_through_socks5_socks4_and_http_upstreams() {
    let (ms_out, d5_out, d4_out, http_out) = (
        next_loopback(),
        next_loopback(),
        next_loopback(),
        next_loopback(),
    );
    let ms = microsocks(ms_out);
    let d5 =
        Danted::start_with_external(&d5_out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let d4 =
        Danted::start_with_external(&d4_out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let (hp, heads) = http_proxy(http_out);
    let targets: Vec<SocketAddr> = (0..4).map(|_| peer_reporter(Ipv4Addr::LOCALHOST)).collect();
    let via = |i: usize, up: SocketAddr, proto: &str| {
        format!(
            "route {{ from: 0/0 to: 127.0.0.1/32 port = {} via: {} port = {} proxyprotocol: {proto} }}\n",
            targets[i].port(),
            up.ip(),
            up.port()
        )
    };
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}{}{}{}{}",
        via(0, ms.addr, "socks_v5"),
        via(1, d5.addr, "socks_v5"),
        via(2, d4.addr, "socks_v4"),
        via(3, hp, "http")
    )));
    let want = [ms_out, d5_out, d4_out, http_out];
    for (i, t) in targets.iter().enumerate() {
        let (rep, seen) = connect(srv.addr, "127.0.0.1", t.port());
        assert_eq!(rep, 0, "route {}", i + 1);
        assert_eq!(
            seen,
            want[i].to_string(),
            "the target saw upstream {}",
            i + 1
        );
    }
    assert!(heads.lock().unwrap()[0].starts_with(&format!("CONNECT {} HTTP/1.0\r\n", targets[3])));
    // Dante's connect line for a chained session: `local upstream [bound] target`.
    let t = srv.wait_log("a chained connect line", 10, |t| {
        t.contains(&format!(" {} [", dante_addr(ms.addr)))
    });
    let line = t
        .lines()
        .find(|l| l.contains("tcp/connect [: ") && l.contains(&dante_addr(ms.addr)))
        .unwrap();
    assert!(
        line.ends_with(&format!(
            "{} [0.0.0.0.0] {}",
            dante_addr(ms.addr),
            dante_addr(targets[0])
        )),
        "{line}"
    );
    // No route for this target: Dante's refusal, reply 03.
    let other = peer_reporter(Ipv4Addr::LOCALHOST);
    assert_eq!(connect(srv.addr, "127.0.0.1", other.port()).0, 3);
    srv.wait_log("the no-route line", 10, |t| {
        t.contains("no usable serverchain route to target found")
    });
    assert_serving_route(&srv, targets[0], ms_out);
}

fn assert_serving_route(srv: &Server, target: SocketAddr, out: Ipv4Addr) {
    let (rep, seen) = connect(srv.addr, "127.0.0.1", target.port());
    assert_eq!((rep, seen), (0, out.to_string()));
}

/// danted and rsockd behind the same route table: the same replies, and the target seeing
/// the same upstream, for a target chained through each upstream kind (SOCKS5: microsocks,
/// SOCKS4: danted, HTTP CONNECT), an unrouted target (03), and an upstream's 504 (05).
#[test]
fn replies_match_danted() {
    let (ms_out, d4_out, http_out) = (next_loopback(), next_loopback(), next_loopback());
    let ms = microsocks(ms_out);
    let d4 =
        Danted::start_with_external(&d4_out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let (hp, _) = http_proxy(http_out);
    let targets: Vec<SocketAddr> = (0..3).map(|_| peer_reporter(Ipv4Addr::LOCALHOST)).collect();
    let unrouted = peer_reporter(Ipv4Addr::LOCALHOST);
    let via = |t: SocketAddr, up: SocketAddr, proto: &str| {
        format!(
            "route {{ from: 0/0 to: 127.0.0.1/32 port = {} via: {} port = {} proxyprotocol: {proto} }}\n",
            t.port(),
            up.ip(),
            up.port()
        )
    };
    let routes = format!(
        "{}{}{}{}route {{ from: 0/0 to: .fail.test via: 127.0.0.1 port = {} proxyprotocol: http }}\n",
        via(targets[0], ms.addr, "socks_v5"),
        via(targets[1], d4.addr, "socks_v4"),
        via(targets[2], hp, "http"),
        via(SocketAddr::from(([127, 0, 0, 1], 9)), hp, "http"),
        hp.port()
    );
    let d = Danted::start(&format!("socksmethod: none\n{LOGGED}{routes}"));
    let srv = Server::start(&base_config(&format!("{LOGGED}{routes}")));
    let mut got = Vec::new();
    for p in [d.addr, srv.addr] {
        let mut row: Vec<(u8, String)> = targets
            .iter()
            .map(|t| connect(p, "127.0.0.1", t.port()))
            .collect();
        row.push(connect(p, "127.0.0.1", unrouted.port()));
        row.push(connect(p, "127.0.0.1", 9));
        got.push(row);
    }
    let want = vec![
        (0, ms_out.to_string()),
        (0, d4_out.to_string()),
        (0, http_out.to_string()),
        (3, String::new()),
        (5, String::new()),
    ];
    assert_eq!(got[1], want, "rsockd");
    // danted 1.4.2 answers 0 through SOCKS4 and HTTP upstreams but now and then loses what
    // the target sends at once (observed: it seems to read past the upstream's reply). The
    // reply codes agree; its data is either whole or missing, never other.
    for (i, (d, r)) in got[0].iter().zip(&got[1]).enumerate() {
        assert_eq!(d.0, r.0, "reply code of row {i}, danted vs rsockd");
        assert!(
            d.1 == r.1 || d.1.is_empty(),
            "row {i}: danted got {:?}",
            d.1
        );
    }
    for t in [d.log_text(), srv.log_text()] {
        assert!(
            t.contains(
                "serverchain failed: response code 504 from http server indicates failure: \
                 \"HTTP/1.0 504 Gateway Timeout\""
            ),
            "{t}"
        );
    }
    // A name (Dante cannot resolve `x.fail.test` to get there; we pass it upstream).
    assert_eq!(connect(srv.addr, "fail.x.fail.test", 80).0, 5);
}

/// A name this host cannot resolve reaches the upstream as a name: a SOCKS5 domain, a
/// SOCKS4a name, an HTTP authority (the bytes the fake upstreams received).
#[test]
fn unresolvable_names_go_upstream_as_names() {
    // Fake SOCKS upstreams: record the request, answer success, then say "ok".
    fn fake(v4: bool) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut c = c;
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = vec![0u8; 600];
                if !v4 {
                    let n = c.read(&mut buf).unwrap_or(0);
                    let _ = n;
                    let _ = c.write_all(&[5, 0]);
                }
                let n = c.read(&mut buf).unwrap_or(0);
                let _ = tx.send(buf[..n].to_vec());
                if v4 {
                    let _ = c.write_all(&[0, 90, 0, 0, 0, 0, 0, 0]);
                } else {
                    let _ = c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
                }
                let _ = c.write_all(b"ok");
            }
        });
        (addr, rx)
    }
    let (u5, r5) = fake(false);
    let (u4, r4) = fake(true);
    let (hp, heads) = http_proxy(next_loopback());
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}\
         route {{ from: 0/0 to: .five.invalid via: 127.0.0.1 port = {} proxyprotocol: socks_v5 }}\n\
         route {{ from: 0/0 to: .four.invalid via: 127.0.0.1 port = {} proxyprotocol: socks_v4 }}\n\
         route {{ from: 0/0 to: .http.invalid via: 127.0.0.1 port = {} proxyprotocol: http }}\n",
        u5.port(),
        u4.port(),
        hp.port()
    )));
    assert_eq!(connect(srv.addr, "a.five.invalid", 443), (0, "ok".into()));
    let req = r5.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut want = vec![5, 1, 0, 3, 14];
    want.extend(b"a.five.invalid");
    want.extend(443u16.to_be_bytes());
    assert_eq!(req, want, "a SOCKS5 domain address");
    assert_eq!(connect(srv.addr, "b.four.invalid", 80), (0, "ok".into()));
    let req = r4.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut want = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
    want.extend(b"b.four.invalid\0");
    assert_eq!(req, want, "SOCKS4a");
    // The HTTP proxy cannot resolve it either: 502, but it got the authority.
    assert_eq!(connect(srv.addr, "c.http.invalid", 8080).0, 5);
    assert!(
        heads.lock().unwrap()[0].starts_with("CONNECT c.http.invalid:8080 HTTP/1.0\r\n"),
        "{:?}",
        heads.lock().unwrap()
    );
    // Without a route for it, an unresolvable name fails as it always did (04).
    assert_eq!(connect(srv.addr, "d.nowhere.invalid", 80).0, 4);
}

/// Two routes for the same target: the first upstream is dead, so each request goes on to
/// the second without failing; after `route.maxfail` failures the first is marked bad and no
/// longer tried, until `route.badexpire` passes.
#[test]
fn failover_and_bad_routes() {
    let out = next_loopback();
    let ms = microsocks(out);
    // An upstream that accepts and hangs up at once (counted).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(0u32));
    let h2 = hits.clone();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            *h2.lock().unwrap() += 1;
            drop(c);
        }
    });
    let target = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&base_config(&format!(
        "route.maxfail: 2\nroute.badexpire: 2\n{LOGGED}\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n",
        dead.port(),
        ms.addr.port()
    )));
    for _ in 0..4 {
        assert_eq!(
            connect(srv.addr, "127.0.0.1", target.port()),
            (0, out.to_string())
        );
    }
    assert_eq!(*hits.lock().unwrap(), 2, "tried until marked bad");
    srv.wait_log("the blacklisting", 10, |t| {
        t.contains("socks_blacklist(): blacklisting route #1.  Reason: ")
    });
    // SIGUSR1 shows it.
    srv.signal(10);
    srv.wait_log("the route state", 10, |t| t.contains("route #1: bad for "));
    // After route.badexpire it is tried again.
    thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        connect(srv.addr, "127.0.0.1", target.port()),
        (0, out.to_string())
    );
    assert_eq!(*hits.lock().unwrap(), 3);
}

/// Route health is the whole server's (it lives in the scoreboard): with two mothers taking
/// clients, the dead upstream is tried once, by whichever mother met it first; the other
/// skips it from then on. Then the live upstream is killed mid-run and the server goes on
/// with a third route: no client request fails.
#[test]
fn route_marks_are_shared_and_failover_survives_a_kill() {
    let out = next_loopback();
    let out3 = next_loopback();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(0u32));
    let h2 = hits.clone();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            *h2.lock().unwrap() += 1;
            drop(c);
        }
    });
    let ms = microsocks(out);
    let ms3 = microsocks(out3);
    let target = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start_with(
        &base_config(&format!(
            "route.maxfail: 1\nroute.badexpire: 600\n{LOGGED}\
             route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n\
             route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n\
             route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n",
            dead.port(),
            ms.addr.port(),
            ms3.addr.port()
        )),
        &["-N", "2"],
    );
    let accepting_pids = |srv: &Server| {
        let mut pids: Vec<i32> = srv
            .log_text()
            .lines()
            .filter(|l| l.contains("tcp/accept [: "))
            .filter_map(line_pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids.len()
    };
    let mut n = 0;
    while n < 200 && (n < 10 || accepting_pids(&srv) < 2) {
        assert_eq!(
            connect(srv.addr, "127.0.0.1", target.port()),
            (0, out.to_string())
        );
        n += 1;
    }
    assert!(accepting_pids(&srv) >= 2, "both mothers took clients");
    assert_eq!(
        *hits.lock().unwrap(),
        1,
        "the dead upstream was tried once in all"
    );
    // The dump (every mother's) shows the shared mark.
    srv.signal(10);
    srv.wait_log("the route state", 10, |t| {
        t.matches("route #1: bad for ").count() >= 2
    });
    // Clients in a loop while the live upstream dies: each request that meets the dead one
    // goes on to route #3 within itself.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, addr, port) = (stop.clone(), srv.addr, target.port());
    let clients = thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..2000 {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            seen.push(connect(addr, "127.0.0.1", port));
        }
        seen
    });
    thread::sleep(Duration::from_millis(300));
    drop(ms);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = clients.join().unwrap();
    assert!(seen.iter().all(|(rep, _)| *rep == 0), "a request failed");
    assert!(seen.iter().any(|(_, o)| *o == out.to_string()));
    assert_eq!(seen.last().unwrap().1, out3.to_string());
    srv.wait_log("the second mark", 10, |t| {
        t.contains("socks_blacklist(): blacklisting route #2.  Reason: ")
    });
}

/// A BIND or UDP ASSOCIATE for 0.0.0.0:0 through `proxy`: the stream and the reply.
fn socks5_request(proxy: SocketAddr, cmd: u8) -> (TcpStream, u8, Option<SocketAddr>) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 0, 5, cmd, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    let (rep, bnd) = read_socks5_reply_bound(&mut s);
    (s, rep, bnd)
}

/// BIND and UDP ASSOCIATE go only through SOCKS5 upstreams: with an HTTP route alone they
/// need a matching `via: direct` route, else they are refused with Dante's words.
#[test]
fn udp_and_bind_need_socks5_or_a_direct_route() {
    let http_only = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = 1 proxyprotocol: http }}\n"
    )));
    assert_ne!(socks5_request(http_only.addr, 3).1, 0);
    assert_ne!(socks5_request(http_only.addr, 2).1, 0);
    http_only.wait_log("the refusal", 10, |t| {
        t.contains(
            "serverchain failed: command udpassociate is not supported by serverchaining and no \
             direct route found",
        )
    });
    let with_direct = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 command: udpassociate bind via: direct }}\n\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = 1 }}\n"
    )));
    assert_eq!(socks5_request(with_direct.addr, 3).1, 0);
    assert_eq!(socks5_request(with_direct.addr, 2).1, 0);
    // A SOCKS5 upstream that is down: the request fails with the upstream's error, and the
    // route is marked bad (Dante's route.maxfail 1), so the next finds no usable route.
    let down = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = 1 }}\n"
    )));
    assert_eq!(socks5_request(down.addr, 2).1, 5);
    assert_eq!(socks5_request(down.addr, 3).1, 3);
    down.wait_log("the upstream's failure", 10, |t| {
        t.contains("tcp/bind ]: ")
            && t.contains("serverchain failed: connect to proxy server 127.0.0.1.1 failed: ")
            && t.contains("udp/udpassociate ]: ")
            && t.contains("no usable serverchain route to target found")
    });
}

/// A UDP target on `ip` that answers each datagram with `from IP:PORT ` and the datagram.
fn udp_reporter(ip: Ipv4Addr) -> SocketAddr {
    let sock = std::net::UdpSocket::bind((ip, 0)).unwrap();
    let addr = sock.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut back = format!("from {from} ").into_bytes();
            back.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&back, from);
        }
    });
    addr
}

fn udp_header(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(t) = target else { panic!() };
    let mut d = vec![0, 0, 0, 1];
    d.extend(t.ip().octets());
    d.extend(t.port().to_be_bytes());
    d
}

/// BIND and UDP ASSOCIATE through SOCKS5 upstreams (danted, and a second rsockd), beyond
/// Dante: the first BIND reply names the upstream's listening address and the peer's
/// connection reaches our client; datagrams leave from the upstream's address, replies come
/// back with the target's address, and our own per-datagram rules still hold.
#[test]
fn bind_and_udp_through_socks5_upstreams() {
    let (d_out, r_out) = (next_loopback(), next_loopback());
    let danted =
        Danted::start_with_external(&d_out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let inner = Server::start(&format!(
        "internal: {{IP}} port = 0\nexternal: {r_out}\nsocksmethod: none\n{LOGGED}"
    ));
    let blocked = udp_reporter(Ipv4Addr::new(127, 0, 0, 9));
    for (name, up, out) in [
        ("danted", danted.addr, d_out),
        ("rsockd", inner.addr, r_out),
    ] {
        let srv = Server::start(&base_config(&format!(
            "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
             socks block {{ from: 0/0 to: 127.0.0.9/32 command: udpassociate log: connect error }}\n\
             socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
             route {{ from: 0/0 to: 0/0 via: {} port = {} command: bind udpassociate }}\n",
            up.ip(),
            up.port()
        )));
        // BIND: the upstream listens, on its external address.
        let (mut c, rep, bnd) = socks5_request(srv.addr, 2);
        assert_eq!(rep, 0, "{name}: first BIND reply");
        let bnd = bnd.unwrap();
        assert_eq!(bnd.ip(), out, "{name}: the upstream's listening address");
        let mut peer = TcpStream::connect(bnd).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (rep, from) = read_socks5_reply_bound(&mut c);
        assert_eq!(rep, 0, "{name}: second BIND reply");
        assert_eq!(from, Some(peer.local_addr().unwrap()), "{name}: the peer");
        peer.write_all(b"from-peer").unwrap();
        let mut got = [0u8; 9];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"from-peer");
        c.write_all(b"from-client").unwrap();
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"from-client");
        drop(c);
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
        assert!(rest.is_empty());

        // UDP: our relay is announced; the target sees the upstream.
        let (ctl, rep, relay) = socks5_request(srv.addr, 3);
        assert_eq!(rep, 0, "{name}: UDP ASSOCIATE");
        let relay = relay.unwrap();
        assert_eq!(relay.ip(), srv.ip, "{name}: our own relay is announced");
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let target = udp_reporter(Ipv4Addr::LOCALHOST);
        for i in 0..3 {
            let mut d = udp_header(target);
            d.extend(format!("dgram-{i}").as_bytes());
            u.send_to(&d, relay).unwrap();
            let mut buf = [0u8; 2048];
            let (n, _) = u.recv_from(&mut buf).unwrap();
            assert_eq!(
                &buf[..10],
                &udp_header(target)[..],
                "{name}: the reply's header"
            );
            let text = String::from_utf8_lossy(&buf[10..n]).to_string();
            assert!(
                text.starts_with(&format!("from {out}:")) && text.ends_with(&format!(" dgram-{i}")),
                "{name}: {text}"
            );
        }
        // Our rules hold per datagram: the blocked target gets nothing, and says nothing.
        let mut d = udp_header(blocked);
        d.extend(b"never");
        u.send_to(&d, relay).unwrap();
        srv.wait_log("the blocked datagram", 10, |t| {
            t.contains("block(1): udp/udpassociate")
        });
        let mut d = udp_header(target);
        d.extend(b"still");
        u.send_to(&d, relay).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = u.recv_from(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[10..n]).ends_with(" still"),
            "{name}"
        );
        drop(ctl);
        srv.wait_log("the association's end", 10, |t| {
            t.contains("udp/udpassociate ]: ") && t.contains("local client closed")
        });
    }
}

/// `method: username` in a route: the client's own name and password go to the upstream
/// (Dante's behaviour), here danted checking them against the system's accounts.
#[test]
fn route_forwards_the_clients_credentials() {
    rsockd_testkit::require_root!();
    let user = rsockd_testkit::TestUser::new("route");
    let out = next_loopback();
    let d = Danted::start_with_external(
        &out.to_string(),
        &format!("socksmethod: username\n{LOGGED}"),
    );
    let target = peer_reporter(Ipv4Addr::LOCALHOST);
    let srv = Server::start(&format!(
        "internal: {{IP}} port = 0\nexternal: 127.0.0.1\nsocksmethod: username\n\
         user.privileged: root\nuser.unprivileged: nobody\n{LOGGED}\
         route {{ from: 0/0 to: 0/0 via: {} port = {} method: username }}\n",
        d.addr.ip(),
        d.addr.port()
    ));
    let login = |pw: &str| {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&[5, 1, 2]).unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).unwrap();
        assert_eq!(m, [5, 2]);
        let mut a = vec![1, user.name.len() as u8];
        a.extend(user.name.as_bytes());
        a.push(pw.len() as u8);
        a.extend(pw.as_bytes());
        s.write_all(&a).unwrap();
        let mut st = [0u8; 2];
        s.read_exact(&mut st).unwrap();
        if st[1] != 0 {
            return (st[1], String::new());
        }
        let SocketAddr::V4(t) = target else { panic!() };
        let mut req = vec![5, 1, 0, 1];
        req.extend(t.ip().octets());
        req.extend(t.port().to_be_bytes());
        s.write_all(&req).unwrap();
        let rep = read_socks5_reply(&mut s);
        let mut text = String::new();
        if rep == 0 {
            let _ = s.read_to_string(&mut text);
        }
        (rep, text)
    };
    assert_eq!(login(&user.password), (0, out.to_string()));
    // danted logged the user we forwarded.
    wait_until("danted's line", 10, || {
        d.log_text().contains(&format!("username%{}@", user.name))
    });
    // A wrong password stops at our own check.
    assert_eq!(login("wrong").0, 1);
}

/// `rsockd.route.credentials:` (our extension): a route with `method: username` gives the
/// upstream the name and password the root-only file holds for it, whoever the client is
/// (here a client with method none), through the auth helper, as mothers cannot read the file;
/// the password is in no log line; a SIGHUP re-reads the
/// file. A file others may read, or a bad line, stops the start with the file and line.
#[test]
fn route_credentials_from_a_root_only_file() {
    use std::os::unix::fs::PermissionsExt;
    rsockd_testkit::require_root!();
    let user = rsockd_testkit::TestUser::new("rcred");
    let out = next_loopback();
    let d = Danted::start_with_external(
        &out.to_string(),
        &format!("socksmethod: username\n{LOGGED}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("route.credentials");
    let write = |text: &str, mode: u32| {
        std::fs::write(&creds, text).unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let line = |pw: &str| {
        format!(
            "# upstreams\n{}:{} {}:{pw}\n",
            d.addr.ip(),
            d.addr.port(),
            user.name
        )
    };
    // Mothers run as nobody: only the auth helper (root) can read the file.
    let conf = format!(
        "user.privileged: root\nuser.unprivileged: nobody\n\
         rsockd.route.credentials: {}\n{LOGGED}\
         route {{ from: 0/0 to: 0/0 via: {} port = {} method: username }}\n",
        creds.display(),
        d.addr.ip(),
        d.addr.port()
    );
    // Refused at start: readable by others, then a bad line (named, without the password).
    write(&line(&user.password), 0o644);
    let e = Server::try_start(&base_config(&conf), &[]).err().unwrap();
    assert!(
        e.contains("must be readable by root alone (mode 644; chmod 600)"),
        "{e}"
    );
    write(
        &format!("{}broken-line {}\n", line(&user.password), user.password),
        0o600,
    );
    let e = Server::try_start(&base_config(&conf), &[]).err().unwrap();
    assert!(
        e.contains(&format!("{}:3: expected", creds.display())),
        "{e}"
    );
    assert!(!e.contains(&user.password), "{e}");
    write(&line(&user.password), 0o600);
    let srv = Server::start(&base_config(&conf));
    let target = peer_reporter(Ipv4Addr::LOCALHOST);
    assert_eq!(
        connect(srv.addr, "127.0.0.1", target.port()),
        (0, out.to_string())
    );
    wait_until("danted's line", 10, || {
        d.log_text().contains(&format!("username%{}@", user.name))
    });
    // A changed file is read again on SIGHUP: a wrong password is now refused upstream.
    write(&line("not-the-password"), 0o600);
    srv.signal(1);
    srv.wait_log("the reload", 10, |t| {
        t.contains("route credentials ") && t.matches(" loaded: 1 upstream(s)").count() >= 2
    });
    assert_ne!(connect(srv.addr, "127.0.0.1", target.port()).0, 0);
    let log = srv.log_text();
    assert!(
        log.contains("proxy server refused the username/password"),
        "{log}"
    );
    assert!(
        !log.contains(&user.password) && !log.contains("not-the-password"),
        "{log}"
    );
}

/// `external: 2001:db8:1::/64` with `external.rotation: random` and `user` (our extension):
/// inside a network namespace of the test's own, where the prefix is routed to `lo`, a
/// target records the source address of every session.
#[test]
fn outgoing_addresses_from_a_prefix() {
    assert!(
        rsockd_testkit::is_root() && tool("unshare") && tool("python3"),
        "root, unshare and python3 are required"
    );
    let (_users_dir, users) = password_file(&[("alice", "pw-a"), ("bob", "pw-b")]);
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client.py");
    std::fs::write(
        &client,
        r#"
import socket, struct, sys, threading, time
mode = sys.argv[1]
t = socket.socket(socket.AF_INET6); t.bind(("::1", 0)); t.listen(64)
tport = t.getsockname()[1]
def serve():
    while True:
        c, a = t.accept(); c.sendall(a[0].encode()); c.close()
threading.Thread(target=serve, daemon=True).start()
def session(user=None, pw=None):
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", 40999), timeout=10); break
        except OSError:
            time.sleep(0.1)
    if user:
        s.sendall(b"\x05\x01\x02"); assert s.recv(2) == b"\x05\x02"
        s.sendall(bytes([1, len(user)]) + user.encode() + bytes([len(pw)]) + pw.encode())
        assert s.recv(2) == b"\x01\x00"
    else:
        s.sendall(b"\x05\x01\x00"); assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">H", tport))
    r = s.recv(22); assert r[1] == 0, r
    data = b""
    while True:
        d = s.recv(100)
        if not d: break
        data += d
    return data.decode()
if mode == "random":
    for _ in range(10): print("SRC", session(), flush=True)
else:
    for u, p in [("alice", "pw-a"), ("bob", "pw-b"), ("alice", "pw-a"), ("bob", "pw-b")]:
        print("SRC", u, session(u, p), flush=True)
"#,
    )
    .unwrap();
    let run = |mode: &str, methods: &str| -> Vec<String> {
        let conf = dir.path().join(format!("{mode}.conf"));
        std::fs::write(
            &conf,
            format!(
                "logoutput: {}/{mode}.log\ninternal: 127.0.0.1 port = 40999\n\
                 external: 2001:db8:1::/64\nexternal.rotation: {mode}\n{methods}\n{LOGGED}",
                dir.path().display()
            ),
        )
        .unwrap();
        let script = format!(
            "ip link set lo up && ip -6 route add local 2001:db8:1::/64 dev lo && \
             ({BIN} -f {} & echo $! > {}/pid) && timeout 60 python3 {} {mode}; \
             kill $(cat {}/pid)",
            conf.display(),
            dir.path().display(),
            client.display(),
            dir.path().display()
        );
        let out = Command::new("timeout")
            .args(["90", "unshare", "--net", "sh", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("SRC ").map(str::to_string))
            .collect();
        assert!(
            !lines.is_empty(),
            "{mode}: {text}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join(format!("{mode}.log"))).unwrap_or_default()
        );
        lines
    };
    // 2001:db8:1::/64: the first four 16-bit groups.
    let in_prefix = |a: &std::net::Ipv6Addr| a.segments()[..4] == [0x2001, 0xdb8, 1, 0];
    let random = run("random", "socksmethod: none");
    assert_eq!(random.len(), 10, "{random:?}");
    let distinct: std::collections::HashSet<&String> = random.iter().collect();
    for a in &random {
        assert!(in_prefix(&a.parse().unwrap()), "{a}");
    }
    assert!(
        distinct.len() >= 9,
        "a fresh address per session: {random:?}"
    );
    let per_user = run(
        "user",
        &format!(
            "socksmethod: username\nrsockd.users.file: {}",
            users.display()
        ),
    );
    assert_eq!(per_user.len(), 4, "{per_user:?}");
    let addr_of = |l: &String| l.split(' ').nth(1).unwrap().to_string();
    assert_eq!(
        addr_of(&per_user[0]),
        addr_of(&per_user[2]),
        "alice keeps hers"
    );
    assert_eq!(
        addr_of(&per_user[1]),
        addr_of(&per_user[3]),
        "bob keeps his"
    );
    assert_ne!(addr_of(&per_user[0]), addr_of(&per_user[1]));
    for l in &per_user {
        assert!(in_prefix(&addr_of(l).parse().unwrap()), "{l}");
    }
}

/// A SOCKS4 client's BIND through a SOCKS5 upstream: both replies are SOCKS4's, the first
/// naming the upstream's listening address, the second the peer; then bytes both ways.
#[test]
fn socks4_bind_through_a_socks5_upstream() {
    let out = next_loopback();
    let d = Danted::start_with_external(&out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: {} port = {} }}\n",
        d.addr.ip(),
        d.addr.port()
    )));
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // BIND, expecting the peer from 127.0.0.1 (any port), user id "u".
    c.write_all(&[4, 2, 0, 0, 127, 0, 0, 1, b'u', 0]).unwrap();
    let reply4 = |c: &mut TcpStream| {
        let mut r = [0u8; 8];
        c.read_exact(&mut r).unwrap();
        (
            r[1],
            SocketAddr::from(([r[4], r[5], r[6], r[7]], u16::from_be_bytes([r[2], r[3]]))),
        )
    };
    let (rep, bnd) = reply4(&mut c);
    assert_eq!(rep, 90);
    assert_eq!(bnd.ip(), out, "the upstream's listening address");
    let mut peer = TcpStream::connect(bnd).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (rep, from) = reply4(&mut c);
    assert_eq!((rep, from), (90, peer.local_addr().unwrap()));
    peer.write_all(b"to-v4").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to-v4");
    c.write_all(b"from-v4").unwrap();
    let mut got = [0u8; 7];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from-v4");
}

/// A chained BIND's refusals: the upstream refusing the BIND is passed on (its reply code,
/// our `serverchain failed` line), and our own `bindreply` rules still judge the peer the
/// upstream reports: a blocked peer gets no session and our client a second reply 02.
#[test]
fn chained_bind_refusals() {
    let refusing = Danted::start(
        "socksmethod: none\nclient pass { from: 0/0 to: 0/0 }\n\
         socks block { from: 0/0 to: 0/0\n command: bind\n log: connect error\n }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    );
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: {} port = {} }}\n",
        refusing.addr.ip(),
        refusing.addr.port()
    )));
    let (_c, rep, _) = socks5_request(srv.addr, 2);
    assert_eq!(rep, 2, "the upstream's refusal");
    srv.wait_log("the refusal line", 10, |t| {
        t.contains("tcp/bind ]: ") && t.contains("serverchain failed: proxy server replied 02")
    });
    let out = next_loopback();
    let passing =
        Danted::start_with_external(&out.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let srv = Server::start(&base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks block {{ from: 127.0.0.1/32 to: 0/0\n command: bindreply\n log: connect error\n }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         route {{ from: 0/0 to: 0/0 via: {} port = {} }}\n",
        passing.addr.ip(),
        passing.addr.port()
    )));
    let (mut c, rep, bnd) = socks5_request(srv.addr, 2);
    assert_eq!(rep, 0);
    let bnd = bnd.unwrap();
    assert_eq!(bnd.ip(), out);
    let mut peer = TcpStream::connect(bnd).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (rep, _) = read_socks5_reply_bound(&mut c);
    assert_eq!(rep, 2, "our bindreply rule blocked the peer");
    srv.wait_log("the bindreply block", 10, |t| {
        t.contains("block(1): tcp/bindreply ]: ")
    });
    // The peer's connection through the upstream is closed, with no byte of ours.
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // And the server goes on chaining.
    assert_serving_route(&srv, peer_reporter(Ipv4Addr::LOCALHOST), out);
}

/// A fake SOCKS5 upstream for one UDP association: it records every datagram that reaches
/// its relay and answers each with `answer:` and the payload, in the name of the address the
/// datagram named (127.0.0.7:53 for a name). Its relay is on `relay_ip`.
fn fake_udp_upstream(relay_ip: &str) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let relay = std::net::UdpSocket::bind((relay_ip, 0)).unwrap();
    let raddr = relay.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen2 = seen.clone();
    thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        let mut g = [0u8; 3];
        c.read_exact(&mut g).unwrap();
        c.write_all(&[5, 0]).unwrap();
        let mut req = [0u8; 10];
        c.read_exact(&mut req).unwrap();
        assert_eq!(
            &req[..4],
            &[5, 3, 0, 1],
            "a UDP ASSOCIATE for an IPv4 address"
        );
        let mut rep = vec![5, 0, 0];
        match raddr {
            SocketAddr::V4(r) => {
                rep.push(1);
                rep.extend(r.ip().octets());
            }
            SocketAddr::V6(r) => {
                rep.push(4);
                rep.extend(r.ip().octets());
            }
        }
        rep.extend(raddr.port().to_be_bytes());
        c.write_all(&rep).unwrap();
        let _ = c.read_to_end(&mut Vec::new());
    });
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = relay.recv_from(&mut buf) {
            seen2.lock().unwrap().push(buf[..n].to_vec());
            let (off, mut back) = match buf[3] {
                3 => (
                    4 + 1 + buf[4] as usize + 2,
                    vec![0, 0, 0, 1, 127, 0, 0, 7, 0, 53],
                ),
                _ => (10, buf[..10].to_vec()),
            };
            back.extend(b"answer:");
            back.extend(&buf[off..n]);
            let _ = relay.send_to(&back, from);
        }
    });
    (addr, seen)
}

/// A chained association passes a name we cannot resolve to the upstream as a name (the
/// bytes the upstream's relay received), and the answer, from an address we could not know,
/// reaches the client; our rules still judge the name: one they block never leaves.
#[test]
fn unresolvable_names_in_datagrams_go_upstream() {
    let (up, seen) = fake_udp_upstream("127.0.0.1");
    let srv = Server::start(&base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: .blocked.invalid\n command: udpassociate\n log: connect error\n }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n",
        up.port()
    )));
    let (_ctl, rep, relay) = socks5_request(srv.addr, 3);
    assert_eq!(rep, 0);
    let relay = relay.unwrap();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let dgram = |name: &str, payload: &[u8]| {
        let mut d = vec![0, 0, 0, 3, name.len() as u8];
        d.extend(name.as_bytes());
        d.extend(53u16.to_be_bytes());
        d.extend(payload);
        d
    };
    u.send_to(&dgram("x.blocked.invalid", b"no"), relay)
        .unwrap();
    srv.wait_log("the blocked datagram", 10, |t| {
        t.contains("block(1): udp/udpassociate")
    });
    u.send_to(&dgram("nowhere.invalid", b"q1"), relay).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..10],
        &[0, 0, 0, 1, 127, 0, 0, 7, 0, 53],
        "the answer names its sender"
    );
    assert_eq!(&buf[10..n], b"answer:q1");
    // A name we resolve goes as the address our rules checked, which the answer comes from.
    u.send_to(&dgram("localhost", b"q2"), relay).unwrap();
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..10], &[0, 0, 0, 1, 127, 0, 0, 1, 0, 53]);
    assert_eq!(&buf[10..n], b"answer:q2");
    let got = seen.lock().unwrap().clone();
    let mut by_address = vec![0, 0, 0, 1, 127, 0, 0, 1, 0, 53];
    by_address.extend(b"q2");
    assert_eq!(
        got,
        vec![dgram("nowhere.invalid", b"q1"), by_address],
        "only the allowed name, as a name"
    );
}

/// An upstream naming a UDP relay of the other address family than its control connection
/// (whose family our socket and the address we told it have): refused with a clear line.
#[test]
fn an_upstream_relay_of_the_other_family_is_refused() {
    let (up, _) = fake_udp_upstream("::1");
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n",
        up.port()
    )));
    assert_eq!(socks5_request(srv.addr, 3).1, 8);
    srv.wait_log("the refusal", 10, |t| {
        t.contains("named a UDP relay of the other address family, ::1.")
    });
}

/// A silent upstream uses up `timeout.connect`; the route after it is then not tried, and
/// not charged: the next request goes through it.
#[test]
fn a_silent_upstream_does_not_cost_the_next_route_its_health() {
    let (silent, held) = holding_server();
    let out = next_loopback();
    let ms = microsocks(out);
    let srv = Server::start(&base_config(&format!(
        "timeout.connect: 1\n{LOGGED}\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n\
         route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {} }}\n",
        silent.port(),
        ms.addr.port()
    )));
    let target = peer_reporter(Ipv4Addr::LOCALHOST);
    assert_eq!(
        connect(srv.addr, "127.0.0.1", target.port()).0,
        6,
        "TTL expired"
    );
    drop(held);
    assert_eq!(
        connect(srv.addr, "127.0.0.1", target.port()),
        (0, out.to_string())
    );
    let log = srv.log_text();
    assert!(log.contains("blacklisting route #1."), "{log}");
    assert!(!log.contains("blacklisting route #2."), "{log}");
}

/// PySocks' UDP client through a chain (rsockd -> rsockd): its datagrams reach the target
/// from the upstream's address and the answers come back to it.
#[test]
fn python_socks_udp_through_a_chain() {
    let have = Command::new("/usr/bin/python3")
        .args(["-c", "import socks"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(have, "Debian's python3-socks is required (scripts/deps.sh)");
    let out = next_loopback();
    let inner = Server::start(&format!(
        "internal: {{IP}} port = 0\nexternal: {out}\nsocksmethod: none\n{LOGGED}"
    ));
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: {} port = {} }}\n",
        inner.ip,
        inner.addr.port()
    )));
    let target = udp_reporter(Ipv4Addr::LOCALHOST);
    let script = format!(
        "import socks, socket\n\
         s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.set_proxy(socks.SOCKS5, '{}', {})\n\
         s.settimeout(10)\n\
         for i in range(3):\n\
         \x20   s.sendto(b'py-%d' % i, ('127.0.0.1', {}))\n\
         \x20   data, addr = s.recvfrom(4096)\n\
         \x20   print(addr[1], data.decode(), flush=True)\n",
        srv.ip,
        srv.addr.port(),
        target.port()
    );
    let o = Command::new("timeout")
        .args(["30", "/usr/bin/python3", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for i in 0..3 {
        let want = format!("{} from {out}:", target.port());
        assert!(
            text.lines()
                .any(|l| l.starts_with(&want) && l.ends_with(&format!(" py-{i}"))),
            "{text}"
        );
    }
    // The upstream logged the association from our external address.
    inner.wait_log("the upstream's association", 10, |t| {
        t.contains("udp/udpassociate [: 127.0.0.1.")
    });
}
