//! A relay's part of `monitor { }`: each watched session is counted in the relay's row of its
//! monitor while it runs, its bytes are added to the monitor's shared counters every quarter
//! second (read from the session's own counters, so the relaying loops do no extra work), and
//! its end is counted by which side closed first. Mother 1 reads the counters and raises the
//! alarms.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Handoff;

use super::flushed::Flush;
use crate::relay::tcp::Stats;
use crate::scoreboard::held;
use crate::scoreboard::monitor::ClosedBy;
use crate::scoreboard::Scoreboard;

/// How often running sessions' bytes reach the shared counters.
pub(super) const FLUSH: Duration = Duration::from_millis(250);

pub(super) struct Watch {
    board: Rc<Scoreboard>,
    monitor: u32,
    stats: Rc<Stats>,
    reported: Cell<[u64; 4]>,
}

impl Watch {
    /// Starts watching a session its mother found a monitor for.
    pub fn start(h: &Handoff, stats: &Rc<Stats>) -> Option<Watch> {
        if h.monitor == 0 {
            return None;
        }
        let board = held::of_generation(h.board)?;
        board.monitor_join(h.monitor).then(|| Watch {
            board,
            monitor: h.monitor,
            stats: stats.clone(),
            reported: Cell::new([0; 4]),
        })
    }

    /// The session ended (`by`: who closed first; None when it never began relaying).
    pub fn end(&self, by: Option<ClosedBy>) {
        self.flush();
        self.board
            .monitor_ended(self.monitor, by.unwrap_or(ClosedBy::Us));
    }
}

impl Flush for Watch {
    fn flush(&self) {
        let s = &self.stats;
        let now = [
            s.from_client.get(),
            s.to_client.get(),
            s.from_target.get(),
            s.to_target.get(),
        ];
        let before = self.reported.replace(now);
        let delta = std::array::from_fn(|i| now[i].saturating_sub(before[i]));
        if delta != [0; 4] {
            self.board.monitor_bytes(self.monitor, delta);
        }
    }
}
