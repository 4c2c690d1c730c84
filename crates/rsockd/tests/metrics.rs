//! `rsockd.metrics:`: `/metrics` scraped with curl and parsed with Python's prometheus_client
//! parsers (classic text and OpenMetrics) while known sessions run, at `-N 2`, after SIGKILLs
//! and a reload; `/healthz` while serving, draining, stopping and with a mother stopped; and
//! an admin port that refuses SOCKS, junk and floods without hurting SOCKS service.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{mother_pid, relays_of, wait_until, SIGCONT, SIGKILL};
use common::*;

const SIGTERM: i32 = 15;
const PY: &str = "/usr/bin/python3";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,\
                           text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Reads an exposition on stdin with prometheus_client's parser of the format named in argv[1]
/// and prints each sample as `name{k="v",...} value` with the labels sorted.
const PARSE: &str = r#"
import sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r %s" % (s.name, labels, float(s.value), fam.type))
"#;

/// The admin port's address, from its log line.
fn admin_addr(srv: &Server) -> SocketAddr {
    logged_addr(srv, "serving /metrics and /healthz on ")
}

/// One request with curl: (status, content type, body).
fn get(admin: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "-"])
        .args(["-w", "\n%{http_code} %{content_type}"]);
    if let Some(a) = accept {
        cmd.arg("-H").arg(format!("Accept: {a}"));
    }
    let out = cmd
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl must be installed (scripts/deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, ctype) = tail.split_once(' ').unwrap_or((tail, ""));
    let body = body.strip_suffix('\n').unwrap_or(body);
    (
        code.parse().unwrap_or(0),
        ctype.to_string(),
        body.to_string(),
    )
}

/// A scrape parsed by a real Prometheus parser: sample (`name{labels}`) to (value, type).
struct Scrape(BTreeMap<String, (f64, String)>);

impl Scrape {
    fn take(admin: SocketAddr, openmetrics: bool) -> Scrape {
        let (code, ctype, body) = get(admin, "/metrics", openmetrics.then_some(OPENMETRICS));
        assert_eq!(code, 200, "{body}");
        let format = if openmetrics {
            assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
            "openmetrics"
        } else {
            assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
            "classic"
        };
        let mut py = Command::new(PY)
            .args(["-c", PARSE, format])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Debian's python3 with python3-prometheus-client is required");
        py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = py.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the {format} parser refused the exposition: {}\n{body}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = BTreeMap::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let (rest, ty) = l.rsplit_once(' ').unwrap();
            let (name, v) = rest.rsplit_once(' ').unwrap();
            m.insert(name.to_string(), (v.parse().unwrap(), ty.to_string()));
        }
        Scrape(m)
    }

    /// A sample's value; 0 when the server has not written it (a label set never seen).
    fn v(&self, sample: &str) -> f64 {
        self.0.get(sample).map_or(0.0, |(v, _)| *v)
    }

    fn has(&self, sample: &str) -> bool {
        self.0.contains_key(sample)
    }

    fn ty(&self, sample: &str) -> &str {
        self.0.get(sample).map_or("", |(_, t)| t)
    }
}

fn bytes(s: &Scrape) -> (f64, f64) {
    (
        s.v("rsockd_bytes_total{direction=\"client_to_target\"}"),
        s.v("rsockd_bytes_total{direction=\"target_to_client\"}"),
    )
}

fn ended(s: &Scrape, cmd: &str, result: &str) -> f64 {
    s.v(&format!(
        "rsockd_sessions_total{{command=\"{cmd}\",result=\"{result}\"}}"
    ))
}

fn running(s: &Scrape, cmd: &str) -> f64 {
    s.v(&format!("rsockd_sessions{{command=\"{cmd}\"}}"))
}

fn echo_session(srv: &Server, echo: &Echo, n: usize) {
    let (mut s, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    let data = vec![7u8; n];
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// A SOCKS5 request (no authentication) with an IPv4 address: the stream and the reply's
/// code and address.
fn request(proxy: SocketAddr, cmd: u8, addr: SocketAddr) -> (TcpStream, u8, SocketAddr) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    assert_eq!(m, [5, 0]);
    let SocketAddr::V4(a) = addr else { panic!() };
    let mut req = vec![5, cmd, 0, 1];
    req.extend(a.ip().octets());
    req.extend(a.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let (rep, bound) = read_socks5_reply_bound(&mut s);
    (s, rep, bound.unwrap_or(addr))
}

/// A BIND session moving `n` bytes each way between the client and the peer that connects.
fn bind_session(srv: &Server, n: usize) {
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let (mut client, rep, bound) = request(srv.addr, 2, any);
    assert_eq!(rep, 0, "BIND granted");
    let mut peer = TcpStream::connect(bound).unwrap();
    let (rep, _) = read_socks5_reply_bound(&mut client);
    assert_eq!(rep, 0, "the second BIND reply");
    let data = vec![3u8; n];
    peer.write_all(&data).unwrap();
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).unwrap();
    client.write_all(&data).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// A UDP association that sends one datagram of `n` bytes to a UDP echo and gets it back;
/// the control connection is returned (closing it ends the association).
fn udp_session(srv: &Server, n: usize) -> TcpStream {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        echo.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if let Ok((k, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..k], from);
        }
    });
    let me = UdpSocket::bind("127.0.0.1:0").unwrap();
    me.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ctl, rep, relay) = request(srv.addr, 3, me.local_addr().unwrap());
    assert_eq!(rep, 0, "UDP ASSOCIATE granted");
    let SocketAddr::V4(t) = target else { panic!() };
    let mut dgram = vec![0, 0, 0, 1];
    dgram.extend(t.ip().octets());
    dgram.extend(t.port().to_be_bytes());
    dgram.extend(vec![9u8; n]);
    me.send_to(&dgram, relay).unwrap();
    let mut buf = [0u8; 2048];
    let (k, _) = me.recv_from(&mut buf).unwrap();
    assert_eq!(k, 10 + n, "the echoed datagram with its SOCKS header");
    ctl
}

fn metrics_config(rules: &str) -> String {
    base_config(&format!(
        "rsockd.metrics: {{IP}} port = {}\n{rules}",
        free_tcp_port("127.0.0.1")
    ))
}

#[test]
fn scrapes_are_exact_over_processes_and_survive_kills_and_reloads() {
    let echo = echo_server();
    let blocked = free_tcp_port("127.0.0.1");
    let srv = Server::start_with(
        &metrics_config(&format!(
            "client pass {{ from: 0/0 to: 0/0 }}\n\
             socks block {{ from: 0/0 to: 127.0.0.1/32 port = {blocked} }}\n\
             socks pass {{ from: 0/0 to: 0/0 }}\n"
        )),
        &["-N", "2"],
    );
    let admin = admin_addr(&srv);
    let s = Scrape::take(admin, false);
    assert_eq!(s.v("rsockd_processes{role=\"mother\"}"), 2.0);
    assert!(s.v("rsockd_processes{role=\"relay\"}") >= 2.0);
    assert_eq!(
        s.v(&format!(
            "rsockd_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(bytes(&s), (0.0, 0.0));
    assert_eq!(s.ty("rsockd_sessions{command=\"connect\"}"), "gauge");
    assert_eq!(
        s.ty("rsockd_sessions_total{command=\"connect\",result=\"ok\"}"),
        "counter"
    );

    // Known traffic: three CONNECTs, a BIND, a UDP association, one blocked, one bad request,
    // and a CONNECT that stays open.
    for n in [1000, 20_000, 300_000] {
        echo_session(&srv, &echo, n);
    }
    bind_session(&srv, 5000);
    let udp = udp_session(&srv, 700);
    let (_b, rep) = socks5_connect(srv.addr, SocketAddr::from(([127, 0, 0, 1], blocked)));
    assert_eq!(rep, 2);
    let mut junk = TcpStream::connect(srv.addr).unwrap();
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_within(&mut junk, 10));
    let (mut held, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut held, b"still here");

    let want = (1000 + 20_000 + 300_000 + 10 + 5000 + 700) as f64;
    let mut s = Scrape::take(admin, false);
    wait_until("the bytes to reach the counters", 15, || {
        s = Scrape::take(admin, false);
        bytes(&s) == (want, want)
    });
    assert_eq!(ended(&s, "connect", "ok"), 4.0);
    assert_eq!(ended(&s, "connect", "blocked"), 1.0);
    assert_eq!(ended(&s, "bind", "ok"), 1.0);
    assert_eq!(ended(&s, "udpassociate", "ok"), 1.0);
    assert_eq!(ended(&s, "none", "failed"), 1.0);
    assert_eq!(running(&s, "connect"), 1.0);
    assert_eq!(running(&s, "udpassociate"), 1.0);
    assert_eq!(s.v("rsockd_negotiating{}"), 0.0);
    assert_eq!(s.v("rsockd_handshake_duration_seconds_count{}"), 6.0);
    assert_eq!(
        s.v("rsockd_handshake_duration_seconds_bucket{le=\"+Inf\"}"),
        6.0
    );
    assert!(s.v("rsockd_handshake_duration_seconds_sum{}") > 0.0);
    // Rule numbers as the log lines give them: socks 1 blocked, socks 2 passed six.
    assert_eq!(
        s.v("rsockd_rule_sessions_total{rule=\"1\",type=\"socks\"}"),
        1.0
    );
    assert_eq!(
        s.v("rsockd_rule_sessions_total{rule=\"2\",type=\"socks\"}"),
        6.0
    );
    assert_eq!(
        s.v("rsockd_rule_sessions_total{rule=\"1\",type=\"client\"}"),
        8.0
    );
    drop(udp);

    // The same numbers through the OpenMetrics parser.
    let om = Scrape::take(admin, true);
    assert_eq!(bytes(&om), (want, want));
    assert_eq!(ended(&om, "connect", "ok"), 4.0);
    assert_eq!(
        om.ty("rsockd_bytes_total{direction=\"client_to_target\"}"),
        "counter"
    );
    assert_eq!(
        om.ty("rsockd_sessions_total{command=\"connect\",result=\"ok\"}"),
        "unknown",
        "the family that clashes with the rsockd_sessions gauge"
    );

    // The relay holding the open session is killed: the gauge drops, nothing else goes back.
    let mut relay = None;
    wait_until("the relay holding the session", 10, || {
        relay = [1, 2]
            .iter()
            .filter_map(|&i| mother_pid(srv.pid, i))
            .flat_map(relays_of)
            .find(|(_, n)| *n == 1)
            .map(|(p, _)| p);
        relay.is_some()
    });
    assert_eq!(unsafe_free_kill(relay.unwrap(), SIGKILL), 0);
    wait_until("the relay's replacement to be counted", 15, || {
        s = Scrape::take(admin, false);
        s.v("rsockd_process_restarts_total{role=\"relay\"}") == 1.0 && running(&s, "connect") == 0.0
    });
    assert_eq!(bytes(&s), (want, want), "bytes never go back");
    assert_eq!(ended(&s, "connect", "ok"), 4.0);

    // Mother 2 is killed and replaced, then a reload: nothing goes back.
    common::procs::replace_mother_2_then_reload(&srv);
    echo_session(&srv, &echo, 5);
    wait_until("the new session's bytes", 15, || {
        s = Scrape::take(admin, false);
        bytes(&s) == (want + 5.0, want + 5.0)
    });
    assert_eq!(ended(&s, "connect", "ok"), 5.0);
    assert_eq!(s.v("rsockd_process_restarts_total{role=\"mother\"}"), 1.0);
    assert_eq!(s.v("rsockd_processes{role=\"mother\"}"), 2.0);
}

#[test]
fn users_and_auth_failures() {
    require_root();
    let echo = echo_server();
    let (_dir, users) = password_file(&[("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")]);
    let conf = format!(
        "internal: {{IP}} port = 0\nexternal: 127.0.0.1\nsocksmethod: username\n\
         rsockd.users.file: {}\nrsockd.metrics: {{IP}} port = {}\nrsockd.metrics.users: 2\n\
         {OPEN_RULES}",
        users.display(),
        free_tcp_port("127.0.0.1")
    );
    let srv = Server::start_with(&conf, &["-N", "2"]);
    let admin = admin_addr(&srv);
    let session = |user: &str, pw: &str, n: usize| -> bool {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[5, 1, 2]).unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).unwrap();
        assert_eq!(m, [5, 2]);
        let mut login = vec![1, user.len() as u8];
        login.extend(user.as_bytes());
        login.push(pw.len() as u8);
        login.extend(pw.as_bytes());
        s.write_all(&login).unwrap();
        s.read_exact(&mut m).unwrap();
        if m != [1, 0] {
            return false;
        }
        let SocketAddr::V4(a) = echo.addr else {
            panic!()
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend(a.ip().octets());
        req.extend(a.port().to_be_bytes());
        s.write_all(&req).unwrap();
        assert_eq!(read_socks5_reply(&mut s), 0);
        let data = vec![1u8; n];
        s.write_all(&data).unwrap();
        let mut back = vec![0u8; n];
        s.read_exact(&mut back).unwrap();
        true
    };
    assert!(session("alice", "pw-a", 100));
    assert!(session("bob", "pw-b", 200));
    assert!(
        session("carol", "pw-c", 400),
        "a third user beyond rsockd.metrics.users: 2"
    );
    assert!(session("alice", "pw-a", 1000));
    assert!(!session("alice", "wrong", 1));
    assert!(!session("mallory", "x", 1));
    let mut s = Scrape::take(admin, false);
    wait_until("the users' bytes", 15, || {
        s = Scrape::take(admin, false);
        s.v("rsockd_user_bytes_total{direction=\"target_to_client\",user=\"\"}") == 400.0
    });
    let user = |u: &str, d: &str| {
        s.v(&format!(
            "rsockd_user_bytes_total{{direction=\"{d}\",user=\"{u}\"}}"
        ))
    };
    assert_eq!(user("alice", "client_to_target"), 1100.0);
    assert_eq!(user("alice", "target_to_client"), 1100.0);
    assert_eq!(user("bob", "target_to_client"), 200.0);
    assert_eq!(
        user("", "client_to_target"),
        400.0,
        "carol is summed under \"\""
    );
    assert!(!s.has("rsockd_user_bytes_total{direction=\"client_to_target\",user=\"carol\"}"));
    assert_eq!(s.v("rsockd_auth_failures_total{method=\"username\"}"), 2.0);
    assert_eq!(
        ended(&s, "none", "failed"),
        2.0,
        "failed logins end without a request"
    );
}

fn require_root() {
    assert!(
        rsockd_testkit::is_root(),
        "these tests run as root (CI does): the password file is root's"
    );
}

#[test]
fn healthz_serving_draining_with_a_mother_stopped_and_stopping() {
    let echo = echo_server();
    let piddir = tempfile::tempdir().unwrap();
    let pidfile = piddir.path().join("rsockd.pid");
    let mut srv = Server::start_with(
        &format!("rsockd.drain.timeout: 20\n{}", metrics_config(OPEN_RULES)),
        &["-N", "2", "-p", pidfile.to_str().unwrap()],
    );
    let admin = admin_addr(&srv);
    assert_eq!(
        get(admin, "/healthz", None),
        (200, "text/plain; charset=utf-8".into(), "ok".into())
    );

    // One mother stopped: the other answers every check.
    let m2 = mother_pid(srv.pid, 2).unwrap();
    common::procs::stop(m2);
    for _ in 0..5 {
        assert_eq!(get(admin, "/healthz", None).0, 200);
    }
    assert_eq!(unsafe_free_kill(m2, SIGCONT), 0);

    let order = |flag: &str| {
        let out = Command::new(BIN)
            .arg(flag)
            .arg("-p")
            .arg(&pidfile)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    order("--drain");
    srv.wait_log("both mothers draining", 10, |t| {
        t.contains("mother[1/2]: draining") && t.contains("mother[2/2]: draining")
    });
    for _ in 0..4 {
        let (code, _, body) = get(admin, "/healthz", None);
        assert_eq!((code, body.as_str()), (503, "draining (rsockd --drain)"));
    }
    order("--resume");
    wait_until("healthy again", 10, || {
        get(admin, "/healthz", None).0 == 200
    });

    // Stopping with a session open: 503 while it drains, metrics still served.
    let (mut held, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut held, b"draining");
    srv.signal(SIGTERM);
    wait_until("stopping", 10, || get(admin, "/healthz", None).0 == 503);
    for _ in 0..4 {
        let (code, _, body) = get(admin, "/healthz", None);
        assert_eq!((code, body.as_str()), (503, "stopping"));
    }
    let s = Scrape::take(admin, false);
    assert_eq!(running(&s, "connect"), 1.0);
    drop(held);
    assert!(
        srv.wait_exit(30).is_some(),
        "the server ends when the session does"
    );
    // Nothing answers once the server is gone.
    assert_eq!(get(admin, "/healthz", None).0, 0);
}

/// The response to raw bytes sent to the admin port (until it closes, at most 10 s).
fn raw(admin: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn admin_port_refuses_socks_junk_and_floods_and_socks_goes_on() {
    let echo = echo_server();
    let srv = Server::start_with(&metrics_config(OPEN_RULES), &["-N", "2"]);
    let admin = admin_addr(&srv);

    // Not a SOCKS port: a greeting gets an HTTP error, never a method choice.
    let r = raw(admin, &[5, 1, 0]);
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let r = raw(admin, &[4, 1, 0, 80, 127, 0, 0, 1, 0]);
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let r = raw(
        admin,
        format!("CONNECT {} HTTP/1.1\r\nHost: x\r\n\r\n", echo.addr).as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r:?}");
    let r = raw(admin, b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r:?}");
    assert_eq!(get(admin, "/", None).0, 404);
    assert_eq!(get(admin, "/metrics?x", None).0, 200);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://{admin}/metrics"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    // Junk and an oversized head are cut.
    let r = raw(admin, b"\x00\xff\x16\x03\x01junk\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.extend(vec![b'a'; 100_000]);
    let r = raw(admin, &big);
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r:?}");

    // A slow request is cut after its head time, not held.
    let mut slow = TcpStream::connect(admin).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    assert!(
        closed_within(&mut slow, 15),
        "a head that never ends is cut"
    );

    // 10,000 connections that never send: SOCKS sessions go on meanwhile, the flood is
    // closed at accept beyond each mother's few slots, and scrapes work once it is over.
    raise_nofile(12_000);
    let mut flood = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut refused = 0;
    while flood.len() + refused < 10_000 && Instant::now() < deadline {
        match TcpStream::connect(admin) {
            Ok(s) => flood.push(s),
            Err(_) => refused += 1,
        }
        if flood.len() % 1000 == 0 {
            echo_session(&srv, &echo, 1000);
        }
    }
    assert_eq!(flood.len() + refused, 10_000, "bounded in time");
    assert_serving(&srv, &echo);
    // Beyond the mothers' few slots the flood was closed by the server at once.
    let mut closed = 0;
    for s in flood.iter_mut().skip(500).take(500) {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(
        closed > 400,
        "only {closed} of 500 flood connections were closed"
    );
    drop(flood);
    wait_until("scrapes after the flood", 20, || {
        get(admin, "/metrics", None).0 == 200
    });
    echo_session(&srv, &echo, 10_000);
    let log = srv.log_text();
    assert!(!log.contains("accept(2) failed"), "{log}");
}

/// Raises this test process's soft open-files limit (the hard one is 20,000 here and in CI).
fn raise_nofile(n: u64) {
    let out = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={n}:"))
        .output()
        .expect("prlimit (util-linux) is required");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn limited_rules_show_their_slots_and_bandwidth() {
    let echo = echo_server();
    let srv = Server::start_with(
        &metrics_config(
            "client pass { from: 0/0 to: 0/0 bandwidth: 1000000 }\n\
             socks pass { from: 0/0 to: 0/0 session.max: 3 }\n",
        ),
        &["-N", "2"],
    );
    let admin = admin_addr(&srv);
    let (mut a, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut a, b"one");
    let (mut b, rep) = socks5_connect(srv.addr, echo.addr);
    assert_eq!(rep, 0);
    echo_once(&mut b, b"two");
    let s = Scrape::take(admin, false);
    assert_eq!(s.v("rsockd_limit_sessions{rule=\"1\",type=\"socks\"}"), 2.0);
    assert_eq!(
        s.v("rsockd_limit_sessions_max{rule=\"1\",type=\"socks\"}"),
        3.0
    );
    assert_eq!(
        s.v("rsockd_bandwidth_limit_bytes_per_second{rule=\"1\",type=\"client\"}"),
        1_000_000.0
    );
    drop(a);
    wait_until("the slot to be free", 10, || {
        Scrape::take(admin, false).v("rsockd_limit_sessions{rule=\"1\",type=\"socks\"}") == 1.0
    });
}

#[test]
fn an_admin_address_that_is_also_a_socks_address_is_refused_with_its_line() {
    let port = free_tcp_port("127.0.0.1");
    let conf = format!(
        "internal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\nsocksmethod: none\n\
         rsockd.metrics: 127.0.0.1 port = {port}\n{OPEN_RULES}"
    );
    let err = match Server::try_start(&conf, &[]) {
        Ok(_) => panic!("a SOCKS port cannot be the admin port too"),
        Err(e) => e,
    };
    let want = format!(
        "rsockd.metrics: 127.0.0.1.{port} is also an internal: address; the admin port needs a \
         port of its own"
    );
    assert!(err.contains(&want), "{err}");
}
