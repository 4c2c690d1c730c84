//! How an association ends: with its control connection, and not with the mother that
//! accepted it.

use super::*;

#[test]
fn association_ends_with_the_control_connection() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    a.echo(echo.addr, b"while open");
    let relay = a.relay;
    drop(a.ctl);
    wait_line(&srv, &["udp/udpassociate ]: ", &dante_addr(relay)]);
    // The relay port is closed: nothing reaches the target, and (ICMP) the sender learns it.
    let late = client_socket();
    late.connect(relay).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut refused = false;
    for _ in 0..3 {
        late.send(&dgram(echo.addr, b"too late")).unwrap();
        let mut buf = [0u8; 256];
        match late.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            Err(_) => {}
            Ok(n) => panic!("an answer after the association ended: {:?}", &buf[..n]),
        }
    }
    eprintln!("ICMP port unreachable seen: {refused}");
    // Nobody holds the relay port any more: we can bind it ourselves.
    let start = Instant::now();
    let rebound = loop {
        match UdpSocket::bind(relay) {
            Ok(s) => break s,
            Err(e) => assert!(
                start.elapsed() < WAIT,
                "the relay port {relay} is still held after the association ended: {e}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    };
    drop(rebound);
    assert!(!echo.saw(b"too late"), "a datagram relayed after the end");
    assert_serving(&srv, &echo);
}

/// The pid in a log line's `rsockd[PID]` prefix.

#[test]
fn association_survives_the_death_of_its_mother() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start_with(&base_config(OPEN_RULES), &["-N", "2"]);
    let m2 = mother_pid(srv.pid, 2).unwrap();
    let mut held = Vec::new();
    let mut on_m2 = None;
    for i in 0..60 {
        let a = Assoc::open(&srv);
        let relay = dante_addr(a.relay);
        let line = wait_line(&srv, &["udp/udpassociate [: ", &relay]);
        let pid = line_pid(&line).unwrap_or_else(|| panic!("no pid in {line}"));
        a.echo(echo.addr, format!("probe {i}").as_bytes());
        if children_of(m2).contains(&pid) {
            on_m2 = Some((a, pid));
            break;
        }
        held.push(a);
    }
    let (a, relay_pid) = on_m2.expect("no association landed on mother 2 in 60 tries");
    let _orphans = Orphans::of(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    unsafe_free_kill(m2, SIGKILL);
    assert!(wait_gone(m2, 10), "mother 2 did not die");
    for i in 0..50 {
        a.echo(echo.addr, format!("after the kill {i}").as_bytes());
    }
    assert!(alive(relay_pid), "the relay of the association died");
    drop(held);
    assert_serving(&srv, &echo);
}
