//! RFC 1929 on the wire: right, wrong and unknown users, version bytes, lengths, a request
//! split byte by byte.

use super::*;

#[test]
fn rfc1929_right_wrong_and_unknown_user() {
    require_root!();
    let user = TestUser::new("wire");
    let echo = echo_server();
    let srv = start(&open("username"));
    let (name, pw) = (user.name.as_bytes(), user.password.as_bytes());

    let me = session(srv.addr, &user.name, &user.password, &echo);
    let line = wait_pass_line(&srv, "username", &user.name, me);
    assert!(
        line.ends_with(&format!(" {}", dante_addr(echo.addr))),
        "{line}"
    );

    let bad = b"Wrong-password-1";
    let me = refused(srv.addr, name, bad);
    refusal_line(
        &srv,
        me,
        login_bytes(name, bad),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );

    let ghost = format!("rskghost{}", std::process::id());
    let me = refused(srv.addr, ghost.as_bytes(), pw);
    refusal_line(
        &srv,
        me,
        login_bytes(ghost.as_bytes(), pw),
        &format!(
            "could not access user \"{ghost}\"'s records in the system password file: no system error"
        ),
    );

    // Case matters; a right password for another name is no login.
    let upper = user.name.to_uppercase();
    let me = refused(srv.addr, upper.as_bytes(), pw);
    refusal_line(
        &srv,
        me,
        login_bytes(upper.as_bytes(), pw),
        &format!(
            "could not access user \"{upper}\"'s records in the system password file: no system error"
        ),
    );

    session(srv.addr, &user.name, &user.password, &echo);
    let text = srv.log_text();
    assert!(!text.contains(&user.password) && !text.contains("Wrong-password-1"));
}

#[test]
fn rfc1929_version_byte_and_empty_user() {
    require_root!();
    let user = TestUser::new("ver");
    let echo = echo_server();
    let srv = start(&open("username"));
    let (name, pw) = (user.name.as_bytes(), user.password.as_bytes());

    // Version 5 in the sub-negotiation (a common client mistake) is taken like 1; the reply
    // says 1, as RFC 1929 has it.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(5, name, pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"version five");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());

    // Version 2: refused before any check, even with the right password.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(2, name, pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    // The whole request arrived in one segment and was read before the version was checked.
    refusal_line(
        &srv,
        me,
        3 + auth_request(2, name, pw).len(),
        "bad username/password auth version 2 (expected 1)",
    );

    // ULEN 0.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&auth_request(1, b"", pw)).unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3 + auth_request(1, b"", pw).len(),
        "empty username",
    );

    session(srv.addr, &user.name, &user.password, &echo);
    assert!(!srv.log_text().contains(&user.password));
}

#[test]
fn rfc1929_longest_user_and_password() {
    require_root!();
    let echo = echo_server();
    // 255-byte name and password: the RFC's limits, through a password file (system names
    // are far shorter).
    let long_user: String = (0..255).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let long_pw: String = (0..255).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let prep = Prepared::new();
    let users = prep.path("users");
    write_users(&users, &hash_line("sha512", &long_user, &long_pw));
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let me = session(srv.addr, &long_user, &long_pw, &echo);
    wait_pass_line(&srv, "username", &long_user, me);

    // The same name with the last password byte changed.
    let mut bad = long_pw.clone().into_bytes();
    bad[254] = b'!';
    let me = refused(srv.addr, long_user.as_bytes(), &bad);
    refusal_line(
        &srv,
        me,
        login_bytes(long_user.as_bytes(), &bad),
        &format!(
            "password authentication failed for user \"{long_user}\" (password file {})",
            users.display()
        ),
    );

    // And a system user with a 255-byte password.
    let mut user = TestUser::new("long");
    user.set_password(&long_pw);
    let srv2 = start(&open("username"));
    session(srv2.addr, &user.name, &user.password, &echo);
    let me = refused(srv2.addr, user.name.as_bytes(), &bad);
    refusal_line(
        &srv2,
        me,
        login_bytes(user.name.as_bytes(), &bad),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    session(srv.addr, &long_user, &long_pw, &echo);
}

#[test]
fn rfc1929_lying_length_then_close() {
    require_root!();
    let user = TestUser::new("lie");
    let echo = echo_server();
    let srv = start(&open("username"));
    // ULEN 200, then 3 bytes of name, then the client closes its side.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    s.write_all(&[1, 200, b'a', b'b', b'c']).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let me = s.local_addr().unwrap();
    assert_eq!(
        read_upto(&mut s, 16),
        b"",
        "no reply to a request cut short, and the server closes"
    );
    refusal_line(&srv, me, 3 + 5, "eof from local client");
    // Nothing was checked, nothing stuck: the next login works.
    session(srv.addr, &user.name, &user.password, &echo);
}

#[test]
fn rfc1929_split_byte_by_byte() {
    require_root!();
    let user = TestUser::new("split");
    let echo = echo_server();
    let srv = start(&open("username"));
    let mut s = client(srv.addr);
    let mut all = vec![5, 1, 2];
    all.extend(auth_request(
        1,
        user.name.as_bytes(),
        user.password.as_bytes(),
    ));
    // Each byte its own segment (no delay, a pause between writes), the greeting included.
    for (i, b) in all.iter().enumerate() {
        s.write_all(&[*b]).unwrap();
        if i == 2 {
            assert_eq!(read_upto(&mut s, 2), [5, 2]);
        }
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"byte by byte");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());

    // A wrong password split the same way is refused the same way.
    let mut s = client(srv.addr);
    let bad = auth_request(1, user.name.as_bytes(), b"split-but-wrong");
    assert_eq!(greet(&mut s, &[2]), [5, 2]);
    for b in &bad {
        s.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(read_upto(&mut s, 2), [1, 1]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3 + bad.len(),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
}
