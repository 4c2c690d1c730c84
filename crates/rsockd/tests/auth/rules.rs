//! `user:` and `group:` conditions in socks rules.

use super::*;

/// Logs in and asks for a CONNECT; returns REP (the login itself must succeed) and the
/// client's address.
fn login_then_connect(proxy: SocketAddr, user: &TestUser, target: SocketAddr) -> (u8, SocketAddr) {
    let (mut s, rep) = login(proxy, user.name.as_bytes(), user.password.as_bytes());
    assert_eq!(rep, [1, 0], "{} authenticates", user.name);
    let r = connect_req(&mut s, target);
    if r == 0 {
        echo_once(&mut s, b"rule passed");
    } else {
        assert!(closed_within(&mut s, 10), "closed after the refusal");
    }
    (r, s.local_addr().unwrap())
}

/// Waits for the two lines of a request that socks rule #2 blocked, from `me` (logged in as
/// `user`) to `target`, exactly `block(2): tcp/connect ]: username%USER@CLIENT SERVER ->
/// 0.0.0.0.0 TARGET` and `block(1): tcp/accept ]: CLIENT SERVER: blocked by higher-level
/// socks-rule #2` (client-rule lines name the bare client), as Dante writes them.
fn wait_rule_block(srv: &Server, user: &TestUser, me: SocketAddr, target: SocketAddr) {
    let pair = format!("{} {}", dante_addr(me), dante_addr(srv.addr));
    let connect = format!(
        ": info: block(2): tcp/connect ]: username%{}@{pair} -> 0.0.0.0.0 {}",
        user.name,
        dante_addr(target)
    );
    let accept =
        format!(": info: block(1): tcp/accept ]: {pair}: blocked by higher-level socks-rule #2");
    srv.wait_log("the block lines", 15, |t| {
        t.lines().any(|l| l.ends_with(&connect)) && t.lines().any(|l| l.ends_with(&accept))
    });
}

#[test]
fn user_condition_in_socks_rule() {
    require_root!();
    let alice = TestUser::new("ua");
    let bob = TestUser::new("ub");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 user: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        alice.name
    ));
    let (rep, me) = login_then_connect(srv.addr, &alice, echo.addr);
    assert_eq!(rep, 0, "alice is listed");
    wait_pass_line(&srv, "username", &alice.name, me);

    // bob's password is right, so the login succeeds; the rule then blocks him (REP 02).
    let (rep, me) = login_then_connect(srv.addr, &bob, echo.addr);
    assert_eq!(rep, 2, "bob is not listed: not allowed by ruleset");
    wait_rule_block(&srv, &bob, me, echo.addr);

    let (rep, _) = login_then_connect(srv.addr, &alice, echo.addr);
    assert_eq!(rep, 0);
}

/// Dante 1.4.2 writes the authenticated client in a socks rule's block line, as in its pass
/// lines: `block(2): tcp/connect ]: username%bob@127.0.0.1.PORT 127.0.0.1.1080 -> 0.0.0.0.0
/// TARGET` (seen with Debian's danted), so the log says which user a `user:`/`group:` rule
/// turned away.
#[test]
fn socks_rule_block_line_names_the_authenticated_user() {
    require_root!();
    let alice = TestUser::new("bla");
    let bob = TestUser::new("blb");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 user: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        alice.name
    ));
    let (rep, me) = login_then_connect(srv.addr, &bob, echo.addr);
    assert_eq!(rep, 2);
    let want = format!(
        ": info: block(2): tcp/connect ]: username%{}@{} {} -> 0.0.0.0.0 {}",
        bob.name,
        dante_addr(me),
        dante_addr(srv.addr),
        dante_addr(echo.addr)
    );
    srv.wait_log(&format!("`{want}`"), 15, |t| t.contains(&want));
}

#[test]
fn group_condition_primary_and_supplementary_members() {
    require_root!();
    let group = TestGroup::new("g");
    let primary = TestUser::with_groups("gp", Some(&group), None);
    let extra = TestUser::with_groups("gs", None, Some(&group));
    let outsider = TestUser::new("gn");
    let echo = echo_server();
    let srv = start(&format!(
        "socksmethod: username\n\
         client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n\
         socks pass {{ from: 0/0 to: 0/0 group: {} log: connect disconnect error }}\n\
         socks block {{ from: 0/0 to: 0/0 log: connect disconnect error }}\n",
        group.name
    ));
    for u in [&primary, &extra] {
        let (rep, me) = login_then_connect(srv.addr, u, echo.addr);
        assert_eq!(rep, 0, "{} is in group {}", u.name, group.name);
        wait_pass_line(&srv, "username", &u.name, me);
    }
    let (rep, me) = login_then_connect(srv.addr, &outsider, echo.addr);
    assert_eq!(rep, 2, "{} is not in the group", outsider.name);
    wait_rule_block(&srv, &outsider, me, echo.addr);
    let (rep, _) = login_then_connect(srv.addr, &extra, echo.addr);
    assert_eq!(rep, 0);
}
