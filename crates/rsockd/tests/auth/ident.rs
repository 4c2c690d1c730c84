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

/// Client rules for the accept-time tests: rule 1 wants the ident user `only`, rule 2 any
/// ident user, rule 3 blocks everyone else; sessions are logged.
fn accept_time_rules(only: &str, socksmethod: &str) -> String {
    format!(
        "clientmethod: rfc931 none\n\
         socksmethod: {socksmethod}\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error\n clientmethod: rfc931\n user: {only}\n}}\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error\n clientmethod: rfc931\n}}\n\
         client block {{ from: 0/0 to: 0/0 log: connect disconnect error\n clientmethod: none\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n"
    )
}

/// The ident server gets no second query within a short while.
fn no_more_queries(c: &IdentClient) {
    assert!(
        c.queries.recv_timeout(Duration::from_millis(500)).is_err(),
        "the ident server was asked twice"
    );
}

#[test]
fn clientmethod_rfc931_picks_the_client_rule_at_accept() {
    require_root!();
    let user = TestUser::new("cma");
    let other = TestUser::new("cmb");
    let echo = echo_server();
    let srv = start(&accept_time_rules(&other.name, "none"));

    // The lookup happens at accept, before the client sends a byte.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    let me = s.local_addr().unwrap();
    c.check_query(&srv, me);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"accepted by ident");
    // Rule 1 names another user: rule 2 is the client's.
    srv.wait_log("the accept line", 10, |t| {
        t.contains(&format!(
            "info: pass(2): tcp/accept [: rfc931%{}@{} {}",
            user.name,
            dante_addr(me),
            dante_addr(srv.addr)
        ))
    });
    no_more_queries(&c);

    // The user rule 1 names.
    let c = IdentClient::new(userid(&other.name));
    let mut s = client_from(c.ip, srv.addr);
    let me = s.local_addr().unwrap();
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"rule one");
    srv.wait_log("rule 1's accept line", 10, |t| {
        t.contains(&format!(
            "info: pass(1): tcp/accept [: rfc931%{}@{} ",
            other.name,
            dante_addr(me)
        ))
    });

    // No user, a name that is not a system user, no ident server: rule 3 blocks, with
    // Dante's line (no reason), and the client never gets a SOCKS byte.
    let ghost = format!("rskcmghost{}", std::process::id());
    let no_user = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let unknown = IdentClient::new(userid(&ghost));
    for ip in [no_user.ip, unknown.ip, next_loopback()] {
        let mut s = client_from(ip, srv.addr);
        let me = s.local_addr().unwrap();
        let _ = s.write_all(&[5, 1, 0]);
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut b = [0u8; 2];
        assert!(
            !matches!(s.read(&mut b), Ok(n) if n > 0),
            "a blocked client got a method reply"
        );
        let want = format!(
            "info: block(3): tcp/accept ]: {} {}\n",
            dante_addr(me),
            dante_addr(srv.addr)
        );
        srv.wait_log("rule 3's block line", 15, |t| t.contains(&want));
    }
    assert!(
        !srv.log_text().contains(&ghost),
        "no accept line names the ghost"
    );

    // And the server goes on serving.
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"still serving");
}

/// `clientmethod: rfc931` with `socksmethod: rfc931`: Dante asks the ident server once (seen
/// with danted 1.4.2), and the name reaches the socks rules' `user:`.
#[test]
fn socksmethod_rfc931_reuses_the_accept_time_answer() {
    require_root!();
    let user = TestUser::new("cmr");
    let echo = echo_server();
    let srv = start(&format!(
        "clientmethod: rfc931\nsocksmethod: rfc931\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error\n user: nobody-else\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error\n user: {}\n}}\n",
        user.name
    ));
    let c = IdentClient::new(userid(&user.name));
    let mut s = client_from(c.ip, srv.addr);
    let me = s.local_addr().unwrap();
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"one question");
    c.check_query(&srv, me);
    no_more_queries(&c);
    srv.wait_log("rule 2's connect line", 10, |t| {
        t.contains(&format!(
            "info: pass(2): tcp/connect [: rfc931%{}@{} ",
            user.name,
            dante_addr(me)
        ))
    });
}

/// The same accept-time story against Debian's danted: the same lines.
#[test]
fn clientmethod_rfc931_lines_match_danted() {
    require_root!();
    let user = TestUser::new("cmd");
    let echo = echo_server();
    let rules = accept_time_rules("nobody", "none");
    let srv = start(&rules);
    let d = Danted::start(&rules);
    let (danted, log) = (d.addr, d.log.clone());
    let c = IdentClient::new(userid(&user.name));
    let no_user = IdentClient::new(|ports| format!("{ports} : ERROR : NO-USER\r\n"));
    let mut shapes = Vec::new();
    for (proxy, path) in [(danted, log.clone()), (srv.addr, srv.log.clone())] {
        let mut s = client_from(c.ip, proxy);
        let me = s.local_addr().unwrap();
        assert_eq!(greet(&mut s, &[0]), [5, 0]);
        assert_eq!(connect_req(&mut s, echo.addr), 0);
        echo_once(&mut s, b"both");
        drop(s);
        let mut b = client_from(no_user.ip, proxy);
        let blocked = b.local_addr().unwrap();
        let _ = b.write_all(&[5, 1, 0]);
        let _ = read_all(&mut b);
        let want = format!("block(3): tcp/accept ]: {}", dante_addr(blocked));
        wait_until("the block line", 15, || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&want))
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let pick = |marker: &str| {
            text.lines()
                .find(|l| l.contains(marker))
                .and_then(|l| l.find(marker).map(|i| l[i..].to_string()))
                .map(|l| {
                    l.replace(&dante_addr(blocked), "BLOCKED")
                        .replace(&dante_addr(proxy), "PROXY")
                })
        };
        let opened = text
            .lines()
            .find(|l| l.contains("tcp/accept [: "))
            .map(|l| {
                l.split_once("info: ")
                    .unwrap()
                    .1
                    .replace(&dante_addr(me), "CLIENT")
                    .replace(&dante_addr(proxy), "PROXY")
            });
        shapes.push((opened, pick(&want)));
    }
    drop(d);
    assert_eq!(
        shapes[0].0.as_deref(),
        Some(format!("pass(2): tcp/accept [: rfc931%{}@CLIENT PROXY", user.name).as_str()),
        "danted: {shapes:?}"
    );
    assert_eq!(shapes[1], shapes[0], "rsockd vs danted");
}

/// `clientmethod: pam.address`: PAM with the client's address alone, at accept, under the
/// client rule's service (pam_succeed_if on the remote host).
#[test]
fn clientmethod_pam_address_checks_the_client_address() {
    require_root!();
    let allowed = next_loopback();
    let service = Service::new(
        "cmpam",
        &format!(
            "auth required pam_succeed_if.so rhost = {allowed}\naccount required pam_permit.so\n"
        ),
    );
    let echo = echo_server();
    let srv = start(&format!(
        "clientmethod: pam.address\nsocksmethod: none\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error\n pam.servicename: {}\n}}\n\
         socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        service.name
    ));
    let mut s = client_from(allowed, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"pam by address");
    // Another address: PAM says no, no rule matches, and nothing is answered.
    let mut s = client_from(next_loopback(), srv.addr);
    let _ = s.write_all(&[5, 1, 0]);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut b = [0u8; 2];
    assert!(
        !matches!(s.read(&mut b), Ok(n) if n > 0),
        "refused client answered"
    );
    let mut s = client_from(allowed, srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
}
