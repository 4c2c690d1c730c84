//! A relay's part of the server's byte counters: each session's bytes are added to the shared
//! totals (and to its user's) every second while it runs and once more when it ends, read from
//! the session's own counters, so the relaying loops do no extra work.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Handoff;

use super::flushed::Flush;
use crate::relay::tcp::Stats;
use crate::scoreboard::counters::{self, Cmd, UserSlot};

/// How often running sessions' bytes reach the shared counters.
pub(super) const FLUSH: Duration = Duration::from_secs(1);

pub(super) struct Meter {
    stats: Rc<Stats>,
    cmd: Cmd,
    user: Option<UserSlot>,
    /// Client to target, target to client, as last added.
    reported: Cell<[u64; 2]>,
}

impl Meter {
    /// A session begins: it counts in the running gauge from now on.
    pub fn start(h: &Handoff, stats: &Rc<Stats>) -> Meter {
        let cmd = Cmd::of(h.command);
        counters::session_running(cmd, true);
        Meter {
            stats: stats.clone(),
            cmd,
            user: h.user.as_deref().map(counters::user_slot),
            reported: Cell::new([0; 2]),
        }
    }

    /// The session ended: its last bytes are added and it leaves the gauge.
    pub fn end(&self) {
        self.flush();
        counters::session_running(self.cmd, false);
    }
}

impl Flush for Meter {
    fn flush(&self) {
        // Payload only: what reached the target, and what came from it (what goes to a UDP
        // client carries a SOCKS header as well).
        let now = [self.stats.to_target.get(), self.stats.from_target.get()];
        let before = self.reported.replace(now);
        counters::bytes(
            [
                now[0].saturating_sub(before[0]),
                now[1].saturating_sub(before[1]),
            ],
            self.user,
        );
    }
}
