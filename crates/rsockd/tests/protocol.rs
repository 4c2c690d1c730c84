//! SOCKS4, SOCKS4a and SOCKS5 CONNECT through the real binary: raw sockets for exact bytes,
//! real clients (curl, ncat, python3-socks) for interoperability, and every bad input we know
//! of, each followed by a check that the server still serves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;

fn open_server() -> Server {
    Server::start(&base_config(OPEN_RULES))
}

#[test]
fn socks5_connect_echo_and_log_lines() {
    let echo = echo_server();
    let srv = open_server();
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    drop(s);
    let log = srv.wait_log("disconnect line", 10, |t| t.contains("tcp/connect ]"));
    let client_part = format!("{}.", srv.ip);
    let connect = log.lines().find(|l| l.contains("tcp/connect [")).unwrap();
    // Dante: `pass(1): tcp/connect [: 127.0.0.1.54012 127.0.0.1.21080 -> 127.0.0.1.36513 127.0.0.1.21081`
    assert!(
        connect.contains("info: pass(1): tcp/connect [: "),
        "{connect}"
    );
    assert!(connect.contains(" -> 127.0.0.1."), "{connect}");
    assert!(
        connect.ends_with(&format!("127.0.0.1.{}", echo.addr.port())),
        "{connect}"
    );
    let end = log.lines().find(|l| l.contains("tcp/connect ]")).unwrap();
    assert!(
        end.contains("pass(1): tcp/connect ]: 5 -> ") && end.contains(" -> 5, 5 -> "),
        "{end}"
    );
    assert!(
        end.contains(": local client closed.  Session duration: "),
        "{end}"
    );
    let accept = log.lines().find(|l| l.contains("tcp/accept ]")).unwrap();
    assert!(accept.contains("pass(1): tcp/accept ]: 5 -> "), "{accept}");
    assert!(log.contains(&client_part) || log.contains("127."), "{log}");
}

#[test]
fn socks5_ipv6_target() {
    let l = std::net::TcpListener::bind("[::1]:0").unwrap();
    let target = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"v6!").unwrap();
    });
    let srv = Server::start(&base_config(OPEN_RULES).replace(
        "external: 127.0.0.1\n",
        "external: 127.0.0.1\nexternal: ::1\n",
    ));
    let (mut s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 0);
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"v6!");
}

#[test]
fn ipv6_target_without_ipv6_external_gets_08() {
    let srv = open_server();
    let (_s, rep) = socks5_connect(srv.addr, "[::1]:9".parse().unwrap());
    assert_eq!(rep, 8);
}

#[test]
fn socks5_domain_name_tries_every_address() {
    // "localhost" resolves to ::1 and 127.0.0.1; only the IPv4 echo listens, and no IPv6
    // external is configured, so rsockd must find the IPv4 address.
    let echo = echo_server();
    let srv = open_server();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 3, 9];
    req.extend_from_slice(b"localhost");
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(read_socks5_reply(&mut s), 0);
    s.write_all(b"name").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"name");
}

#[test]
fn unresolvable_name_gets_04() {
    let srv = open_server();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = b"no-such-host.invalid";
    let mut req = vec![5, 1, 0, 5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name);
    req.extend_from_slice(&80u16.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(read_socks5_reply(&mut s), 4);
    srv.wait_log("resolve failure line", 10, |t| {
        t.contains("could not resolve hostname \"no-such-host.invalid\"")
    });
}

#[test]
fn refused_target_maps_errno_to_reply() {
    let echo = echo_server();
    let srv = open_server();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_s, rep) = socks5_connect(srv.addr, closed);
    assert_eq!(rep, 5, "ECONNREFUSED → 05");
    // SOCKS4 gets 91.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let mut req = vec![4, 1];
    req.extend_from_slice(&closed.port().to_be_bytes());
    req.extend_from_slice(&[127, 0, 0, 1, 0]);
    s.write_all(&req).unwrap();
    let mut rep4 = [0u8; 8];
    s.read_exact(&mut rep4).unwrap();
    assert_eq!(rep4[..2], [0, 91]);
    srv.wait_log("refused line", 10, |t| {
        t.contains("remote peer error (Connection refused).  Session duration: 0s")
    });
    assert_serving(&srv, &echo);
}

#[test]
fn socks4_and_socks4a_raw() {
    let echo = echo_server();
    let srv = open_server();
    // SOCKS4
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let mut req = vec![4, 1];
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    req.extend_from_slice(&[127, 0, 0, 1]);
    req.extend_from_slice(b"someone\0");
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 8];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(rep[..2], [0, 90]);
    s.write_all(b"four").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"four");
    // SOCKS4a: 0.0.0.1 and a host name after the user id (Dante cannot do this).
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let mut req = vec![4, 1];
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 1]);
    req.extend_from_slice(b"\0localhost\0");
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 8];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(rep[..2], [0, 90]);
    s.write_all(b"4a").unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"4a");
}

#[test]
fn data_sent_before_the_reply_is_relayed_first() {
    let echo = echo_server();
    let srv = open_server();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    req.extend_from_slice(b"early bytes");
    s.write_all(&req).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(read_socks5_reply(&mut s), 0);
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"early bytes");
}

#[test]
fn request_split_over_many_segments() {
    let echo = echo_server();
    let srv = open_server();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for b in [5u8, 1, 0] {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&echo.addr.port().to_be_bytes());
    for b in req {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_socks5_reply(&mut s), 0);
}

#[test]
fn bad_inputs_are_refused_and_the_server_keeps_serving() {
    let echo = echo_server();
    let srv = open_server();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![]),
        ("version 6", vec![6, 1, 0], vec![]),
        ("zero methods", vec![5, 0], vec![5, 0xff]),
        ("no acceptable method", vec![5, 1, 2], vec![5, 0xff]),
        (
            "unknown command",
            vec![5, 1, 0, 5, 9, 0, 1, 127, 0, 0, 1, 0, 80],
            vec![5, 0, 5, 7],
        ),
        (
            "unknown address type",
            vec![5, 1, 0, 5, 1, 0, 7, 1, 2, 3, 4, 0, 80],
            vec![5, 0, 5, 8],
        ),
        (
            "bad request version",
            vec![5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80],
            vec![5, 0],
        ),
        ("truncated greeting", vec![5, 3, 0], vec![]),
        (
            "truncated request",
            vec![5, 1, 0, 5, 1, 0, 1, 127],
            vec![5, 0],
        ),
        (
            "socks4 userid too long",
            {
                let mut v = vec![4, 1, 0, 80, 127, 0, 0, 1];
                v.extend(std::iter::repeat_n(b'a', 300));
                v
            },
            vec![0, 91, 0, 0, 0, 0, 0, 0],
        ),
        (
            "socks4 unknown command",
            vec![4, 7, 0, 80, 127, 0, 0, 1, 0],
            vec![0, 91, 0, 0, 0, 0, 0, 0],
        ),
        (
            "empty domain",
            vec![5, 1, 0, 5, 1, 0, 3, 0, 0, 80],
            vec![5, 0, 5, 4],
        ),
    ];
    for (what, input, expect_prefix) in cases {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&input).unwrap();
        let _ = s.shutdown(Shutdown::Write);
        let got = read_all(&mut s);
        assert!(
            got.starts_with(&expect_prefix),
            "{what}: got {got:?}, want prefix {expect_prefix:?}"
        );
        assert_serving(&srv, &echo);
    }
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let mut v = vec![5, 255];
    v.extend((0..255u8).rev());
    s.write_all(&v).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0], "255 methods offered, none chosen");
    let log = srv.log_text();
    assert!(
        log.contains("unknown SOCKS version 6 in client request"),
        "{log}"
    );
    assert!(
        log.contains("client offered no acceptable authentication method"),
        "{log}"
    );
    assert!(log.contains("unknown socks_v5 command: 9"), "{log}");
}

#[test]
fn silent_client_is_cut_at_timeout_negotiate() {
    let echo = echo_server();
    let srv = Server::start(&base_config(&format!("timeout.negotiate: 1\n{OPEN_RULES}")));
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    let mut half = TcpStream::connect(srv.addr).unwrap();
    half.write_all(&[5, 1]).unwrap();
    assert!(closed_within(&mut silent, 10), "silent client not cut");
    assert!(closed_within(&mut half, 10), "slow client not cut");
    srv.wait_log("timeout line", 10, |t| t.contains("negotiate timeout"));
    assert_serving(&srv, &echo);
}

#[test]
fn a_thousand_rapid_connect_close() {
    let echo = echo_server();
    let srv = open_server();
    for i in 0..1000 {
        let s = TcpStream::connect(srv.addr).unwrap();
        if i % 2 == 0 {
            let _ = (&s).write_all(&[5]);
        }
        drop(s);
    }
    assert_serving(&srv, &echo);
}

#[test]
fn curl_through_every_socks_flavour() {
    if !tool("curl") {
        panic!("curl is required (apt-get install curl)");
    }
    let web = http_server("hello from target");
    let srv = open_server();
    for (flag, host) in [
        ("--socks4", "127.0.0.1"),
        ("--socks4a", "localhost"),
        ("--socks5", "127.0.0.1"),
        ("--socks5-hostname", "localhost"),
    ] {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", flag, &srv.addr.to_string()])
            .arg(format!("http://{host}:{}/", web.port()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from target",
            "{flag}"
        );
    }
}

#[test]
fn ncat_through_socks4_and_socks5() {
    assert!(tool("ncat"), "ncat is required (apt-get install ncat)");
    let echo = echo_server();
    let srv = open_server();
    for ty in ["socks4", "socks5"] {
        let mut child = Command::new("ncat")
            .args(["--proxy", &srv.addr.to_string(), "--proxy-type", ty])
            .args(["127.0.0.1", &echo.addr.port().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"via ncat\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "via ncat\n", "{ty}");
    }
}

#[test]
fn python_socks_client() {
    let py = "/usr/bin/python3";
    assert!(
        std::path::Path::new(py).exists(),
        "Debian's python3 with python3-socks is required"
    );
    let echo = echo_server();
    let srv = open_server();
    let script = format!(
        "import socks\n\
         for t in (socks.SOCKS5, socks.SOCKS4):\n\
         \x20   s = socks.socksocket()\n\
         \x20   s.set_proxy(t, '{}', {})\n\
         \x20   s.settimeout(20)\n\
         \x20   s.connect(('127.0.0.1', {}))\n\
         \x20   s.sendall(b'py')\n\
         \x20   assert s.recv(2) == b'py'\n\
         \x20   s.close()\n\
         print('ok')\n",
        srv.ip,
        srv.addr.port(),
        echo.addr.port()
    );
    let out = Command::new(py).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{out:?}"
    );
}

#[test]
fn half_close_in_both_directions() {
    // Target: reads to EOF, then answers with what it read, reversed, after the FIN.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target: SocketAddr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.reverse();
        s.write_all(&got).unwrap();
    });
    let srv = open_server();
    let (mut s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 0);
    s.write_all(b"abcdef").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = read_all(&mut s);
    assert_eq!(back, b"fedcba");
}

#[test]
fn two_hundred_megabytes_each_way_byte_exact() {
    let echo = echo_server();
    let srv = open_server();
    let (s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    const TOTAL: usize = 200 * 1024 * 1024;
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut x: u32 = 12345;
        let mut chunk = vec![0u8; 256 * 1024];
        let mut sum: u64 = 0;
        let mut sent = 0;
        while sent < TOTAL {
            for b in chunk.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            for (i, b) in chunk.iter().enumerate() {
                sum = sum.wrapping_add((*b as u64).wrapping_mul((sent + i) as u64 | 1));
            }
            w.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
        w.shutdown(Shutdown::Write).unwrap();
        sum
    });
    let mut r = s;
    r.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    let mut sum: u64 = 0;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            sum = sum.wrapping_add((*b as u64).wrapping_mul((got + i) as u64 | 1));
        }
        got += n;
    }
    let sent_sum = writer.join().unwrap();
    assert_eq!(got, TOTAL);
    assert_eq!(sum, sent_sum, "checksum");
}

#[test]
fn five_hundred_concurrent_sessions() {
    let echo = echo_server();
    let srv = open_server();
    let mut socks = Vec::new();
    for _ in 0..500 {
        let (s, rep) = socks5_connect(srv.addr, echo.addr);
        assert_eq!(rep, 0);
        socks.push(s);
    }
    for (i, s) in socks.iter_mut().enumerate() {
        let msg = format!("session {i:04}");
        s.write_all(msg.as_bytes()).unwrap();
    }
    for (i, s) in socks.iter_mut().enumerate() {
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf), format!("session {i:04}"));
    }
}

/// TCP urgent data (telnet's Interrupt Process, FTP's ABOR) in the middle of a session: the
/// bytes after it and the client's FIN still reach the target, through the splice relay, which
/// the kernel stops at an urgent mark. The urgent byte is out of band and not part of the
/// stream the target reads.
#[test]
fn urgent_data_mid_session_does_not_stall_it() {
    let (target, accepted) = holding_server();
    let srv = open_server();
    let (mut s, rep) = socks5_connect(srv.addr, target);
    assert_eq!(rep, 0);
    let mut t = accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"before ").unwrap();
    let mut got = [0u8; 7];
    t.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"before ");
    socket2::SockRef::from(&s).send_out_of_band(b"!").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"after").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    t.read_to_end(&mut rest)
        .expect("the session stalled at the urgent byte");
    assert_eq!(rest, b"after");
    // The other direction still works after the client's FIN.
    t.write_all(b"reply").unwrap();
    drop(t);
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"reply");
}
