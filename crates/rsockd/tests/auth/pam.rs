//! PAM: at negotiation and at request time, and Dante's words for a refusal.

use super::*;

#[test]
fn pam_username_right_and_wrong_password() {
    require_root!();
    let user = TestUser::new("pam");
    let service = Service::new("pam", PAM_UNIX);
    let echo = echo_server();
    let srv = start(&format!(
        "pam.servicename: {}\n{}",
        service.name,
        open("pam.username")
    ));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "pam.username", &user.name, me);

    // pam_unix waits about two seconds after a failure; no time is asserted.
    let me = refused(srv.addr, user.name.as_bytes(), b"wrong-for-pam");
    let reason = format!("pam_authenticate() for user \"{}\" failed: ", user.name);
    let prefix = format!(
        ": info: block(1): tcp/accept ]: {} {}: error after reading {} bytes in ",
        dante_addr(me),
        dante_addr(srv.addr),
        login_bytes(user.name.as_bytes(), b"wrong-for-pam")
    );
    let text = srv.wait_log("the PAM refusal", 15, |t| {
        t.lines()
            .any(|l| l.contains(&prefix) && l.contains(&reason))
    });
    let line = text
        .lines()
        .find(|l| l.contains(&prefix) && l.contains(&reason))
        .unwrap();
    assert!(
        line.ends_with(&format!("{reason}Authentication failure")),
        "{line}"
    );
    session(srv.addr, &user.name, &user.password, &echo);
    assert!(!srv.log_text().contains("wrong-for-pam"));
    assert!(!srv.log_text().contains(&user.password));
}

/// Dante 1.4.2 words a PAM refusal `pam_authenticate() for user "NAME" failed: Authentication
/// failure` (seen with Debian's danted and pam_unix), and log scrapers match it (fail2ban's
/// filter for dante looks for `pam_authenticate() for user "NAME"`). rsockd writes `pam
/// authentication failed for user "NAME" (service S): pam_authenticate: Authentication
/// failure (PAM error 7)`.
#[test]
fn pam_refusal_reason_in_dantes_words() {
    require_root!();
    let user = TestUser::new("pamd");
    let service = Service::new("pamd", PAM_UNIX);
    let srv = start(&format!(
        "pam.servicename: {}\n{}",
        service.name,
        open("pam.username")
    ));
    let me = refused(srv.addr, user.name.as_bytes(), b"wrong-for-pam");
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"wrong-for-pam"),
        &format!(
            "pam_authenticate() for user \"{}\" failed: Authentication failure",
            user.name
        ),
    );
}

#[test]
/// Dante runs PAM at request time with the matched socks rule's `pam.servicename`: the RFC
/// 1929 exchange succeeds (01 00) and a wrong password is refused with reply 02 and a
/// `tcp/connect` block line naming the user.
fn pam_servicename_in_a_socks_rule_applies_at_request_time() {
    require_root!();
    let user = TestUser::new("pamr");
    let service = Service::new("pamr", PAM_UNIX);
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: pam.username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 pam.servicename: {} log: connect disconnect error }}\n",
        service.name
    ));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "pam.username", &user.name, me);

    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, user.name.as_bytes(), b"wrong-at-request"))
        .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0], "PAM waits for the socks rule");
    let me = s.local_addr().unwrap();
    assert_eq!(connect_req(&mut s, echo.addr), 2);
    let want = format!(
        ": info: block(1): tcp/connect ]: pam.username%{}@{} {} -> 0.0.0.0.0 {}: \
         pam_authenticate() for user \"{}\" failed: Authentication failure",
        user.name,
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(echo.addr),
        user.name
    );
    srv.wait_log("the request-time PAM refusal", 15, |t| {
        t.lines()
            .any(|l| l.ends_with(&want[2..]) || l.contains(&want))
    });
    assert!(!srv.log_text().contains("wrong-at-request"));
    session(srv.addr, &user.name, &user.password, &echo);
}
