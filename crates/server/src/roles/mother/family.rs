//! The other mothers, as the special process sees them: mother 1 starts and watches mothers
//! 2..N; in supervisor mode the supervisor does the same for 1..N. A dead mother is noticed by
//! SIGCHLD + waitpid (its exit status is what the log line needs) and re-spawned: at once the
//! first time, then with a back-off that doubles from 1 s to 60 s while it keeps dying young.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rsockd_ipc::{Control, Report};
use rsockd_sys::process::Exit;

use crate::channel::Channel;
use crate::log;
use crate::roles::CTL_FD;
use crate::settings::{Flags, Settings};

/// Listening sockets by configured `internal:` address. Every mother accepts on the same
/// sockets; the special process keeps a copy of each to give to the mothers it (re)starts.
pub type Listeners = Rc<RefCell<Vec<(SocketAddr, OwnedFd)>>>;

/// A mother that lived at least this long before dying starts its back-off afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Member {
    pid: Cell<i32>,
    chan: Rc<Channel>,
    started: Instant,
    ready: Cell<bool>,
    /// Clients this mother was negotiating with at its last report.
    negotiating: Cell<u32>,
}

pub struct Family {
    /// Total number of mothers (the `n` of `-N n`).
    pub of: u32,
    flags: Flags,
    relays: usize,
    listeners: Listeners,
    members: RefCell<BTreeMap<u32, Rc<Member>>>,
    /// Consecutive early deaths per mother index, for the back-off.
    deaths: RefCell<BTreeMap<u32, u32>>,
    pub stopping: Cell<bool>,
    pub ready_changed: tokio::sync::Notify,
    /// The auth helper's keeper: every mother started gets a channel to the helper.
    keeper: RefCell<Option<Rc<crate::auth::keeper::Keeper>>>,
}

/// Sends a configuration and the listening sockets to a mother.
async fn send_config(chan: &Channel, s: &Settings, listeners: &Listeners) -> std::io::Result<()> {
    let memfd = s.to_memfd()?;
    // Duplicates, so that no borrow of `listeners` is held while the send waits.
    let mut listen = Vec::new();
    let mut owned = Vec::new();
    for (a, fd) in listeners.borrow().iter() {
        listen.push(*a);
        owned.push(fd.try_clone()?);
    }
    let msg = Control::Config {
        generation: s.generation,
        file: s.file.clone(),
        listen,
    };
    let mut fds: Vec<BorrowedFd<'_>> = vec![memfd.as_fd()];
    fds.extend(owned.iter().map(|fd| fd.as_fd()));
    chan.send(&msg.encode(), &fds).await
}

/// Sends a mother a channel to the auth helper, if one runs.
async fn send_auth(chan: &Channel, k: &crate::auth::keeper::Keeper) {
    let Some(fd) = k.connect().await else { return };
    if let Err(e) = chan.send(&Control::Auth.encode(), &[fd.as_fd()]).await {
        log::error(&format!(
            "cannot hand a mother its auth helper channel: {e}"
        ));
    }
}

impl Family {
    pub fn new(of: u32, flags: Flags, relays: usize, listeners: Listeners) -> Rc<Self> {
        Rc::new(Family {
            of,
            flags,
            relays,
            listeners,
            members: RefCell::new(BTreeMap::new()),
            deaths: RefCell::new(BTreeMap::new()),
            stopping: Cell::new(false),
            ready_changed: tokio::sync::Notify::new(),
            keeper: RefCell::new(None),
        })
    }

    pub fn set_keeper(&self, k: Rc<crate::auth::keeper::Keeper>) {
        *self.keeper.borrow_mut() = Some(k);
    }

    /// Gives every mother a fresh channel to the (re-spawned) auth helper.
    pub async fn hand_out_auth(&self, k: &crate::auth::keeper::Keeper) {
        let members: Vec<Rc<Member>> = self.members.borrow().values().cloned().collect();
        for member in members {
            send_auth(&member.chan, k).await;
        }
    }

    /// Starts mother `index` and sends it the configuration and the listening sockets.
    pub async fn start(self: &Rc<Self>, index: u32, settings: &Settings) -> std::io::Result<()> {
        let (ours, theirs) = rsockd_sys::fdpass::seqpacket_pair()?;
        let mut args = vec![
            "--role".to_string(),
            "mother".to_string(),
            "--id".to_string(),
            format!("{index}/{}", self.of),
            "--relays".to_string(),
            self.relays.to_string(),
        ];
        args.extend(self.flags.to_args());
        let child = rsockd_sys::spawn::spawn_self(
            &format!("rsockd: mother {index}/{}", self.of),
            &args,
            vec![(theirs, CTL_FD)],
        )?;
        let chan = Rc::new(Channel::new(ours, format!("mother[{index}/{}]", self.of))?);
        let member = Rc::new(Member {
            pid: Cell::new(i32::try_from(child.id()).unwrap_or(i32::MAX)),
            chan: chan.clone(),
            started: Instant::now(),
            ready: Cell::new(false),
            negotiating: Cell::new(0),
        });
        self.members.borrow_mut().insert(index, member.clone());
        send_config(&chan, settings, &self.listeners).await?;
        let keeper = self.keeper.borrow().clone();
        if let Some(k) = keeper {
            send_auth(&chan, &k).await;
        }
        tokio::task::spawn_local(Self::watch(self.clone(), member));
        Ok(())
    }

    /// Reads a mother's reports until its channel closes. Its death is handled by `reaped`,
    /// which knows how it died.
    async fn watch(fam: Rc<Self>, member: Rc<Member>) {
        while let Some((report, _)) = member.chan.recv::<Report>().await {
            match report {
                Report::Ready { .. } => {
                    member.ready.set(true);
                    fam.ready_changed.notify_waiters();
                }
                Report::Negotiating { count } => member.negotiating.set(count),
                Report::Closed { .. } => {}
            }
        }
    }

    /// After Drain: waits (bounded) until every mother has exited and been reaped, so that a
    /// stopped server leaves no mother behind.
    pub async fn wait_gone(self: &Rc<Self>, signals: &mut crate::roles::signals::Signals) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.members.borrow().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = signals.child_exited() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            for (pid, how) in rsockd_sys::process::reap() {
                self.reaped(pid, &how);
            }
        }
    }

    pub fn all_ready(&self) -> bool {
        self.members.borrow().values().all(|m| m.ready.get())
    }

    /// Index, pid and last reported clients in negotiation of each mother.
    pub fn pids(&self) -> Vec<(u32, i32, u32)> {
        self.members
            .borrow()
            .iter()
            .map(|(i, m)| (*i, m.pid.get(), m.negotiating.get()))
            .collect()
    }

    /// Called for every child reaped. Returns false if `pid` was not one of our mothers.
    pub fn reaped(self: &Rc<Self>, pid: i32, how: &Exit) -> bool {
        let found = self
            .members
            .borrow()
            .iter()
            .find(|(_, m)| m.pid.get() == pid)
            .map(|(i, m)| (*i, m.clone()));
        let Some((index, member)) = found else {
            return false;
        };
        self.members.borrow_mut().remove(&index);
        if self.stopping.get() {
            return true;
        }
        let how = match how {
            Exit::Signal(sig) => format!(" on signal {sig}"),
            Exit::Code(0) => String::new(),
            Exit::Code(c) => format!(" with exit code {c}"),
        };
        log::warning(&format!("sigchld(): mother {pid} exited unexpectedly{how}"));
        let lost = member.negotiating.get();
        if lost > 0 {
            log::warning(&format!(
                "mother[{index}/{}]: {lost} client(s) still negotiating with it were lost",
                self.of
            ));
        }
        let deaths = {
            let mut d = self.deaths.borrow_mut();
            let n = d.entry(index).or_insert(0);
            *n = if member.started.elapsed() >= HEALTHY_AFTER {
                1
            } else {
                *n + 1
            };
            *n
        };
        let delay = backoff(deaths);
        if delay > Duration::ZERO {
            log::warning(&format!(
                "mother[{index}/{}] died {deaths} times in a row; re-spawning it in {}s",
                self.of,
                delay.as_secs()
            ));
        }
        tokio::task::spawn_local(Self::respawn(self.clone(), index, delay));
        true
    }

    async fn respawn(fam: Rc<Self>, index: u32, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            if fam.stopping.get() {
                return;
            }
            let Some(settings) = Settings::current() else {
                return;
            };
            match fam.start(index, &settings).await {
                Ok(()) => {
                    log::info(&format!(
                        "mother[{index}/{}]: re-spawned as pid {}",
                        fam.of,
                        fam.members
                            .borrow()
                            .get(&index)
                            .map(|m| m.pid.get())
                            .unwrap_or(0)
                    ));
                    return;
                }
                Err(e) => {
                    log::error(&format!("cannot start mother[{index}/{}]: {e}", fam.of));
                    delay = (delay * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends a message to every mother; a configuration goes with the current listening
    /// sockets.
    pub async fn broadcast(&self, msg: &Control, settings: Option<&Settings>) {
        let members: Vec<(u32, Rc<Member>)> = self
            .members
            .borrow()
            .iter()
            .map(|(i, m)| (*i, m.clone()))
            .collect();
        for (index, m) in members {
            let res = match (msg, settings) {
                (Control::Config { .. }, Some(s)) => send_config(&m.chan, s, &self.listeners).await,
                _ => m.chan.send(&msg.encode(), &[]).await,
            };
            if let Err(e) = res {
                log::warning(&format!("mother[{index}/{}]: {e}", self.of));
            }
        }
    }
}

/// Delay before re-spawning a mother that died `deaths` times in a row: none the first time,
/// then 1 s doubling up to 60 s.
pub fn backoff(deaths: u32) -> Duration {
    if deaths <= 1 {
        return Duration::ZERO;
    }
    let secs = 1u64 << (deaths - 2).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|d| backoff(d).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
