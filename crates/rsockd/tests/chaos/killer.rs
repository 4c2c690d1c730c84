//! The killer: SIGKILLs mothers 2..N and relays at random, within its bounds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::procs::*;
use crate::common::*;
use crate::rng::*;
use crate::tree::*;

/// A mother index is killed at most this often, so its re-spawn back-off stays short.
pub(crate) const MOTHER_GAP: Duration = Duration::from_secs(4);
/// ... and at most this many times (back-offs 0, 1, 2, 4, 8 s), so the end state is reached in
/// bounded time.
pub(crate) const MAX_KILLS_PER_MOTHER: u32 = 5;

#[derive(Clone, Debug)]
pub(crate) struct Kill {
    pub(crate) pid: i32,
    pub(crate) role: String,
    pub(crate) at: Instant,
    /// For a relay: its parent was its own mother (so that mother must log its death).
    pub(crate) mothered: bool,
}

pub(crate) fn killer(root: i32, seed: u64, stop: Arc<AtomicBool>, kills: Arc<Mutex<Vec<Kill>>>) {
    let mut rng = Rng::new(seed, 0xdead);
    let mut last: HashMap<u32, Instant> = HashMap::new();
    let mut count: HashMap<u32, u32> = HashMap::new();
    loop {
        let pause = Instant::now() + rng.millis(700, 2000);
        while Instant::now() < pause && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let snap = tree(root);
        let mother_of = |i: u32| {
            snap.iter()
                .find(|p| role(&p.title) == Some(format!("mother {i}")))
                .map(|p| p.pid)
        };
        let mothers: Vec<(u32, &Proc)> = snap
            .iter()
            .filter(|p| p.pid != root && p.state != 'Z')
            .filter_map(|p| {
                let i = role_mother(&role(&p.title)?)?;
                p.title.starts_with("rsockd: mother ").then_some((i, p))
            })
            .filter(|(i, _)| {
                *i != 1
                    && count.get(i).copied().unwrap_or(0) < MAX_KILLS_PER_MOTHER
                    && last.get(i).is_none_or(|t| t.elapsed() >= MOTHER_GAP)
            })
            .collect();
        let relays: Vec<&Proc> = snap
            .iter()
            .filter(|p| p.state != 'Z' && p.title.starts_with("rsockd: relay "))
            .collect();
        let (victim, index) = if !mothers.is_empty() && rng.below(100) < 35 {
            let (i, p) = mothers[rng.below(mothers.len() as u64) as usize];
            (p, Some(i))
        } else if !relays.is_empty() {
            (relays[rng.below(relays.len() as u64) as usize], None)
        } else {
            continue;
        };
        let r = role(&victim.title).unwrap();
        // The pid is still the process we chose (not re-used since the snapshot).
        if role(&cmdline(victim.pid)).as_ref() != Some(&r) {
            continue;
        }
        let mothered = index.is_none()
            && role_mother(&r).and_then(|i| if i == 1 { Some(root) } else { mother_of(i) })
                == Some(victim.ppid);
        let at = Instant::now();
        if unsafe_free_kill(victim.pid, SIGKILL) != 0 {
            continue;
        }
        if let Some(i) = index {
            last.insert(i, at);
            *count.entry(i).or_insert(0) += 1;
        }
        kills.lock().unwrap().push(Kill {
            pid: victim.pid,
            role: r,
            at,
            mothered,
        });
    }
}
