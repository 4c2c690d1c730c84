//! The privileged auth helper: its uid beside unprivileged mothers and relays, its death and
//! re-spawn, and a mother's death during logins.

use super::*;

#[test]
fn helper_keeps_root_while_mothers_and_relays_run_as_nobody() {
    require_root!();
    let user = TestUser::new("priv");
    let echo = echo_server();
    let srv = start(&open("username"));
    let helper = the_helper(&srv);
    assert_eq!(
        uids(helper).unwrap(),
        [0, 0, 0, 0],
        "the auth helper keeps user.privileged (root)"
    );
    assert!(
        children_of(srv.pid).contains(&helper),
        "mother 1 started the helper"
    );
    let m = uids(srv.pid).unwrap();
    assert_eq!(
        [m[0], m[1], m[3]],
        [NOBODY; 3],
        "mother runs as nobody: {m:?}"
    );
    let relays = relays_of(srv.pid);
    assert!(!relays.is_empty());
    for (r, _) in relays {
        let u = uids(r).unwrap();
        assert_eq!(u, [NOBODY; 4], "relay {r} runs as nobody");
    }
    // And it works: shadow is read by the helper, not by the unprivileged mother.
    let me = session(srv.addr, &user.name, &user.password, &echo);
    wait_pass_line(&srv, "username", &user.name, me);
}

/// Dante 1.4.2 closes an authenticated session with `pass(1): tcp/accept ]: N -> CLIENT
/// SERVER -> M: ...`: the client-rule line has the bare client address, and only the
/// socks-rule (`tcp/connect`) lines carry `username%USER@` (seen with Debian's danted). rsockd
/// writes `username%USER@CLIENT` in the closing `tcp/accept` line too.
#[test]
fn closing_accept_line_has_the_bare_client_address() {
    require_root!();
    let user = TestUser::new("acc");
    let echo = echo_server();
    let srv = start(&open("username"));
    let me = session(srv.addr, &user.name, &user.password, &echo);
    let pair = format!("{} {} -> ", dante_addr(me), dante_addr(srv.addr));
    let closing = |l: &str| l.contains(": info: pass(1): tcp/accept ]: ") && l.contains(&pair);
    let text = srv.wait_log("the closing accept line", 15, |t| t.lines().any(closing));
    let line = text.lines().find(|l| closing(l)).unwrap();
    assert!(line.contains(&format!(" -> {pair}")), "{line}");
}

#[test]
fn no_helper_without_a_password_method() {
    require_root!();
    let srv = start(&open("none"));
    assert_eq!(helpers(&srv), Vec::<i32>::new(), "no method needs it");
    let srv = start(&open("rfc931"));
    assert_eq!(
        helpers(&srv),
        Vec::<i32>::new(),
        "ident needs no privileges"
    );
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 01 00 and a working session.
    Served,
    /// 01 01, then the server closed.
    Refused,
    /// Closed (EOF or reset) before an RFC 1929 reply.
    Closed,
    /// Anything else: a hang (no answer within the read timeout) or wrong bytes.
    Bad(String),
}

fn attempt(proxy: SocketAddr, user: &str, pw: &str, echo: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect(proxy) {
        Ok(s) => s,
        Err(e) => return Outcome::Bad(format!("connect: {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut msg = vec![5, 1, 2];
    msg.extend(auth_request(1, user.as_bytes(), pw.as_bytes()));
    if s.write_all(&msg).is_err() {
        return Outcome::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    while got.len() < 4 {
        match s.read(&mut buf[..4 - got.len()]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if timed_out(&e) => return Outcome::Bad(format!("hung after {got:?}")),
            Err(_) => break,
        }
    }
    match got.as_slice() {
        [5, 2, 1, 0] => {
            let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
            req.extend_from_slice(&echo.port().to_be_bytes());
            if s.write_all(&req).is_err() {
                return Outcome::Bad("write after 01 00".into());
            }
            let mut rep = [0u8; 10];
            if s.read_exact(&mut rep).is_err() || rep[1] != 0 {
                return Outcome::Bad(format!("CONNECT reply {rep:?}"));
            }
            if s.write_all(b"ping").is_err() {
                return Outcome::Bad("write to the session".into());
            }
            let mut back = [0u8; 4];
            match s.read_exact(&mut back) {
                Ok(()) if &back == b"ping" => Outcome::Served,
                r => Outcome::Bad(format!("echo: {r:?} {back:?}")),
            }
        }
        [5, 2, 1, 1] => {
            if closed_within(&mut s, 10) {
                Outcome::Refused
            } else {
                Outcome::Bad("not closed after 01 01".into())
            }
        }
        [] | [5] | [5, 2] => Outcome::Closed,
        other => Outcome::Bad(format!("bytes {other:?}")),
    }
}

#[test]
fn helper_killed_during_logins_is_respawned() {
    require_root!();
    let user = TestUser::new("kill");
    let echo = echo_server();
    let srv = start(&open("username"));
    let old = the_helper(&srv);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (proxy, name, pw, target) = (
        srv.addr,
        user.name.clone(),
        user.password.clone(),
        echo.addr,
    );
    // Three clients in a loop each (at most 200 attempts or 20 s in all), so that checks are
    // in flight when the helper dies.
    let attempts = Arc::new(AtomicUsize::new(0));
    let loopers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, served, attempts) = (stop.clone(), served.clone(), attempts.clone());
            let (name, pw) = (name.clone(), pw.clone());
            thread::spawn(move || {
                let start = Instant::now();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst)
                    && attempts.fetch_add(1, Ordering::SeqCst) < 200
                    && start.elapsed() < Duration::from_secs(20)
                {
                    let o = attempt(proxy, &name, &pw, target);
                    if o == Outcome::Served {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    outcomes.push(o);
                }
                outcomes
            })
        })
        .collect();
    wait_until("a few logins before the kill", 15, || {
        served.load(Ordering::SeqCst) >= 3
    });
    assert_eq!(unsafe_free_kill(old, SIGKILL), 0);
    let warning = format!(
        ": warning: auth helper (pid {old}) exited unexpectedly; logins fail until it is \
         re-spawned"
    );
    srv.wait_log("the helper warning", 15, |t| t.contains(&warning));
    let mut new = 0;
    wait_until("a new helper", 15, || {
        let h = helpers(&srv);
        match h.as_slice() {
            [p] if *p != old => {
                new = *p;
                true
            }
            _ => false,
        }
    });
    assert!(wait_gone(old, 10), "the old helper is gone (reaped)");
    assert_eq!(
        uids(new).unwrap(),
        [0, 0, 0, 0],
        "the new helper is root too"
    );
    let before = served.load(Ordering::SeqCst);
    wait_until("logins through the new helper", 20, || {
        served.load(Ordering::SeqCst) >= before + 3
    });
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = loopers
        .into_iter()
        .flat_map(|l| l.join().unwrap())
        .collect();
    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Bad(_)))
        .collect();
    assert!(bad.is_empty(), "unclean attempts: {bad:?} of {outcomes:?}");
    eprintln!(
        "{} attempts: {} served, {} refused, {} closed",
        outcomes.len(),
        outcomes.iter().filter(|o| **o == Outcome::Served).count(),
        outcomes.iter().filter(|o| **o == Outcome::Refused).count(),
        outcomes.iter().filter(|o| **o == Outcome::Closed).count()
    );
    // A refusal during the gap says why.
    let text = srv.log_text();
    for l in text
        .lines()
        .filter(|l| l.contains("block(1): tcp/accept ]: "))
    {
        eprintln!("{l}");
        assert!(
            l.ends_with("the auth helper exited before answering")
                || l.ends_with("the auth helper is not available")
                || l.contains("cannot reach the auth helper"),
            "unexpected refusal: {l}"
        );
    }
    session(srv.addr, &user.name, &user.password, &echo);
    let me = refused(srv.addr, user.name.as_bytes(), b"after-the-kill");
    refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"after-the-kill"),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    assert_eq!(helpers(&srv), vec![new], "one helper only");
}

#[test]
fn second_mother_killed_logins_go_on_and_its_successor_authenticates() {
    require_root!();
    let user = TestUser::new("m2");
    let echo = echo_server();
    let srv = Prepared::new()
        .start(&open("username"), &["-N", "2"])
        .unwrap();
    let m1 = srv.pid;
    let m2 = mother_pid(srv.pid, 2).unwrap();
    let helper = the_helper(&srv);
    assert_eq!(uids(m2).unwrap()[1], NOBODY);
    let _orphans = Orphans::of(relays_of(m2).into_iter().map(|(p, _)| p).collect());
    assert_eq!(unsafe_free_kill(m2, SIGKILL), 0);
    // Whichever mother accepts, every login works.
    for _ in 0..10 {
        session(srv.addr, &user.name, &user.password, &echo);
    }
    refused(srv.addr, user.name.as_bytes(), b"not-it");
    let mut new_m2 = 0;
    wait_until("mother 2 to be re-spawned", 15, || {
        match mother_pid(srv.pid, 2) {
            Some(p) if p != m2 && alive(p) && !relays_of(p).is_empty() => {
                new_m2 = p;
                true
            }
            _ => false,
        }
    });
    assert_eq!(the_helper(&srv), helper, "the helper outlived mother 2");
    // With mother 1 stopped, only the new mother 2 accepts: its own channel to the helper
    // works.
    stop(m1);
    let resume = Resume(m1);
    for _ in 0..3 {
        let me = session(srv.addr, &user.name, &user.password, &echo);
        let text = srv.wait_log("mother 2's accept line", 15, |t| {
            t.contains(&format!(
                "rsockd[{new_m2}]: info: pass(1): tcp/accept [: {} ",
                dante_addr(me)
            ))
        });
        assert!(text.contains("username%"));
    }
    let me = refused(srv.addr, user.name.as_bytes(), b"not-it");
    let line = refusal_line(
        &srv,
        me,
        login_bytes(user.name.as_bytes(), b"not-it"),
        &format!(
            "system password authentication failed for user \"{}\"",
            user.name
        ),
    );
    assert!(line.contains(&format!("rsockd[{new_m2}]: ")), "{line}");
    drop(resume);
    session(srv.addr, &user.name, &user.password, &echo);
}

/// `cpu.schedule.auth-helper` / `cpu.mask.auth-helper`: the helper does not read the
/// configuration, so the process that starts it sets them, on every (re)start; read back
/// from /proc.
#[test]
fn cpu_settings_of_the_auth_helper() {
    require_root!();
    let srv = start(&format!(
        "cpu.schedule.auth-helper: batch/0\ncpu.mask.auth-helper: 0\n{}",
        open("username")
    ));
    let check = |pid: i32| {
        let sched = std::fs::read_to_string(format!("/proc/{pid}/sched")).unwrap();
        let policy = sched
            .lines()
            .find(|l| l.starts_with("policy"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string());
        assert_eq!(policy.as_deref(), Some("3"), "SCHED_BATCH is 3:\n{sched}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim);
        assert_eq!(cpus, Some("0"), "{status}");
    };
    let helper = the_helper(&srv);
    check(helper);
    // The mother keeps its own (default) policy.
    let sched = std::fs::read_to_string(format!("/proc/{}/sched", srv.pid)).unwrap();
    assert!(
        sched
            .lines()
            .any(|l| l.starts_with("policy") && l.split(':').nth(1).map(str::trim) == Some("0")),
        "{sched}"
    );
    // A re-spawned helper gets them too.
    unsafe_free_kill(helper, SIGKILL);
    wait_until("a new helper", 20, || {
        helpers(&srv).iter().any(|&p| p != helper)
    });
    let new = helpers(&srv).into_iter().find(|&p| p != helper).unwrap();
    check(new);
}
