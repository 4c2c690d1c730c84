//! Running sessions whose counters reach shared totals on a clock: the relay's monitors
//! (`watch.rs`) and the server's byte counters (`meter.rs`) each keep one of these.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// A session's share of some shared totals, brought up to date by `flush`.
pub(super) trait Flush {
    fn flush(&self);
}

/// The sessions of this relay that `T` follows, by session id.
pub(super) struct Flushed<T> {
    sessions: RefCell<HashMap<u64, Rc<T>>>,
    started: tokio::sync::Notify,
    every: Duration,
}

impl<T: Flush> Flushed<T> {
    pub fn new(every: Duration) -> Self {
        Flushed {
            sessions: RefCell::new(HashMap::new()),
            started: tokio::sync::Notify::new(),
            every,
        }
    }

    pub fn add(&self, id: u64, t: Rc<T>) {
        self.sessions.borrow_mut().insert(id, t);
        self.started.notify_one();
    }

    pub fn remove(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    /// Flushes every running session's counters, every `every` while any runs.
    pub async fn flush_forever(&self) {
        loop {
            if self.sessions.borrow().is_empty() {
                self.started.notified().await;
            }
            tokio::time::sleep(self.every).await;
            let all: Vec<Rc<T>> = self.sessions.borrow().values().cloned().collect();
            for t in all {
                t.flush();
            }
        }
    }
}
