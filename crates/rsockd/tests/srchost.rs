//! `srchost: nodnsmismatch nodnsunknown` against a real DNS server: the test runs Debian's
//! dnsmasq on a loopback address of its own, and rsockd in a mount namespace of its own whose
//! /etc/resolv.conf (bind-mounted, nothing outside changes) names that server. 127.0.0.3
//! reverse-maps to `good.test`, which resolves back to it; 127.0.0.4 reverse-maps to
//! `ghost.test`, which resolves to 127.0.0.3; 127.0.0.5 has no name. (The nodnsunknown line
//! against danted is in differential.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// dnsmasq answering only our names, for as long as it lives.
struct Dns {
    child: Child,
    addr: Ipv4Addr,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dns() -> Dns {
    assert!(
        rsockd_testkit::is_root() && tool("dnsmasq") && tool("unshare"),
        "root, dnsmasq (dnsmasq-base) and unshare (util-linux) are required (scripts/deps.sh)"
    );
    // An address of this test's own, so tests running at once never share a server.
    static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let addr = Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8 + 1, n);
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--port=53",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            // No pid file (two servers at once would fight over /run/dnsmasq.pid) and no
            // configuration file but these arguments.
            "--pid-file=",
            "--conf-file=/dev/null",
            "--ptr-record=3.0.0.127.in-addr.arpa,good.test",
            "--host-record=good.test,127.0.0.3",
            "--ptr-record=4.0.0.127.in-addr.arpa,ghost.test",
            "--host-record=ghost.test,127.0.0.3",
        ])
        .arg(format!("--listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dns = Dns { child, addr };
    // Ready when it answers: a query for good.test over UDP.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["good", "test"] {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    let start = Instant::now();
    loop {
        let _ = sock.send_to(&q, (dns.addr, 53));
        let mut buf = [0u8; 512];
        if matches!(sock.recv_from(&mut buf), Ok((n, _)) if n > 12) {
            return dns;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = dns.child.kill();
            let mut err = String::new();
            if let Some(mut e) = dns.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("dnsmasq did not answer on {}: {err}", dns.addr);
        }
    }
}

/// rsockd with `conf` (`{IP}` substituted, a log file added) under `unshare -m`, resolving
/// through `dns` only.
fn start_with_dns(conf: &str, dns: &Dns) -> Server {
    start_with_dns_on(conf, dns, next_loopback())
}

/// [`start_with_dns`] with `{IP}` = `ip`.
fn start_with_dns_on(conf: &str, dns: &Dns, ip: Ipv4Addr) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rsockd.log");
    let conf_path = dir.path().join("rsockd.conf");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {}\noptions timeout:1 attempts:1\n", dns.addr),
    )
    .unwrap();
    std::fs::write(
        &conf_path,
        format!(
            "logoutput: {}\n{}",
            log.display(),
            conf.replace("{IP}", &ip.to_string())
        ),
    )
    .unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/resolv.conf && exec "$2" -f "$3""#)
        .arg("sh")
        .arg(&resolv)
        .arg(BIN)
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    launch(cmd, dir, ip, conf_path, log).unwrap()
}

/// A CONNECT from `from`: Some(reply code), or None when the server closed without a reply.
fn connect_from(from: Ipv4Addr, srv: &Server, echo: &Echo) -> (Option<u8>, SocketAddr) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect(&srv.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let me = s.local_addr().unwrap();
    if s.write_all(&[5, 1, 0]).is_err() {
        return (None, me);
    }
    let mut m = [0u8; 2];
    if std::io::Read::read_exact(&mut s, &mut m).is_err() {
        return (None, me);
    }
    let SocketAddr::V4(a) = echo.addr else {
        panic!()
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend(a.ip().octets());
    req.extend(a.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let rep = read_socks5_reply(&mut s);
    if rep == 0 {
        echo_once(&mut s, b"passed srchost");
    }
    (Some(rep), me)
}

#[test]
fn mismatched_and_unknown_names_are_refused_at_accept() {
    let echo = echo_server();
    let dns = start_dns();
    let srv = start_with_dns(
        &base_config(
            "srchost: nodnsmismatch nodnsunknown\n\
         client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n",
        ),
        &dns,
    );
    let ip = |d: u8| Ipv4Addr::new(127, 0, 0, d);
    // 127.0.0.3: its name maps back to it.
    assert_eq!(connect_from(ip(3), &srv, &echo).0, Some(0));
    // 127.0.0.4: its name maps to 127.0.0.3 only.
    let (r, me) = connect_from(ip(4), &srv, &echo);
    assert_eq!(r, None, "refused at accept, before any reply");
    let line = format!(
        "block(1): tcp/accept ]: {} {}: DNS IP/hostname mismatch.  127.0.0.4 does not match \
         reversemapped addresses for hostname \"ghost.test\"",
        dante_addr(me),
        dante_addr(srv.addr)
    );
    srv.wait_log("the mismatch line", 15, |t| t.contains(&line));
    // 127.0.0.5: no name at all.
    let (r, me) = connect_from(ip(5), &srv, &echo);
    assert_eq!(r, None);
    let line = format!(
        "block(1): tcp/accept ]: {} {}: no dns entry found for srchost {}",
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(me)
    );
    srv.wait_log("the unknown line", 15, |t| t.contains(&line));
    // Remembered verdicts give the same answers; the server serves on.
    assert_eq!(connect_from(ip(4), &srv, &echo).0, None);
    assert_eq!(connect_from(ip(3), &srv, &echo).0, Some(0));
    assert_serving(&srv, &echo);
}

#[test]
fn without_srchost_names_are_not_looked_up() {
    let echo = echo_server();
    let dns = start_dns();
    let srv = start_with_dns(
        &base_config(
            "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n",
        ),
        &dns,
    );
    for d in [3, 4, 5] {
        let (r, _) = connect_from(Ipv4Addr::new(127, 0, 0, d), &srv, &echo);
        assert_eq!(r, Some(0), "127.0.0.{d} passes without srchost");
    }
}

/// A host name in a client rule's `to:` names the proxy's own address (Dante's example file
/// has `client pass { from: fxp0 to: fxp0 }`): it matches when the address the client
/// connected to has that (forward-confirmed) name.
#[test]
fn a_host_name_in_a_client_rules_to_names_our_address() {
    let echo = echo_server();
    let dns = start_dns();
    let rules = base_config(
        "client pass { from: 0/0 to: good.test log: connect disconnect error }\n\
         client block { from: 0/0 to: 0/0 log: connect disconnect error }\n\
         socks pass { from: 0/0 to: 0/0 log: connect disconnect error }\n",
    );
    // 127.0.0.3 is good.test: rule 1.
    let named = start_with_dns_on(&rules, &dns, Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(connect_from(next_loopback(), &named, &echo).0, Some(0));
    named.wait_log("rule 1's line", 10, |t| {
        t.contains("pass(1): tcp/accept [: ")
    });
    // 127.0.0.5 has no name: rule 2 blocks.
    let nameless = start_with_dns_on(&rules, &dns, Ipv4Addr::new(127, 0, 0, 5));
    assert_eq!(connect_from(next_loopback(), &nameless, &echo).0, None);
    nameless.wait_log("rule 2's line", 10, |t| {
        t.contains("block(2): tcp/accept ]: ")
    });
}
