//! `rfc931` against a fake ident server.

use super::*;

/// A fake ident server on `ip`:113. For each query it sends `answer(ports)` (ports: the
/// query line without its line end) and reports the query line and who asked.
fn identd(
    ip: Ipv4Addr,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> mpsc::Receiver<(String, SocketAddr)> {
    let l = TcpListener::bind((ip, 113)).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let peer = s.peer_addr().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut w = s;
            let _ = w.write_all(answer(line.trim_end_matches(['\r', '\n'])).as_bytes());
            if tx.send((line, peer)).is_err() {
                break;
            }
        }
    });
    rx
}

/// A client from its own loopback address, with its own ident server there.
struct IdentClient {
    ip: Ipv4Addr,
    queries: mpsc::Receiver<(String, SocketAddr)>,
}

impl IdentClient {
    fn new(answer: impl Fn(&str) -> String + Send + 'static) -> IdentClient {
        let ip = next_loopback();
        IdentClient {
            ip,
            queries: identd(ip, answer),
        }
    }

    /// The one query the ident server got: it must be about `client` -> `srv` and come from
    /// the address the client connected to.
    fn check_query(&self, srv: &Server, client: SocketAddr) {
        let (line, peer) = self
            .queries
            .recv_timeout(Duration::from_secs(15))
            .expect("an ident query");
        assert_eq!(line, format!("{} , {}\r\n", client.port(), srv.addr.port()));
        assert_eq!(peer.ip(), srv.addr.ip(), "asked from the proxy's address");
    }
}

fn userid(user: &str) -> impl Fn(&str) -> String + Send + 'static {
    let user = user.to_string();
    move |ports| format!("{ports} : USERID : UNIX : {user}\r\n")
}

#[test]
fn rfc931_ident_user_passes() {
    require_root!();
    let user = TestUser::new("id");
    let echo = echo_server();
    let srv = start(&open("rfc931"));

    // A client offering "no authentication": the ident answer names it.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"known by ident");
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    wait_pass_line(&srv, "rfc931", &user.name, me);

    // A client offering only username/password: the RFC 1929 exchange happens, but the user
    // is the one ident names, whatever name and password the client sent.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, b"someone-else", b"anything"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"ident over rfc1929");
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    wait_pass_line(&srv, "rfc931", &user.name, me);
    assert!(!srv.log_text().contains("someone-else"));
}

#[test]
fn rfc931_refusals() {
    require_root!();
    let user = TestUser::new("idr");
    let echo = echo_server();
    let srv = start(&open("rfc931"));

    // ERROR : NO-USER. The method was chosen (05 00); the lookup runs once the request is in,
    // and a failure answers it with 02 (not allowed), as Dante does.
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 15), "closed after the failed lookup");
    refusal_line(&srv, me, 13, "ident server said ERROR: NO-USER");

    // A name that is no system user.
    let ghost = format!("rskidghost{}", std::process::id());
    let c = IdentClient::new(userid(&ghost));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 15));
    refusal_line(
        &srv,
        me,
        13,
        &format!("no user \"{ghost}\" found in system password file"),
    );

    // Over RFC 1929 the failure is 01 01.
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : HIDDEN-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, user.name.as_bytes(), b"x"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"x"),
        "ident server said ERROR: HIDDEN-USER",
    );

    // No ident server at all on the client's address: connection refused.
    let lonely = next_loopback();
    let mut s = client_from(lonely, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    assert!(closed_within(&mut s, 15));
    refusal_line(
        &srv,
        me,
        13,
        &format!("ident lookup to {lonely}.113 failed: Connection refused"),
    );

    // And a known user still gets through.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"still serving");
}

/// Dante 1.4.2 with `socksmethod: rfc931` and an ident server answering `ERROR : NO-USER`
/// (seen with Debian's danted): selects 00, reads the request, answers it `05 02` (not
/// allowed by ruleset), then closes, and logs `block(1): tcp/accept ]: CLIENT SERVER: blocked
/// by higher-level socks-rule #0: no rules matched; using default block rule`. rsockd closes
/// right after `05 00` without reading the request: the client gets no SOCKS reply at all.
#[test]
fn rfc931_failed_lookup_answers_the_request_with_rep_2() {
    require_root!();
    let echo = echo_server();
    let srv = start(&open("rfc931"));
    let c = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    let SocketAddr::V4(t) = echo.addr else {
        unreachable!()
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    let _ = s.write_all(&req);
    let reply = read_upto(&mut s, 10);
    assert_eq!(reply.get(..2), Some(&[5u8, 2][..]), "reply {reply:?}");
    assert!(closed_within(&mut s, 10));
}
