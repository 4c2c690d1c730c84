//! A relay's part of the server's byte counters: each session's bytes are added to the shared
//! totals (and to its user's) every second while it runs and once more when it ends, read from
//! the session's own counters, so the relaying loops do no extra work.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Handoff;

use crate::relay::tcp::Stats;
use crate::scoreboard::counters::{self, Cmd, UserSlot};

/// How often running sessions' bytes reach the shared counters.
const FLUSH: Duration = Duration::from_secs(1);

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

    fn flush(&self) {
        let now = [self.stats.to_target.get(), self.stats.to_client.get()];
        let before = self.reported.replace(now);
        counters::bytes(
            [
                now[0].saturating_sub(before[0]),
                now[1].saturating_sub(before[1]),
            ],
            self.user,
        );
    }

    /// The session ended: its last bytes are added and it leaves the gauge.
    pub fn end(&self) {
        self.flush();
        counters::session_running(self.cmd, false);
    }
}

/// The running sessions of this relay, by session id.
#[derive(Default)]
pub(super) struct Meters {
    sessions: RefCell<HashMap<u64, Rc<Meter>>>,
    started: tokio::sync::Notify,
}

impl Meters {
    pub fn add(&self, id: u64, m: Rc<Meter>) {
        self.sessions.borrow_mut().insert(id, m);
        self.started.notify_one();
    }

    pub fn remove(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    /// Adds the running sessions' bytes to the totals, every [`FLUSH`] while any runs.
    pub async fn flush_forever(&self) {
        loop {
            if self.sessions.borrow().is_empty() {
                self.started.notified().await;
            }
            tokio::time::sleep(FLUSH).await;
            let all: Vec<Rc<Meter>> = self.sessions.borrow().values().cloned().collect();
            for m in all {
                m.flush();
            }
        }
    }
}
