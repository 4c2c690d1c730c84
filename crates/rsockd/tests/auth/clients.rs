//! System users through real clients (curl, python-socks), and SOCKS v4 and method
//! selection where a password is required.

use super::*;

fn curl(proxy: SocketAddr, proxy_user: &str, url: &str) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks5"])
        .arg(proxy.to_string())
        .args(["--proxy-user", proxy_user, url])
        .output()
        .unwrap()
}

#[test]
fn system_user_with_curl() {
    require_root!();
    assert!(tool("curl"), "curl is required (scripts/deps.sh)");
    let user = TestUser::new("curl");
    let web = http_server("body through an authenticated proxy");
    let url = format!("http://127.0.0.1:{}/", web.port());
    let srv = start(&open("username"));
    let good = format!("{}:{}", user.name, user.password);

    let out = curl(srv.addr, &good, &url);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "body through an authenticated proxy"
    );
    srv.wait_log("the session line", 15, |t| {
        t.contains(&format!(
            ": info: pass(1): tcp/connect [: username%{}@127.0.0.1.",
            user.name
        ))
    });

    // Wrong password: curl gives up (CURLE_PROXY, 97), the log says why.
    let wrong_pw = format!("Wrong-{}-pw", std::process::id());
    let out = curl(srv.addr, &format!("{}:{wrong_pw}", user.name), &url);
    assert_eq!(out.status.code(), Some(97), "{out:?}");
    assert!(out.stdout.is_empty());
    let reason = format!(
        "system password authentication failed for user \"{}\"",
        user.name
    );
    let text = srv.wait_log("the wrong password's line", 15, |t| t.contains(&reason));
    let line = text.lines().find(|l| l.contains(&reason)).unwrap();
    assert!(
        line.contains(": info: block(1): tcp/accept ]: 127.0.0.1.")
            && line.contains(&format!(" {}: error after reading ", dante_addr(srv.addr)))
            && line.ends_with(&format!(" seconds: {reason}")),
        "{line}"
    );

    // Unknown user.
    let ghost = format!("rskghost{}", std::process::id());
    let out = curl(srv.addr, &format!("{ghost}:{wrong_pw}"), &url);
    assert_eq!(out.status.code(), Some(97), "{out:?}");
    let reason = format!(
        "could not access user \"{ghost}\"'s records in the system password file: no system error"
    );
    srv.wait_log("the unknown user's line", 15, |t| {
        t.lines()
            .any(|l| l.contains(": info: block(1): tcp/accept ]: ") && l.ends_with(&reason))
    });

    // Still serving.
    let out = curl(srv.addr, &good, &url);
    assert!(out.status.success(), "{out:?}");
    let text = srv.log_text();
    assert!(!text.contains(&wrong_pw), "a password in the log:\n{text}");
    assert!(
        !text.contains(&user.password),
        "a password in the log:\n{text}"
    );
}

const PY_CLIENT: &str = "import socks, sys\n\
ip, port, user, pw, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])\n\
s = socks.socksocket()\n\
s.set_proxy(socks.SOCKS5, ip, port, username=user, password=pw)\n\
s.settimeout(20)\n\
try:\n\
\x20   s.connect(('127.0.0.1', tport))\n\
except Exception as e:\n\
\x20   print('refused', e)\n\
\x20   sys.exit(0)\n\
s.sendall(b'py-auth')\n\
got = b''\n\
while len(got) < 7:\n\
\x20   b = s.recv(7 - len(got))\n\
\x20   if not b: break\n\
\x20   got += b\n\
print('ok', got.decode())\n";

fn python_client(srv: &Server, user: &str, pw: &str, echo: &Echo) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(srv.ip.to_string())
        .arg(srv.addr.port().to_string())
        .arg(user)
        .arg(pw)
        .arg(echo.addr.port().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn system_user_with_python_socks() {
    require_root!();
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "Debian's python3 with python3-socks is required (scripts/deps.sh)"
    );
    let user = TestUser::new("py");
    let echo = echo_server();
    let srv = start(&open("username"));
    assert_eq!(
        python_client(&srv, &user.name, &user.password, &echo),
        "ok py-auth"
    );
    assert_eq!(
        python_client(&srv, &user.name, "not-the-password", &echo),
        // PySocks wraps its SOCKS5AuthError("SOCKS5 authentication failed") raised on 01 01.
        "refused Socket error: SOCKS5 authentication failed"
    );
    let reason = format!(
        "system password authentication failed for user \"{}\"",
        user.name
    );
    srv.wait_log("the refusal", 15, |t| {
        t.lines()
            .any(|l| l.ends_with(&format!(" seconds: {reason}")))
    });
    assert_eq!(
        python_client(&srv, &user.name, &user.password, &echo),
        "ok py-auth"
    );
    assert!(!srv.log_text().contains("not-the-password"));
}

#[test]
fn socks4_refused_where_only_username_is_allowed() {
    require_root!();
    let web = http_server("must not be reached");
    let user = TestUser::new("s4");
    let echo = echo_server();
    let srv = start(&open("username"));

    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--socks4"])
        .arg(srv.addr.to_string())
        .arg(format!("http://127.0.0.1:{}/", web.port()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // Raw: CD 91 (rejected), then close.
    let mut s = client(srv.addr);
    let SocketAddr::V4(t) = echo.addr else {
        unreachable!()
    };
    let mut req = vec![4, 1];
    req.extend_from_slice(&t.port().to_be_bytes());
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(b"rsk\0");
    s.write_all(&req).unwrap();
    assert_eq!(read_upto(&mut s, 8), [0, 91, 0, 0, 0, 0, 0, 0]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        req.len(),
        "SOCKS v4 client refused: it cannot authenticate and this rule requires a method other \
         than \"none\"",
    );
    session(srv.addr, &user.name, &user.password, &echo);
}

#[test]
fn method_preference_is_the_servers() {
    require_root!();
    let user = TestUser::new("pref");
    let echo = echo_server();

    // username first: a client offering none and username gets username.
    let srv = start(&open("username none"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0, 2]), [5, 2]);
    s.write_all(&auth_request(
        1,
        user.name.as_bytes(),
        user.password.as_bytes(),
    ))
    .unwrap();
    assert_eq!(read_upto(&mut s, 2), [1, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"username first");
    wait_pass_line(&srv, "username", &user.name, s.local_addr().unwrap());
    // The client's order does not matter either.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[2, 0]), [5, 2]);
    // A client offering only none still gets in: none is allowed.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"none allowed too");

    // none first: the same client gets none, and its session line names no user.
    let srv = start(&open("none username"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0, 2]), [5, 0]);
    assert_eq!(connect_req(&mut s, echo.addr), 0);
    echo_once(&mut s, b"none first");
    let me = s.local_addr().unwrap();
    srv.wait_log("the session line without a user", 15, |t| {
        t.contains(&format!(
            ": info: pass(1): tcp/connect [: {} {} -> ",
            dante_addr(me),
            dante_addr(srv.addr)
        ))
    });

    // Only username allowed, the client offers only none: 05 FF and close.
    let srv = start(&open("username"));
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[0]), [5, 0xff]);
    let me = s.local_addr().unwrap();
    assert!(closed_within(&mut s, 10));
    refusal_line(
        &srv,
        me,
        3,
        "client offered no acceptable authentication method",
    );
    // GSSAPI alone is no better.
    let mut s = client(srv.addr);
    assert_eq!(greet(&mut s, &[1]), [5, 0xff]);
    session(srv.addr, &user.name, &user.password, &echo);
}
