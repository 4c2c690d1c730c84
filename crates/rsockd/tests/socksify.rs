//! Dante's own client library (`socksify`, Debian `dante-client`) driving unmodified programs
//! through rsockd: CONNECT (curl), UDP (plain sendto/recvfrom) and BIND (connect, then
//! bind/listen/accept, as an active-mode FTP client does).
//!
//! The library sends loopback targets direct unless `SOCKS_AUTOADD_LANROUTES=no`; with it, a
//! route to 127.0.0.2 in our socks.conf sends them through the server under test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;

const TARGET_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

const LOGGED: &str = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
socks pass { from: 0/0 to: 0/0 log: connect disconnect error iooperation }\n";

fn available() -> bool {
    if tool("socksify") && tool("python3") && tool("curl") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "socksify, python3 and curl must be installed in CI (scripts/deps.sh)"
    );
    eprintln!("skipped: socksify/python3/curl not installed");
    false
}

/// Runs `args` under socksify with a route for 127.0.0.2 through `srv`.
fn socksify(srv: &Server, args: &[&str]) -> (bool, String) {
    let conf = srv.dir.path().join("socks.conf");
    std::fs::write(
        &conf,
        format!(
            "logoutput: {}\nroute {{\n  from: 0.0.0.0/0 to: 127.0.0.2/32 via: {} port = {}\n  \
             command: connect bind udpassociate\n  protocol: tcp udp\n  \
             proxyprotocol: socks_v5\n  method: none\n}}\n",
            srv.dir.path().join("client.log").display(),
            srv.ip,
            srv.addr.port()
        ),
    )
    .unwrap();
    let out = Command::new("timeout")
        .arg("30")
        .arg("socksify")
        .args(args)
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_AUTOADD_LANROUTES", "no")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn curl_connects_through_socksify() {
    if !available() {
        return;
    }
    let srv = Server::start(&base_config(LOGGED));
    let l = TcpListener::bind((TARGET_IP, 0)).unwrap();
    let target = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok() && line != "\r\n" && !line.is_empty() {
                line.clear();
            }
            let body = "through rsockd via socksify";
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let url = format!("http://{target}/");
    let (ok, out) = socksify(&srv, &["curl", "-sS", "--max-time", "20", &url]);
    assert!(ok, "{out}");
    assert!(out.contains("through rsockd via socksify"), "{out}");
    srv.wait_log("connect line", 10, |t| {
        t.contains("tcp/connect [: ") && t.contains(&dante_addr(target))
    });
}

/// A program doing plain sendto/recvfrom to an echo target on 127.0.0.2, under socksify
/// through `srv`: its output, the target, and the source addresses the target saw.
fn udp_program(srv: &Server) -> (bool, String, SocketAddr, Vec<SocketAddr>) {
    let echo = UdpSocket::bind((TARGET_IP, 0)).unwrap();
    let target = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let seen = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut seen = Vec::new();
        for _ in 0..2 {
            let Ok((n, from)) = echo.recv_from(&mut buf) else {
                break;
            };
            seen.push(from);
            let mut back = b"echo:".to_vec();
            back.extend_from_slice(&buf[..n]);
            let _ = echo.send_to(&back, from);
        }
        seen
    });
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n\
         for i in range(2):\n    \
             s.sendto(b'udp-%d' % i, ('{}', {}))\n    \
             d, a = s.recvfrom(1000)\n    \
             print('got', d.decode(), a[0], a[1], flush=True)\n",
        target.ip(),
        target.port()
    );
    let (ok, out) = socksify(srv, &["python3", "-c", &script]);
    (ok, out, target, seen.join().unwrap())
}

#[test]
fn udp_program_goes_through_an_association() {
    if !available() {
        return;
    }
    let srv = Server::start(&base_config(LOGGED));
    let (ok, out, target, _) = udp_program(&srv);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("got echo:udp-0 {} {}", target.ip(), target.port())),
        "{out}"
    );
    assert!(out.contains("got echo:udp-1"), "{out}");
    srv.wait_log("datagram lines", 10, |t| {
        t.contains("udp/udpassociate -: ")
            && t.contains(&format!("{} (5)", dante_addr(target)))
            && t.contains("udp/udpreply -: ")
    });
}

/// An active-mode-FTP-like exchange under socksify through `srv`: the program connects to a
/// server on 127.0.0.2, tells it where it listens (BIND), and the server connects back from
/// 127.0.0.2. The program's output, and (the address the server connected to, what it got).
fn bind_program(srv: &Server) -> (bool, String, Result<(SocketAddr, String), String>) {
    // An FTP-like server: the program connects, tells it where it listens, and the server
    // connects back to that address from 127.0.0.2.
    let ctl_l = TcpListener::bind((TARGET_IP, 0)).unwrap();
    let ctl_addr = ctl_l.local_addr().unwrap();
    let served = std::thread::spawn(move || -> Result<(SocketAddr, String), String> {
        let (ctl, _) = ctl_l.accept().map_err(|e| e.to_string())?;
        ctl.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(ctl.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let mut it = line.split_whitespace().skip(1);
        let (h, p) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        let to: SocketAddr = format!("{h}:{p}")
            .parse()
            .map_err(|e| format!("{line}: {e}"))?;
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((TARGET_IP, 0)).into()).unwrap();
        s.connect(&to.into())
            .map_err(|e| format!("connect back to {to}: {e}"))?;
        let mut data: TcpStream = s.into();
        data.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        data.write_all(b"data-from-peer\n").unwrap();
        let mut back = String::new();
        BufReader::new(&data)
            .read_line(&mut back)
            .map_err(|e| e.to_string())?;
        let mut c = ctl;
        c.write_all(b"226 done\n").unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        Ok((to, back))
    });
    // Dante's library hooks accept() but not accept4(), which Python's socket.accept() uses,
    // so the program calls libc accept() as a C program would.
    let script = format!(
        "import socket, ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         ctl = socket.create_connection(('{}', {}), timeout=20)\n\
         ls = socket.socket(); ls.bind((ctl.getsockname()[0], 0)); ls.listen(1)\n\
         h, p = ls.getsockname()\n\
         ctl.sendall(('PORT %s %d\\n' % (h, p)).encode())\n\
         buf = ctypes.create_string_buffer(128); ln = ctypes.c_uint(128)\n\
         fd = libc.accept(ls.fileno(), buf, ctypes.byref(ln))\n\
         assert fd >= 0, os.strerror(ctypes.get_errno())\n\
         print('peer', socket.inet_ntoa(buf.raw[4:8]), flush=True)\n\
         print('data', os.read(fd, 100).decode().strip(), flush=True)\n\
         os.write(fd, b'data-from-program\\n'); os.close(fd)\n\
         print('control', ctl.recv(100).decode().strip(), flush=True)\n",
        ctl_addr.ip(),
        ctl_addr.port()
    );
    let (ok, out) = socksify(srv, &["python3", "-c", &script]);
    (ok, out, served.join().unwrap())
}

#[test]
fn bind_listen_accept_goes_through_bind() {
    if !available() {
        return;
    }
    let srv = Server::start(&base_config(LOGGED));
    let (ok, out, served) = bind_program(&srv);
    assert!(ok, "{out}");
    assert!(out.contains("peer 127.0.0.2"), "{out}");
    assert!(out.contains("data data-from-peer"), "{out}");
    assert!(out.contains("control 226 done"), "{out}");
    assert_eq!(served.unwrap().1, "data-from-program\n");
    let log = srv.wait_log("bind lines", 10, |t| {
        t.contains("tcp/bindreply [: 127.0.0.2.")
    });
    assert!(log.contains("tcp/bind [: "), "{log}");
}

/// The same two programs through a chain: rsockd sends BIND and UDP ASSOCIATE on through
/// danted (beyond Dante, which chains only CONNECT). The FTP-like server connects back to
/// danted's address, and the UDP target hears from danted's.
#[test]
fn bind_and_udp_programs_through_a_chain() {
    if !available() {
        return;
    }
    let out_ip = next_loopback();
    let d =
        Danted::start_with_external(&out_ip.to_string(), &format!("socksmethod: none\n{LOGGED}"));
    let srv = Server::start(&base_config(&format!(
        "{LOGGED}route {{ from: 0/0 to: 0/0 via: {} port = {} }}\n",
        d.addr.ip(),
        d.addr.port()
    )));
    let (ok, out, served) = bind_program(&srv);
    assert!(ok, "{out}");
    assert!(out.contains("peer 127.0.0.2"), "{out}");
    assert!(out.contains("data data-from-peer"), "{out}");
    let (to, back) = served.unwrap();
    assert_eq!(
        to.ip(),
        out_ip,
        "the server connected back to danted's listener"
    );
    assert_eq!(back, "data-from-program\n");
    let (ok, out, target, seen) = udp_program(&srv);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("got echo:udp-0 {} {}", target.ip(), target.port())),
        "{out}"
    );
    assert!(out.contains("got echo:udp-1"), "{out}");
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a.ip() == out_ip),
        "{seen:?}"
    );
}
