//! The shared counters of `monitor { }` objects: what every relay adds for the sessions a
//! monitor watches, and what mother 1's alarm checks read.
//!
//! A monitor has [`MONITOR_ROWS`](super::layout::MONITOR_ROWS) rows of `[pid, sessions]`: a
//! relay counts its own watched sessions in the row it claimed, so the reaper of a dead relay
//! clears exactly what it held (DESIGN §5). Then twelve cumulative counters that only grow,
//! so any number of alarms with their own periods can read them without resetting them:
//!
//! ```text
//! 0..4   bytes    internal.recv, internal.send, external.recv, external.send
//! 4..8   last i/o (ms since the epoch) of each of those
//! 8..12  ends     internal: closed by the client, by us; external: by the target, by us
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::{MonitorWords, MONITOR_ROWS};
use super::{alive, now_ms, Scoreboard};

/// Which end closed a session first, for disconnect alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Target,
    /// A timeout or an error of ours: both sides count it as closed by us.
    Us,
}

/// A monitor's counters as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sessions the monitor watches now, in every live process.
    pub sessions: u64,
    pub bytes: [u64; 4],
    pub last_io_ms: [u64; 4],
    /// Ends: internal peer, internal self, external peer, external self.
    pub ends: [u64; 4],
}

impl Scoreboard {
    fn monitor_words(&self, number: u32) -> Option<(&[AtomicU64], &[AtomicU64])> {
        let m: &MonitorWords = self.layout.monitor(number)?;
        Some((self.run(m.rows), self.run(m.counters)))
    }

    /// This process's row of monitor `number`, claimed on first use.
    fn my_row<'a>(&self, rows: &'a [AtomicU64]) -> Option<&'a AtomicU64> {
        let me = u64::from(std::process::id());
        let pids = || (0..MONITOR_ROWS).map(|i| &rows[2 * i]);
        if let Some(i) = pids().position(|p| p.load(Ordering::Acquire) == me) {
            return Some(&rows[2 * i + 1]);
        }
        for sweep in [false, true] {
            if sweep {
                // Full: rows of processes that vanished without a reaper are free again.
                for i in 0..MONITOR_ROWS {
                    let pid = rows[2 * i].load(Ordering::Acquire);
                    if pid != 0 && !alive(pid as u32) {
                        rows[2 * i + 1].store(0, Ordering::Release);
                        let _ = rows[2 * i].compare_exchange(
                            pid,
                            0,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                    }
                }
            }
            for i in 0..MONITOR_ROWS {
                if rows[2 * i]
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    rows[2 * i + 1].store(0, Ordering::Release);
                    return Some(&rows[2 * i + 1]);
                }
            }
        }
        None
    }

    /// A session watched by monitor `number` starts in this process; false when it cannot be
    /// counted (no such monitor, or every row is taken by a live process).
    pub fn monitor_join(&self, number: u32) -> bool {
        let Some((rows, _)) = self.monitor_words(number) else {
            return false;
        };
        match self.my_row(rows) {
            Some(n) => {
                n.fetch_add(1, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    /// Bytes the watched sessions moved since the last report, in the counters' order.
    pub fn monitor_bytes(&self, number: u32, delta: [u64; 4]) {
        let Some((_, c)) = self.monitor_words(number) else {
            return;
        };
        let now = now_ms();
        for (i, d) in delta.into_iter().enumerate() {
            if d > 0 {
                c[i].fetch_add(d, Ordering::AcqRel);
                c[4 + i].fetch_max(now, Ordering::AcqRel);
            }
        }
    }

    /// A watched session that `monitor_join` counted ended.
    pub fn monitor_ended(&self, number: u32, by: ClosedBy) {
        let Some((rows, c)) = self.monitor_words(number) else {
            return;
        };
        if let Some(n) = self.my_row(rows) {
            let _ = n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
        }
        let (internal, external) = match by {
            ClosedBy::Client => (8, 11),
            ClosedBy::Target => (9, 10),
            ClosedBy::Us => (9, 11),
        };
        c[internal].fetch_add(1, Ordering::AcqRel);
        c[external].fetch_add(1, Ordering::AcqRel);
    }

    /// Monitor `number`'s counters now; rows of processes that no longer exist count nothing.
    pub fn monitor_totals(&self, number: u32) -> Option<Totals> {
        let (rows, c) = self.monitor_words(number)?;
        let mut t = Totals::default();
        for i in 0..MONITOR_ROWS {
            let pid = rows[2 * i].load(Ordering::Acquire);
            if pid != 0 && alive(pid as u32) {
                t.sessions += rows[2 * i + 1].load(Ordering::Acquire);
            }
        }
        for i in 0..4 {
            t.bytes[i] = c[i].load(Ordering::Acquire);
            t.last_io_ms[i] = c[4 + i].load(Ordering::Acquire);
            t.ends[i] = c[8 + i].load(Ordering::Acquire);
        }
        Some(t)
    }

    /// Frees the rows a dead process held; how many sessions they counted.
    pub(super) fn clear_monitor_rows(&self, pid: u32) -> usize {
        let mut freed = 0;
        for m in &self.layout.monitors {
            let rows = self.run(m.rows);
            for i in 0..MONITOR_ROWS {
                if rows[2 * i].load(Ordering::Acquire) == u64::from(pid) {
                    freed += rows[2 * i + 1].swap(0, Ordering::AcqRel) as usize;
                    rows[2 * i].store(0, Ordering::Release);
                }
            }
        }
        freed
    }

    /// Monitor numbers this scoreboard has words for.
    pub fn monitors(&self) -> impl Iterator<Item = u32> + '_ {
        self.layout.monitors.iter().map(|m| m.number)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn board() -> Scoreboard {
        let text = "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n\
                    socks pass { from: 0/0 to: 0/0 }\n\
                    monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 1 in 1 }\n";
        let cfg = rsockd_config::parse_str("t.conf", text).unwrap().config;
        Scoreboard::create("t.conf", &cfg, 1).unwrap().unwrap()
    }

    #[test]
    fn sessions_bytes_and_ends_add_up_and_a_dead_row_counts_nothing() {
        let b = board();
        assert!(b.monitor_join(1) && b.monitor_join(1) && b.monitor_join(1));
        assert!(!b.monitor_join(2), "no such monitor");
        b.monitor_bytes(1, [10, 0, 30, 40]);
        b.monitor_bytes(1, [1, 2, 0, 0]);
        b.monitor_ended(1, ClosedBy::Client);
        b.monitor_ended(1, ClosedBy::Target);
        let t = b.monitor_totals(1).unwrap();
        assert_eq!(t.sessions, 1);
        assert_eq!(t.bytes, [11, 2, 30, 40]);
        assert!(t.last_io_ms.iter().all(|&ms| ms > 0), "{t:?}");
        assert_eq!(t.ends, [1, 1, 1, 1]);
        // A row left by a process that is gone (pid beyond pid_max) is not counted, and is
        // taken over when the rows run out.
        let rows = b.run(b.layout.monitor(1).unwrap().rows);
        rows[2].store(u64::from(u32::MAX - 1), Ordering::Release);
        rows[3].store(5, Ordering::Release);
        assert_eq!(b.monitor_totals(1).unwrap().sessions, 1);
        // Its reaper frees it; ours is freed when we are reaped.
        assert_eq!(b.clear(u32::MAX - 1), 5);
        assert_eq!(b.clear(std::process::id()), 1);
        assert_eq!(b.monitor_totals(1).unwrap().sessions, 0);
    }
}
