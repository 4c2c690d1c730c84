//! Datagrams that must go through, both ways: IPv4, IPv6, names, large payloads, IPv4-mapped
//! targets, a second target on the same external address, and a real client (python3-socks).

use super::*;

#[test]
fn ipv4_round_trip_and_log_lines() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(IO_RULES));
    let a = Assoc::open(&srv);
    let relay = dante_addr(a.relay);
    // The opening line names the requested address (0.0.0.0.0) and our relay address.
    let open = wait_line(&srv, &["udp/udpassociate [: "]);
    assert!(
        open.contains(&format!(
            "info: pass(1): udp/udpassociate [: 0.0.0.0.0 {relay}"
        )),
        "{open}"
    );
    assert!(open.ends_with(&relay), "{open}");

    a.send(echo.addr, b"hello");
    let (from, atyp, back) = a.recv();
    assert_eq!((from, atyp, back.as_slice()), (echo.addr, 1, &b"hello"[..]));
    let ext = echo.wait_seen(b"hello");
    assert_eq!(
        ext.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "external: 127.0.0.1"
    );
    a.echo(echo.addr, b"world!!");

    let me = dante_addr(a.me());
    let ext = dante_addr(ext);
    let target = dante_addr(echo.addr);
    // Per datagram: `udp/udpassociate -: client relay -> external target (len)` and the
    // reverse `udp/udpreply -: target external -> relay client (len)`.
    for len in [5, 7] {
        let out = format!("pass(1): udp/udpassociate -: {me} {relay} -> {ext} {target} ({len})");
        let back = format!("pass(1): udp/udpreply -: {target} {ext} -> {relay} {me} ({len})");
        let log = srv.wait_log("the i/o lines", 10, |t| {
            t.contains(&out) && t.contains(&back)
        });
        assert!(log.lines().any(|l| l.ends_with(&out)), "{log}");
        assert!(log.lines().any(|l| l.ends_with(&back)), "{log}");
    }

    drop(a.ctl);
    let end = wait_line(&srv, &["udp/udpassociate ]: "]);
    // Client side counts include the 10-byte headers: 15 + 17; the target side payload only.
    let want = format!(
        "pass(1): udp/udpassociate ]: 32/2 -> {me} {relay} -> 32/2, 12/2 -> {ext} {target} -> 12/2: local client closed.  Session duration: "
    );
    assert!(end.contains(&want), "want {want}\ngot  {end}");
    assert!(end.ends_with('s'), "{end}");
    assert_serving(&srv, &echo);
}

#[test]
fn ipv6_target() {
    let echo6 = udp_echo("[::1]:0");
    let echo4 = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES).replace(
        "external: 127.0.0.1\n",
        "external: 127.0.0.1\nexternal: ::1\n",
    ));
    let a = Assoc::open(&srv);
    a.send(echo6.addr, b"six");
    let (from, atyp, back) = a.recv();
    assert_eq!(atyp, 4, "the reply header names an IPv6 target with ATYP 4");
    assert_eq!(from, echo6.addr);
    assert_eq!(back, b"six");
    assert_eq!(
        echo6.wait_seen(b"six").ip(),
        "::1".parse::<IpAddr>().unwrap()
    );
    // Both families from one association.
    a.echo(echo4.addr, b"four");
    a.echo(echo6.addr, b"six again");
    assert_serving(&srv, &echo4);
}

#[test]
fn domain_name_target() {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        hosts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"127.0.0.1") && f.contains(&"localhost")
        }),
        "/etc/hosts maps localhost to 127.0.0.1"
    );
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(IO_RULES));
    let a = Assoc::open(&srv);
    a.sock
        .send_to(
            &dgram_name("localhost", echo.addr.port(), b"by name"),
            a.relay,
        )
        .unwrap();
    let (from, atyp, back) = a.recv();
    // Replies name the remote by its address.
    assert_eq!(
        (from, atyp, back.as_slice()),
        (echo.addr, 1, &b"by name"[..])
    );
    // An unresolvable name is dropped with a log line; the association goes on.
    a.sock
        .send_to(&dgram_name("no-such-host.invalid", 9, b"lost"), a.relay)
        .unwrap();
    wait_line(
        &srv,
        &[
            "udp/udpassociate -: ",
            "no-such-host.invalid.9",
            "could not resolve",
        ],
    );
    a.sock
        .send_to(
            &dgram_name("localhost", echo.addr.port(), b"again"),
            a.relay,
        )
        .unwrap();
    let (from, _, back) = a.recv();
    assert_eq!((from, back.as_slice()), (echo.addr, &b"again"[..]));
    assert_serving(&srv, &echo);
}

#[test]
fn large_datagrams_both_ways() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    // 65000 bytes, and the largest payload an IPv4 datagram with a 10-byte header carries.
    for len in [65000usize, 65507 - 10] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + i / 251) as u8).collect();
        a.send(echo.addr, &payload);
        echo.wait_seen(&payload);
        let (from, _, back) = a.recv();
        assert_eq!(from, echo.addr);
        assert_eq!(back.len(), len);
        assert!(back == payload, "{len} bytes changed on the way");
    }
    assert_serving(&srv, &echo);
}

/// Regression: with `udp.connectdst` (the default) the external socket is connected to the
/// first target and disconnected when the client uses a second one. A socket bound to port 0
/// loses its port on disconnect (the kernel locks only explicitly bound ports), which moved the
/// association's external address under its first target; the mother now binds it explicitly.
#[test]
fn external_address_survives_a_second_target() {
    let echo = udp_echo("127.0.0.1:0");
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    let srv = Server::start(&base_config(IO_RULES));
    let a = Assoc::open(&srv);
    a.send(first.local_addr().unwrap(), b"to the first target");
    let mut buf = [0u8; 256];
    let (n, ext) = first.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to the first target");
    // The first target answers: fine while the socket is connected to it.
    first.send_to(b"first answer", ext).unwrap();
    let (from, _, back) = a.recv();
    assert_eq!(
        (from, back.as_slice()),
        (first.local_addr().unwrap(), &b"first answer"[..])
    );
    // A second target.
    a.echo(echo.addr, b"to the second target");
    let ext2 = echo.wait_seen(b"to the second target");
    assert_eq!(
        ext2, ext,
        "the association's external address changed when a second target was used"
    );
    // The first target answers again, to the address it knows.
    first.send_to(b"late answer", ext).unwrap();
    let (from, _, back) = a.recv();
    assert_eq!(
        (from, back.as_slice()),
        (first.local_addr().unwrap(), &b"late answer"[..])
    );
}

#[test]
fn ipv4_mapped_ipv6_target_goes_out_over_ipv4() {
    // Dante converts ::ffff:a.b.c.d in a header to IPv4; no IPv6 external is needed.
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
        echo.addr.port(),
    );
    a.send(mapped, b"mapped");
    let (from, atyp, back) = a.recv();
    assert_eq!(
        (from, atyp, back.as_slice()),
        (echo.addr, 1, &b"mapped"[..])
    );
    assert_serving(&srv, &echo);
}

#[test]
fn python_socks_udp_client() {
    let py = "/usr/bin/python3";
    let have = std::path::Path::new(py).exists()
        && Command::new(py)
            .args(["-c", "import socks"])
            .status()
            .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Debian's python3 with python3-socks"
        );
        eprintln!("SKIPPED: {py} with python3-socks is not installed");
        return;
    }
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let script = format!(
        "import socks, socket\n\
         s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.set_proxy(socks.SOCKS5, '{}', {})\n\
         s.settimeout(10)\n\
         for i in range(3):\n\
         \x20   msg = b'py-udp-%d' % i\n\
         \x20   s.sendto(msg, ('127.0.0.1', {}))\n\
         \x20   data, addr = s.recvfrom(4096)\n\
         \x20   assert data == msg, data\n\
         \x20   assert addr == ('127.0.0.1', {}), addr\n\
         s.close()\n\
         print('ok')\n",
        srv.ip,
        srv.addr.port(),
        echo.addr.port(),
        echo.addr.port()
    );
    let mut child = Command::new(py)
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3-socks client hung");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success() && out.trim() == "ok",
        "{status}\nstdout: {out}\nstderr: {err}\nlog: {}",
        srv.log_text()
    );
    for i in 0..3 {
        assert!(echo.saw(format!("py-udp-{i}").as_bytes()));
    }
    wait_line(
        &srv,
        &["pass(1): udp/udpassociate ]: ", "local client closed"],
    );
}

/// `redirect from:` picks the association's external address (and port) for its family.
#[test]
fn redirect_from_sets_the_external_address_and_port() {
    let echo = udp_echo("127.0.0.1:0");
    let port = free_udp_port("127.0.0.83");
    let srv = Server::start(&redirect_from_config("127.0.0.83", port));
    let a = Assoc::open(&srv);
    a.echo(echo.addr, b"from the redirected address");
    let ext = echo.wait_seen(b"from the redirected address");
    assert_eq!(ext, SocketAddr::from(([127, 0, 0, 83], port)));
}

/// UDP ASSOCIATE with draft-05's USECLIENTSPORT flag in RSV, naming the port the client
/// sends from: with `compatibility: draft-5.05` the target sees that port and the reply
/// carries the flag (Dante's behaviour); without it the flag is ignored, as Dante does.
#[test]
fn draft_5_05_useclientsport() {
    let echo = udp_echo("127.0.0.1:0");
    for (compat, want_same) in [("compatibility: draft-5.05\n", true), ("", false)] {
        let srv = Server::start(&base_config(&format!("{compat}{OPEN_RULES}")));
        // Not on 127.0.0.1, the external address, where the same port is the client's own.
        let sock = UdpSocket::bind((next_loopback(), 0)).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let me = sock.local_addr().unwrap();
        let mut ctl = TcpStream::connect(srv.addr).unwrap();
        ctl.set_read_timeout(Some(WAIT)).unwrap();
        let mut req = vec![5, 1, 0, 5, 3, 0x04];
        socks_addr(me, &mut req);
        ctl.write_all(&req).unwrap();
        // Method selection, then VER REP FLAG ATYP(1) ADDR(4) PORT(2).
        let mut b = [0u8; 12];
        ctl.read_exact(&mut b).unwrap();
        assert_eq!(&b[..2], [5, 0], "method selection");
        let (rep, flag) = (b[3], b[4]);
        assert_eq!((b[2], b[5]), (5, 1));
        assert_eq!(rep, 0, "{compat:?}");
        let relay =
            SocketAddr::from(([b[6], b[7], b[8], b[9]], u16::from_be_bytes([b[10], b[11]])));
        let payload = format!("draft-05 {want_same}");
        sock.send_to(&dgram(echo.addr, payload.as_bytes()), relay)
            .unwrap();
        let from = echo.wait_seen(payload.as_bytes());
        if want_same {
            assert_eq!(from.port(), me.port(), "the external port is the client's");
            assert_eq!(flag, 0x04, "the reply says so");
        } else {
            assert_ne!(from.port(), me.port());
            assert_eq!(flag, 0, "the flag is ignored without draft-5.05");
        }
        drop(ctl);
    }
}
