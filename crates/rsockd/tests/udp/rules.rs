//! Rules on UDP: checked per datagram, a blocked association (reply 02), `udp.portrange`
//! and the announced relay address.

use super::*;

#[test]
fn rules_are_checked_per_datagram() {
    let blocked = udp_echo("127.0.0.1:0");
    let silenced = udp_echo("127.0.0.1:0");
    let open = udp_echo("127.0.0.1:0");
    let rules = format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 127.0.0.1/32 port = {} command: udpassociate log: connect error }}\n\
         socks block {{ from: 127.0.0.1/32 port = {} to: 0/0 command: udpreply log: connect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        blocked.addr.port(),
        silenced.addr.port()
    );
    let srv = Server::start(&base_config(&rules));
    // The request itself names 0.0.0.0.0: rule 3 passes it.
    let a = Assoc::open(&srv);
    let open_line = wait_line(&srv, &["udp/udpassociate [: "]);
    assert!(
        open_line.contains("pass(3): udp/udpassociate [: 0.0.0.0.0 "),
        "{open_line}"
    );
    let (me, relay) = (dante_addr(a.me()), dante_addr(a.relay));

    // To the blocked target: dropped by rule 1, before anything went out (0.0.0.0.0).
    a.send(blocked.addr, b"blocked-out");
    let line = wait_line(&srv, &["block(1): udp/udpassociate -: "]);
    assert!(
        line.ends_with(&format!(
            "block(1): udp/udpassociate -: {me} {relay} -> 0.0.0.0.0 {}",
            dante_addr(blocked.addr)
        )),
        "{line}"
    );
    a.echo(open.addr, b"open target passes");
    let ext = dante_addr(open.wait_seen(b"open target passes"));
    assert!(!blocked.saw(b"blocked-out"));

    // To the silenced target: out passes, its reply is dropped by rule 2.
    a.send(silenced.addr, b"silenced-out");
    silenced.wait_seen(b"silenced-out");
    let line = wait_line(&srv, &["block(2): udp/udpreply -: "]);
    assert!(
        line.ends_with(&format!(
            "block(2): udp/udpreply -: {} {ext} -> {relay} {me}",
            dante_addr(silenced.addr)
        )),
        "{line}"
    );
    a.echo(open.addr, b"marker");
    assert_eq!(a.quiet(), None, "a blocked reply reached the client");
    // The verdicts are cached per remote: the same again.
    a.send(blocked.addr, b"blocked-out-2");
    a.send(silenced.addr, b"silenced-out-2");
    silenced.wait_seen(b"silenced-out-2");
    srv.wait_log("the second udpreply block", 10, |t| {
        t.matches("block(2): udp/udpreply -: ").count() == 2
    });
    a.echo(open.addr, b"marker 2");
    assert_eq!(a.quiet(), None);
    assert!(!blocked.saw(b"blocked-out-2"));
    assert_eq!(
        srv.log_text()
            .matches("block(1): udp/udpassociate -: ")
            .count(),
        2
    );
    assert_serving(&srv, &open);
}

#[test]
fn rule_blocking_the_association_gets_02() {
    let rules = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
                 socks block { from: 0/0 to: 0/0 command: udpassociate log: connect error }\n\
                 socks pass { from: 0/0 to: 0/0 command: connect log: connect error }\n";
    let srv = Server::start(&base_config(rules));
    for _ in 0..2 {
        let (mut ctl, rep, _) = associate(srv.addr, "0.0.0.0:0".parse().unwrap());
        assert_eq!(rep, 2, "UDP ASSOCIATE blocked by rule 1");
        assert!(closed_within(&mut ctl, 10), "the control connection closes");
    }
    wait_line(&srv, &["block(1): udp/udpassociate ]: "]);
    // CONNECT still passes.
    let echo = echo_server();
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    s.write_all(b"tcp").unwrap();
    let mut b = [0u8; 3];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"tcp");
}

/// `lo-(lo+span-1)`, a range of UDP ports with nobody on any of them right now.
fn free_port_range(span: u16) -> (u16, u16) {
    let base = 40000 + (std::process::id() % 200) as u16 * 50;
    for k in 0..100u16 {
        let lo = 30000 + (base - 30000 + k * span) % 30000;
        if (lo..lo + span).all(|p| UdpSocket::bind(("0.0.0.0", p)).is_ok()) {
            return (lo, lo + span - 1);
        }
    }
    panic!("no free UDP port range of {span}");
}

#[test]
fn udp_portrange_chooses_the_relay_port() {
    let echo = udp_echo("127.0.0.1:0");
    let (lo, hi) = free_port_range(11);
    let rules = format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 udp.portrange: {lo}-{hi} log: connect disconnect error }}\n"
    );
    let srv = Server::start(&base_config(&rules));
    let mut held = Vec::new();
    for i in 0..3 {
        let a = Assoc::open(&srv);
        assert!(
            (lo..=hi).contains(&a.relay.port()),
            "BND port {} outside {lo}-{hi}",
            a.relay.port()
        );
        a.echo(echo.addr, format!("in range {i}").as_bytes());
        held.push(a);
    }
    let ports: std::collections::HashSet<u16> = held.iter().map(|a| a.relay.port()).collect();
    assert_eq!(ports.len(), 3, "three associations, three ports");
}

#[test]
fn udp_portrange_exhausted_fails_the_request() {
    let echo = udp_echo("127.0.0.1:0");
    let (lo, _) = free_port_range(1);
    let rules = format!(
        "client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 udp.portrange: {lo}-{lo} log: connect disconnect error }}\n"
    );
    let srv = Server::start(&base_config(&rules));
    let a = Assoc::open(&srv);
    assert_eq!(a.relay.port(), lo);
    a.echo(echo.addr, b"the only port");
    let (mut ctl, rep, _) = associate(srv.addr, "0.0.0.0:0".parse().unwrap());
    assert_ne!(rep, 0, "a second association with no port left");
    assert!(closed_within(&mut ctl, 10));
    wait_line(
        &srv,
        &["udp/udpassociate ]: ", "no free port in udp.portrange"],
    );
    a.echo(echo.addr, b"the first goes on");
    // Once the first ends, its port is free for the next.
    let relay = dante_addr(a.relay);
    drop(a);
    wait_line(
        &srv,
        &[
            "pass(1): udp/udpassociate ]: ",
            &relay,
            "local client closed",
        ],
    );
    let start = Instant::now();
    let b = loop {
        let (ctl, rep, bnd) = associate(srv.addr, "0.0.0.0:0".parse().unwrap());
        if rep == 0 {
            break Assoc {
                ctl,
                relay: bnd,
                sock: client_socket(),
            };
        }
        assert!(start.elapsed() < WAIT, "the port never came back");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(b.relay.port(), lo);
    b.echo(echo.addr, b"reused");
}

#[test]
fn announce_udp_address_in_the_reply() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(&format!(
        "rsockd.announce.udp: 203.0.113.7\n{OPEN_RULES}"
    )));
    let sock = client_socket();
    let (ctl, rep, bnd) = associate(srv.addr, "0.0.0.0:0".parse().unwrap());
    assert_eq!(rep, 0);
    assert_eq!(bnd.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
    assert_ne!(bnd.port(), 0);
    // The real relay is on the server's address with the announced port.
    let a = Assoc {
        ctl,
        relay: SocketAddr::new(IpAddr::V4(srv.ip), bnd.port()),
        sock,
    };
    a.echo(echo.addr, b"announced");
    wait_line(&srv, &["udp/udpassociate [: ", &dante_addr(a.relay)]);
}
