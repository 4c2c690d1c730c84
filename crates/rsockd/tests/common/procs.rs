//! Process-tree helpers for the `-N` tests: find mothers and relays by title, keep
//! checksummed sessions streaming while processes are killed, clean up orphans by PID.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;

pub const SIGKILL: i32 = 9;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `(index, pid)` of every live mother in the tree under (and including) `root`.
pub fn mothers(root: i32) -> Vec<(u32, i32)> {
    let mut pids = vec![root];
    pids.extend(descendants(root));
    let mut out: Vec<(u32, i32)> = pids
        .into_iter()
        .filter_map(|p| {
            let t = cmdline(p);
            let idx = t.strip_prefix("rsockd: mother ")?.split('/').next()?;
            Some((idx.parse().ok()?, p))
        })
        .collect();
    out.sort();
    out
}

pub fn mother_pid(root: i32, index: u32) -> Option<i32> {
    mothers(root)
        .into_iter()
        .find(|(i, _)| *i == index)
        .map(|(_, p)| p)
}

/// `(pid, sessions)` of the relays that are children of `mother`.
pub fn relays_of(mother: i32) -> Vec<(i32, u32)> {
    children_of(mother)
        .into_iter()
        .filter_map(|p| {
            let t = cmdline(p);
            let rest = t.strip_prefix("rsockd: relay ")?;
            let n = rest.split(": ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((p, n))
        })
        .collect()
}

/// Sends SIGSTOP and waits until every thread of `pid` has stopped: the signal is delivered
/// asynchronously, and a thread still running could accept the next client and then freeze
/// with it.
pub fn stop(pid: i32) {
    assert_eq!(unsafe_free_kill(pid, SIGSTOP), 0, "SIGSTOP {pid}");
    wait_until(&format!("process {pid} to stop"), 10, || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks
            .flatten()
            .all(|t| matches!(state(&t.path().join("stat")), Some('T' | 't')))
    });
}

/// The state letter of a `/proc/.../stat` file (after the parenthesised name).
fn state(stat: &std::path::Path) -> Option<char> {
    let s = std::fs::read_to_string(stat).ok()?;
    s.get(s.rfind(')')? + 2..)?.chars().next()
}

pub fn is_zombie(pid: i32) -> bool {
    state(std::path::Path::new(&format!("/proc/{pid}/stat"))) == Some('Z')
}

/// Kills, at the end of a test, processes that outlived the one the harness knows (the mothers
/// and relays left when mother 1 or the supervisor is killed). Only the processes we saw: each
/// pid's start time is taken when the list is made and checked before the kill, because this
/// machine's pids wrap at 32768 and a pid freed during the test may be another test's server
/// by the end of it.
pub struct Orphans(Vec<(i32, Option<String>)>);

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn started(pid: i32) -> Option<String> {
    proc_stat(pid).and_then(|f| f.get(19).cloned())
}

impl Orphans {
    pub fn of(pids: Vec<i32>) -> Orphans {
        let mut o = Orphans(Vec::new());
        o.add(&pids);
        o
    }

    /// Adds pids as they are now (each once).
    pub fn add(&mut self, pids: &[i32]) {
        for p in pids {
            if !self.0.iter().any(|(q, _)| q == p) {
                self.0.push((*p, started(*p)));
            }
        }
    }
}

impl Drop for Orphans {
    fn drop(&mut self) {
        for (p, t) in &self.0 {
            if t.is_some() && started(*p) == *t && cmdline(*p).starts_with("rsockd:") {
                unsafe_free_kill(*p, SIGKILL);
            }
        }
    }
}

/// The bytes a streamer sends as chunk `seq` of session `id`: different per chunk, so a lost,
/// duplicated or reordered chunk fails the comparison.
pub fn chunk(id: usize, seq: u64) -> Vec<u8> {
    let len = 512 + ((id as u64 * 7919 + seq * 104_729) % 3584) as usize;
    let mut x = (id as u64) << 32 ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sessions that echo a checksummed stream every few ms until `stop`; each returns the bytes it
/// verified, or what went wrong.
pub struct Streamers {
    pub stop: Arc<AtomicBool>,
    pub established: Arc<AtomicUsize>,
    pub handles: Vec<JoinHandle<Result<u64, String>>>,
}

impl Streamers {
    pub fn start(proxy: SocketAddr, echo: SocketAddr, n: usize) -> Streamers {
        let stop = Arc::new(AtomicBool::new(false));
        let established = Arc::new(AtomicUsize::new(0));
        let handles = (0..n)
            .map(|id| {
                let (stop, established) = (stop.clone(), established.clone());
                thread::spawn(move || -> Result<u64, String> {
                    let (mut s, rep) = socks5_connect(proxy, echo);
                    if rep != 0 {
                        return Err(format!("session {id}: reply {rep}"));
                    }
                    established.fetch_add(1, Ordering::SeqCst);
                    let mut verified = 0u64;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let out = chunk(id, seq);
                        s.write_all(&out)
                            .map_err(|e| format!("session {id}: write: {e}"))?;
                        let mut back = vec![0u8; out.len()];
                        s.read_exact(&mut back)
                            .map_err(|e| format!("session {id}: read chunk {seq}: {e}"))?;
                        if back != out {
                            return Err(format!("session {id}: chunk {seq} corrupted"));
                        }
                        verified += out.len() as u64;
                        seq += 1;
                        thread::sleep(Duration::from_millis(3));
                    }
                    Ok(verified)
                })
            })
            .collect();
        Streamers {
            stop,
            established,
            handles,
        }
    }

    pub fn wait_established(&self, n: usize) {
        wait_until("sessions to be established", 30, || {
            self.established.load(Ordering::SeqCst) >= n
        });
    }

    pub fn finish(self) -> Vec<Result<u64, String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    }
}

/// One fresh client through the proxy, checked end to end.
pub fn serve_one(proxy: SocketAddr, echo: SocketAddr, i: usize) {
    let (mut s, rep) = socks5_connect(proxy, echo);
    assert_eq!(rep, 0, "new client {i} refused");
    let msg = chunk(10_000 + i, 0);
    s.write_all(&msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg, "new client {i}");
}

pub fn sessions_of_mother(mother: i32) -> u32 {
    relays_of(mother).iter().map(|(_, n)| n).sum()
}

/// Holds sessions open until every mother has some, so a kill always hits live sessions.
pub fn spread(srv: &Server, echo: SocketAddr, n: usize) -> Streamers {
    let st = Streamers::start(srv.addr, echo, n);
    st.wait_established(n);
    st
}

/// SIGKILLs mother 2 of `srv` (at `-N 2`), waits for mother 1 to replace it, then reloads
/// (SIGHUP) and waits for the reload line: the sequence after which totals must not go back.
pub fn replace_mother_2_then_reload(srv: &Server) {
    const SIGHUP: i32 = 1;
    let m2 = mother_pid(srv.pid, 2).unwrap();
    assert_eq!(unsafe_free_kill(m2, SIGKILL), 0);
    wait_until("mother 2's replacement", 15, || {
        mother_pid(srv.pid, 2).is_some_and(|p| p != m2)
    });
    srv.signal(SIGHUP);
    srv.wait_log("the reload", 10, |t| {
        t.contains("SIGHUP [: reloading config")
    });
    std::thread::sleep(Duration::from_millis(300));
}
