//! Bounded chaos (issue: "A bounded chaos loop (about 60 s in CI)"): `-N 3` under the load of
//! 30 clients streaming checksummed data, while a killer SIGKILLs mothers 2..3 and relays at
//! random. Afterwards the tree under mother 1 is whole again (2 other mothers, each with its
//! relays), nothing in it is a zombie, every process's descriptor count is back to its
//! baseline, the log tells of every killed mother, and every session whose relay lived was
//! byte-exact, and the session-limit scoreboard is back at zero (no slot kept by the dead).
//!
//! `RSOCKD_CHAOS_SECS` sets the length of the chaos (default 60), `RSOCKD_CHAOS_SEED` replays
//! a run (the seed is printed). Every wait polls with a deadline; processes are ended by PID.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::*;
use common::*;
use killer::*;
use logs::*;
use rng::*;
use session::*;
use tree::*;

mod holder;
mod killer;
mod logs;
mod rng;
mod session;
mod tree;

const CLIENTS: usize = 30;
const SIGUSR1: i32 = 10;
/// A client cut during negotiation is excused if a mother was killed this shortly before.
const NEGOTIATION_WINDOW: Duration = Duration::from_secs(1);

#[test]
fn chaos_kills_under_load_lose_only_what_the_dead_held() {
    let secs: u64 = std::env::var("RSOCKD_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("RSOCKD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            splitmix(n.as_nanos() as u64 ^ u64::from(std::process::id()))
        });
    eprintln!("chaos: {secs} s, seed {seed} (RSOCKD_CHAOS_SEED={seed} replays the choices)");
    let t0 = Instant::now();

    let echo = echo_server();
    // Dropped after the server (which kills its tree): whatever we saw and escaped the tree.
    let mut orphans = Orphans::of(Vec::new());
    // A limit far above the load, so the scoreboard counts every session and the end state
    // can be checked: no slot may stay taken by a killed process.
    let rules = "client pass { from: 0/0 to: 0/0 log: connect disconnect error }\n\
                 socks pass { from: 0/0 to: 0/0 session.max: 100000 log: connect disconnect error }\n";
    let srv = Server::start_with(&base_config(rules), &["-N", "3"]);
    let root = srv.pid;

    // The whole tree, up and idle; a few sessions to warm it, then the baseline.
    wait_until("mothers 2 and 3 with their relays", 30, || {
        let snap = tree(root);
        (1..=3).all(|i| {
            snap.iter()
                .any(|p| role(&p.title) == Some(format!("mother {i}")))
                && snap
                    .iter()
                    .any(|p| role(&p.title).is_some_and(|r| r.starts_with(&format!("relay {i}."))))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..30 {
        let mut rng = Rng::new(seed, 1_000_000 + i);
        let s = session(
            srv.addr,
            echo.addr,
            1_000_000 + i as usize,
            Duration::from_millis(20),
            &mut rng,
            &stop,
        );
        assert!(matches!(s.outcome, Outcome::Exact), "warm-up: {s:?}");
    }
    let roles: Vec<String> = {
        let snap = tree(root);
        let mut r: Vec<String> = snap.iter().filter_map(|p| role(&p.title)).collect();
        r.sort();
        r
    };
    let mut distinct = roles.clone();
    distinct.dedup();
    assert!(
        distinct == roles
            && (1..=3).all(|i| roles.contains(&format!("mother {i}")))
            && roles.len() > 3,
        "one process per role at the start: {roles:?}"
    );
    let mut baseline = Fds::new();
    let mut last: Option<Fds> = None;
    wait_until("the idle tree to settle for its baseline", 30, || {
        let Ok(snap) = tree_whole(root, &roles) else {
            return false;
        };
        let now = fds_by_role(&snap);
        let counts = |f: &Fds| f.iter().map(|(r, v)| (r.clone(), v.0)).collect::<Vec<_>>();
        let settled = last.as_ref().is_some_and(|l| counts(l) == counts(&now));
        if settled {
            baseline = now;
            return true;
        }
        last = Some(now);
        thread::sleep(Duration::from_millis(200));
        false
    });
    eprintln!(
        "chaos: tree {:?}; descriptors {:?}",
        roles,
        baseline
            .iter()
            .map(|(r, v)| format!("{r}: {}", v.0))
            .collect::<Vec<_>>()
    );
    let mut seen_pids: Vec<i32> = tree(root).iter().map(|p| p.pid).collect();
    orphans.add(&seen_pids);

    // Load and chaos.
    let records: Arc<Mutex<Vec<Session>>> = Arc::new(Mutex::new(Vec::new()));
    let kills: Arc<Mutex<Vec<Kill>>> = Arc::new(Mutex::new(Vec::new()));
    let next_id = Arc::new(AtomicUsize::new(1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, records, next_id) = (stop.clone(), records.clone(), next_id.clone());
            let (proxy, target) = (srv.addr, echo.addr);
            thread::spawn(move || {
                let mut rng = Rng::new(seed, c as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let dur = rng.millis(200, 2000);
                    let s = session(proxy, target, id, dur, &mut rng, &stop);
                    records.lock().unwrap().push(s);
                }
            })
        })
        .collect();
    let killer_thread = {
        let (stop, kills) = (stop.clone(), kills.clone());
        thread::spawn(move || killer(root, seed, stop, kills))
    };
    let chaos_start = Instant::now();
    while chaos_start.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_millis(100));
        let now: Vec<i32> = tree(root).iter().map(|p| p.pid).collect();
        orphans.add(&now);
        seen_pids.extend(now);
    }
    stop.store(true, Ordering::SeqCst);
    killer_thread.join().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    let chaos_secs = chaos_start.elapsed().as_secs_f64();
    seen_pids.sort();
    seen_pids.dedup();
    seen_pids.retain(|p| *p != root);
    let kills = kills.lock().unwrap().clone();
    let records = std::mem::take(&mut *records.lock().unwrap());

    // The tree is whole again: mothers re-spawned (their back-off is at most 8 s), relays
    // replaced, orphaned relays drained and reaped, no zombie.
    let settle = Instant::now();
    let mut why = String::new();
    let whole = loop {
        match tree_whole(root, &roles) {
            Ok(snap) => break Some(snap),
            Err(e) => why = e,
        }
        if settle.elapsed() > Duration::from_secs(40) {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let tree_secs = settle.elapsed().as_secs_f64();
    // Descriptor counts back to the baseline, role by role (respawned processes included).
    let mut fds_now = Fds::new();
    let fds_ok = whole.is_some() && {
        let start = Instant::now();
        loop {
            fds_now = tree_whole(root, &roles)
                .map(|s| fds_by_role(&s))
                .unwrap_or_default();
            let same = fds_now.len() == baseline.len()
                && fds_now
                    .iter()
                    .all(|(r, v)| baseline.get(r).is_some_and(|b| b.0 == v.0));
            if same {
                break true;
            }
            if start.elapsed() > Duration::from_secs(15) {
                break false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    };
    // Every slot back: the scoreboard is at zero once the server is idle.
    let dumped = srv.log_text().matches("scoreboard: socks-rule #1").count();
    srv.signal(SIGUSR1);
    let mut dump = String::new();
    wait_until("the scoreboard dump", 10, || {
        let text = srv.log_text();
        let last = text
            .lines()
            .filter(|l| l.contains("scoreboard: socks-rule #1"))
            .nth(dumped)
            .map(str::to_string);
        match last {
            Some(l) => {
                dump = l;
                true
            }
            None => false,
        }
    });
    let zero = dump.contains("sessions 0/100000 slots in use");
    let log = srv.log_text();

    // Classify every session.
    let mut failures: Vec<String> = Vec::new();
    let (mut exact, mut bytes) = (0usize, 0u64);
    let (mut lost_relay, mut lost_handoff, mut lost_negotiating) = (0usize, 0usize, 0usize);
    let mut refused = 0usize;
    // Sessions past their reply whose relay /proc did not show: (byte-exact, broken).
    let mut relay_unknown = (0usize, 0usize);
    let mut lost_by_relay: Vec<(SocketAddr, i32)> = Vec::new();
    let killed_at = |pid: i32| kills.iter().find(|k| k.pid == pid).map(|k| k.at);
    let mother_killed_before = |at: Instant| {
        kills.iter().any(|k| {
            k.role.starts_with("mother ")
                && k.at <= at
                && at.duration_since(k.at) <= NEGOTIATION_WINDOW
        })
    };
    for s in &records {
        if s.relay.is_none() {
            match s.outcome {
                Outcome::Exact => relay_unknown.0 += 1,
                Outcome::Broken(_) => relay_unknown.1 += 1,
                _ => {}
            }
        }
        let since = s.wall - 1.0;
        // A relay logs a session's start before the client can see its end; the mother logs
        // a relay's death a little after the client saw it.
        let (started_by, died_by) = (s.wall_end, s.wall_end + 1.0);
        match &s.outcome {
            Outcome::Exact => {
                exact += 1;
                bytes += s.bytes;
            }
            Outcome::Corrupt(m) => failures.push(format!(
                "session {} (client {:?}, relay {:?}) corrupted: {m}",
                s.id, s.client, s.relay
            )),
            Outcome::Broken(m) => {
                bytes += s.bytes;
                let relay = s.relay.or_else(|| {
                    let c = s.client?;
                    relay_from_log(&log, c, since, started_by)
                        .or_else(|| died_with_from_log(&log, c, since, died_by))
                });
                match relay.map(|r| (r, killed_at(r))) {
                    Some((r, Some(k))) if k <= s.ended => {
                        lost_relay += 1;
                        lost_by_relay.push((s.client.unwrap(), r));
                    }
                    _ => failures.push(format!(
                        "session {} (client {:?}) broke though its relay {relay:?} was not \
                         killed: {m}",
                        s.id, s.client
                    )),
                }
            }
            Outcome::PreReply(m) => {
                let handed_to = s
                    .client
                    .and_then(|c| died_with_from_log(&log, c, since, died_by));
                if handed_to.and_then(killed_at).is_some_and(|k| k <= s.ended) {
                    lost_handoff += 1;
                } else if mother_killed_before(s.ended) {
                    lost_negotiating += 1;
                } else {
                    failures.push(format!(
                        "session {} (client {:?}) cut before its reply with no mother killed \
                         in the {NEGOTIATION_WINDOW:?} before: {m}",
                        s.id, s.client
                    ));
                }
            }
            Outcome::Refused(rep) => {
                refused += 1;
                let why = s
                    .client
                    .and_then(|c| {
                        log.lines()
                            .find(|l| {
                                l.contains(&format!("{} ", dante_addr(c)))
                                    && l.contains("session not handed to a relay")
                            })
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let before = kills
                    .iter()
                    .filter(|k| k.at <= s.ended)
                    .max_by_key(|k| k.at)
                    .map(|k| {
                        format!(
                            "{} (pid {}) killed {} ms before",
                            k.role,
                            k.pid,
                            s.ended.duration_since(k.at).as_millis()
                        )
                    })
                    .unwrap_or_default();
                failures.push(format!(
                    "session {} (client {:?}) refused with reply {rep}; last kill: {before}; \
                     log: {why}",
                    s.id, s.client
                ));
            }
        }
    }

    let mother_kills: Vec<&Kill> = kills
        .iter()
        .filter(|k| k.role.starts_with("mother "))
        .collect();
    let relay_kills: Vec<&Kill> = kills
        .iter()
        .filter(|k| k.role.starts_with("relay "))
        .collect();
    eprintln!(
        "chaos: {chaos_secs:.1} s of chaos; kills: {} mothers ({}), {} relays ({} orphaned); \
         {} sessions, {exact} byte-exact, {bytes} bytes verified; lost with their relay: \
         {lost_relay}, lost in hand-off to a dying relay: {lost_handoff}, clients lost in \
         negotiation: {lost_negotiating}, refused: {refused} (clients retried: {}); relay not \
         found by /proc: {} byte-exact + {} broken; tree whole after {tree_secs:.1} s; \
         total {:.1} s",
        mother_kills.len(),
        mother_kills
            .iter()
            .map(|k| format!("{}:{}", k.role, k.pid))
            .collect::<Vec<_>>()
            .join(" "),
        relay_kills.len(),
        relay_kills.iter().filter(|k| !k.mothered).count(),
        records.len(),
        lost_handoff + lost_negotiating + refused,
        relay_unknown.0,
        relay_unknown.1,
        t0.elapsed().as_secs_f64(),
    );

    // The log tells of every death the mothers saw.
    for k in &mother_kills {
        let want = format!(
            "warning: sigchld(): mother {} exited unexpectedly on signal SIGKILL",
            k.pid
        );
        if !log.contains(&want) {
            failures.push(format!("no \"{want}\" in the log"));
        }
    }
    for k in relay_kills.iter().filter(|k| k.mothered) {
        let want = format!("{} (pid {}) exited unexpectedly; its ", k.role, k.pid);
        if !log.contains(&want) {
            failures.push(format!("no \"{want}\" in the log"));
        }
    }
    for (client, relay) in &lost_by_relay {
        let mothered = kills.iter().any(|k| k.pid == *relay && k.mothered);
        let line = format!("tcp/connect ]: {} ", dante_addr(*client));
        let died = format!("session error (relay process {relay} died)");
        if mothered && !log.lines().any(|l| l.contains(&line) && l.contains(&died)) {
            failures.push(format!(
                "session of client {client} lost with relay {relay}, but no \"{died}\" line"
            ));
        }
    }
    if !zero {
        failures.push(format!("slots still taken once idle: {dump}"));
    }
    if whole.is_none() {
        failures.push(format!(
            "the tree is not whole {tree_secs:.0} s after the chaos: {why}"
        ));
    }
    if whole.is_some() && !fds_ok {
        for (r, (n, list)) in &fds_now {
            let (b, blist) = baseline.get(r).cloned().unwrap_or_default();
            if *n != b {
                failures.push(format!(
                    "{r}: {n} descriptors, {b} before the chaos\n  now:    {list:?}\n  before: \
                     {blist:?}"
                ));
            }
        }
        if fds_now.len() != baseline.len() {
            failures.push(format!(
                "roles with descriptors now {:?}, before {:?}",
                fds_now.keys().collect::<Vec<_>>(),
                baseline.keys().collect::<Vec<_>>()
            ));
        }
    }
    if exact == 0 {
        failures.push("no session completed".into());
    }
    if !failures.is_empty() {
        // Keep what it takes to understand the failure: the server's log and the kills.
        let kept = std::env::temp_dir().join(format!("rsockd-chaos-{seed}.log"));
        let _ = std::fs::write(&kept, &log);
        let timeline: Vec<String> = kills
            .iter()
            .map(|k| {
                format!(
                    "{:.3} s {} pid {}{}",
                    k.at.duration_since(chaos_start).as_secs_f64(),
                    k.role,
                    k.pid,
                    if k.role.starts_with("relay ") && !k.mothered {
                        " (orphan)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        panic!(
            "{} problem(s) (seed {seed}; server log kept in {}):\n{}\nkills after the chaos \
             began:\n  {}",
            failures.len(),
            kept.display(),
            failures.join("\n"),
            timeline.join("\n  ")
        );
    }
}
