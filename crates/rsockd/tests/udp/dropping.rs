//! Datagrams that must be dropped, uncounted, while the association goes on: strangers,
//! unknown or blocked remotes, fragments, bad headers, IPv6 without an IPv6 external address.

use super::*;

#[test]
fn ipv6_target_without_ipv6_external_is_dropped() {
    let echo6 = udp_echo("[::1]:0");
    let echo4 = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    a.send(echo6.addr, b"nowhere to go");
    wait_line(
        &srv,
        &["no address of that family configured for our usage on the external interface"],
    );
    a.echo(echo4.addr, b"v4 still works");
    assert!(!echo6.saw(b"nowhere to go"));
    assert_eq!(a.quiet(), None);
}

#[test]
fn strangers_datagrams_are_dropped() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    a.echo(echo.addr, b"locks the association");
    let stranger = client_socket();
    stranger
        .send_to(&dgram(echo.addr, b"stranger-4711"), a.relay)
        .unwrap();
    // The relay reads its client socket in order: once the marker sent after the stranger's
    // datagram has reached the target, the stranger's would have too.
    a.echo(echo.addr, b"marker after the stranger");
    assert!(
        !echo.saw(b"stranger-4711"),
        "a stranger's datagram was relayed"
    );
    // (No log line is required: Dante 1.4.2 drops these silently at the default level.)
    stranger.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "the stranger got an answer"
    );
    a.echo(echo.addr, b"the client still works");
    assert_serving(&srv, &echo);
}

#[test]
fn request_naming_the_client_address_locks_to_it() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let sock = client_socket();
    let me = sock.local_addr().unwrap();
    let (ctl, rep, relay) = associate(srv.addr, me);
    assert_eq!(rep, 0);
    let a = Assoc { ctl, relay, sock };
    let open = wait_line(&srv, &["udp/udpassociate [: "]);
    assert!(
        open.contains(&format!(
            "udp/udpassociate [: {} {}",
            dante_addr(me),
            dante_addr(relay)
        )),
        "{open}"
    );
    // Another port of the same address, before the client has sent anything: it must not
    // take the association.
    let other = client_socket();
    other
        .send_to(&dgram(echo.addr, b"other-port-1"), a.relay)
        .unwrap();
    a.echo(echo.addr, b"from the named socket");
    other
        .send_to(&dgram(echo.addr, b"other-port-2"), a.relay)
        .unwrap();
    a.echo(echo.addr, b"marker");
    assert!(
        !echo.saw(b"other-port-1"),
        "datagram from another port relayed"
    );
    assert!(
        !echo.saw(b"other-port-2"),
        "datagram from another port relayed"
    );
    drop(a.ctl);
    let end = wait_line(&srv, &["udp/udpassociate ]: "]);
    assert!(
        end.contains(&format!(" -> {} {} -> ", dante_addr(me), dante_addr(relay))),
        "{end}"
    );
    assert_serving(&srv, &echo);
}

/// Replies from a remote the client never sent to: sent to our external address, never
/// delivered, while the known target's replies still are.
fn unknown_remote(conf: &str, shared: bool) {
    let echo = udp_echo("127.0.0.1:0");
    let other = udp_echo("127.0.0.1:0");
    let srv = Server::start(conf);
    let a = Assoc::open(&srv);
    a.echo(echo.addr, b"first");
    let ext = echo.wait_seen(b"first");
    // Where the intruder sends: our external address as the targets see it (with a shared
    // socket, the one the last target saw; see `external_address_survives_a_second_target`).
    let mut exts = vec![ext];
    if shared {
        // A second destination: the external socket can no longer be connected to one.
        a.echo(other.addr, b"second target");
        exts.push(other.wait_seen(b"second target"));
    }
    let intruder = client_socket();
    let mut fake = dgram(echo.addr, b"intruder-0815");
    fake.extend_from_slice(b"intruder-0815");
    for e in &exts {
        intruder.send_to(b"intruder-0815", *e).unwrap();
        intruder.send_to(&fake, *e).unwrap();
    }
    if shared {
        let from = dante_addr(intruder.local_addr().unwrap());
        wait_line(
            &srv,
            &[&format!(
                "datagram from {from} dropped: the client has not sent to it"
            )],
        );
    }
    // The marker's echo comes in on the external socket after the intruder's datagrams.
    a.echo(echo.addr, b"marker");
    assert_eq!(
        a.quiet(),
        None,
        "an unknown remote's datagram reached the client"
    );
    a.echo(echo.addr, b"known target still answers");
    assert_serving(&srv, &echo);
}

/// A target the client tried to reach but a rule blocked is not one it "has sent to": its
/// datagrams to our external address are dropped too.
#[test]
fn replies_from_a_blocked_target_are_dropped() {
    let blocked = client_socket();
    let a_ok = udp_echo("127.0.0.1:0");
    let b_ok = udp_echo("127.0.0.1:0");
    let conf = base_config(&format!(
        "client pass {{ from: 0/0 to: 0/0 }}\n\
         socks block {{ from: 0/0 to: 127.0.0.1/32 port = {}\ncommand: udpassociate\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 }}\n",
        blocked.local_addr().unwrap().port()
    ));
    let srv = Server::start(&conf);
    let a = Assoc::open(&srv);
    a.send(blocked.local_addr().unwrap(), b"never arrives");
    // Two allowed targets, so the external socket is shared (not connected to one).
    a.echo(a_ok.addr, b"first");
    a.echo(b_ok.addr, b"second");
    let ext = b_ok.wait_seen(b"second");
    let mut buf = [0u8; 64];
    blocked.set_read_timeout(Some(QUIET)).unwrap();
    assert!(
        blocked.recv_from(&mut buf).is_err(),
        "the rule let it through"
    );
    blocked.send_to(b"from a blocked target", ext).unwrap();
    a.echo(a_ok.addr, b"marker");
    assert_eq!(
        a.quiet(),
        None,
        "a datagram from a remote the client never reached got through"
    );
}

#[test]
fn replies_from_an_unknown_remote_are_dropped() {
    unknown_remote(&base_config(OPEN_RULES), false);
}

#[test]
fn replies_from_an_unknown_remote_are_dropped_on_a_shared_external_socket() {
    unknown_remote(&base_config(&format!("debug: 1\n{OPEN_RULES}")), true);
}

/// Regression: the closing line's client-side read count (`R1`) counted datagrams dropped for
/// a bad header or a fragment. Dante 1.4.2 counts only datagrams with a usable header there (a
/// datagram blocked by a rule is counted): observed `... -> 15/1` for one good 15-byte
/// datagram plus a fragment and a bad header.
#[test]
fn dropped_bad_datagrams_are_not_counted() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    a.echo(echo.addr, b"hello");
    let ext = dante_addr(echo.wait_seen(b"hello"));
    let mut frag = dgram(echo.addr, b"fragment");
    frag[2] = 1;
    a.sock.send_to(&frag, a.relay).unwrap();
    a.sock.send_to(&[0, 0, 0, 1, 127, 0], a.relay).unwrap();
    a.sock.send_to(&[], a.relay).unwrap();
    // Their three drop lines show they were handled (no marker datagram: it would count).
    srv.wait_log("the three drop lines", 10, |t| {
        t.matches("block(1): udp/udpassociate -: ").count() == 3
    });
    let (me, relay) = (dante_addr(a.me()), dante_addr(a.relay));
    drop(a.ctl);
    let end = wait_line(&srv, &["udp/udpassociate ]: "]);
    let want = format!(
        "pass(1): udp/udpassociate ]: 15/1 -> {me} {relay} -> 15/1, 5/1 -> {ext} {} -> 5/1: local client closed.",
        dante_addr(echo.addr)
    );
    assert!(end.contains(&want), "want {want}\ngot  {end}");
}

#[test]
fn fragments_are_dropped() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    let mut frag = dgram(echo.addr, b"fragment-one");
    frag[2] = 1;
    a.sock.send_to(&frag, a.relay).unwrap();
    a.echo(echo.addr, b"marker");
    assert!(!echo.saw(b"fragment-one"), "a fragment was relayed");
    // Dante 1.4.2: `block(1): udp/udpassociate -: client relay -> 0.0.0.0.0 target:
    // fragmented socks udp packets are not supported` (the session's rule number).
    let line = wait_line(&srv, &["fragmented socks udp packets are not supported"]);
    let want = format!(
        "block(1): udp/udpassociate -: {} {} -> 0.0.0.0.0 {}: fragmented socks udp packets are not supported",
        dante_addr(a.me()),
        dante_addr(a.relay),
        dante_addr(echo.addr)
    );
    assert!(line.ends_with(&want), "want {want}\ngot  {line}");
    // Also once the association is locked.
    let mut frag = dgram(echo.addr, b"fragment-two");
    frag[2] = 0x81;
    a.sock.send_to(&frag, a.relay).unwrap();
    a.echo(echo.addr, b"marker 2");
    assert!(!echo.saw(b"fragment-two"), "a fragment was relayed");
    assert_eq!(a.quiet(), None);
    assert_serving(&srv, &echo);
}

#[test]
fn bad_headers_are_dropped() {
    let echo = udp_echo("127.0.0.1:0");
    let srv = Server::start(&base_config(OPEN_RULES));
    let a = Assoc::open(&srv);
    let port = echo.addr.port().to_be_bytes();
    let mut unknown_atyp = vec![0, 0, 0, 7, 127, 0, 0, 1, port[0], port[1]];
    unknown_atyp.extend_from_slice(b"atyp seven");
    let mut long_name = vec![0, 0, 0, 3, 200];
    long_name.extend_from_slice(b"short");
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0, 0],
        vec![0, 0, 0, 1, 127, 0],
        vec![0, 0, 0, 1, 127, 0, 0, 1, port[0]],
        vec![0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0, 0, 0, 3],
        vec![0, 0, 0, 3, 0, port[0], port[1]],
        long_name,
        unknown_atyp,
    ];
    for d in &bad {
        a.sock.send_to(d, a.relay).unwrap();
    }
    a.echo(echo.addr, b"marker");
    assert_eq!(echo.count(), 1, "only the marker reached the target");
    // Dante 1.4.2: `block(1): udp/udpassociate -: client relay -> 0.0.0.0.0 0.0.0.0.0: SOCKS
    // protocol error in socks udp packet of length N.  Could not extract valid address from
    // SOCKS UDP header`; the shape up to the reason is checked.
    wait_line(
        &srv,
        &[&format!(
            "block(1): udp/udpassociate -: {} {} -> 0.0.0.0.0 0.0.0.0.0: ",
            dante_addr(a.me()),
            dante_addr(a.relay)
        )],
    );
    // After the association is locked, too.
    for d in &bad {
        a.sock.send_to(d, a.relay).unwrap();
    }
    a.echo(echo.addr, b"marker 2");
    assert_eq!(echo.count(), 2, "only the markers reached the target");
    assert_eq!(a.quiet(), None);
    assert_serving(&srv, &echo);
}
