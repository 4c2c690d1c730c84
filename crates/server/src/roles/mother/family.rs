//! The other mothers, as the special process sees them: mother 1 starts and watches mothers
//! 2..N; in supervisor mode the supervisor does the same for 1..N. A dead mother is noticed by
//! SIGCHLD + waitpid (its exit status is what the log line needs) and re-spawned: at once the
//! first time, then with a back-off that doubles from 1 s to 60 s while it keeps dying young.
//! What a new mother gets besides its configuration (a channel to the auth helper) is up to
//! whoever keeps the family: it learns of each start through [`Family::on_start`].

use crate::scoreboard::counters::ProcRole;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{Control, Report};
use rsockd_sys::process::Exit;

use crate::channel::Channel;
use crate::log;
use crate::roles::child::{self, Backoff, Child, Role};
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
    started: std::time::Instant,
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
    /// Each mother index's back-off (its early deaths in a row).
    backoffs: RefCell<BTreeMap<u32, Rc<Backoff>>>,
    pub ready_changed: tokio::sync::Notify,
    /// Called with each started mother's channel, after its configuration was sent.
    on_start: RefCell<Option<StartHook>>,
    /// `rsockd --drain` in force: told to every mother, re-spawned ones included.
    draining: Cell<bool>,
}

/// See [`Family::on_start`].
type StartHook = Rc<dyn Fn(Rc<Channel>)>;

/// Copies of the listening sockets, so that no borrow of `listeners` is held while a send
/// waits.
fn copies(listeners: &Listeners) -> std::io::Result<Vec<(SocketAddr, OwnedFd)>> {
    listeners
        .borrow()
        .iter()
        .map(|(a, fd)| Ok((*a, fd.try_clone()?)))
        .collect()
}

impl Family {
    pub fn new(of: u32, flags: Flags, relays: usize, listeners: Listeners) -> Rc<Self> {
        Rc::new(Family {
            of,
            flags,
            relays,
            listeners,
            members: RefCell::new(BTreeMap::new()),
            backoffs: RefCell::new(BTreeMap::new()),
            ready_changed: tokio::sync::Notify::new(),
            on_start: RefCell::new(None),
            draining: Cell::new(false),
        })
    }

    /// `hook` is called with the channel of every mother started from now on (re-spawns
    /// included), once its configuration is on the way.
    pub fn on_start(&self, hook: impl Fn(Rc<Channel>) + 'static) {
        *self.on_start.borrow_mut() = Some(Rc::new(hook));
    }

    /// The channels of the mothers running now.
    pub fn channels(&self) -> Vec<Rc<Channel>> {
        self.members
            .borrow()
            .values()
            .map(|m| m.chan.clone())
            .collect()
    }

    /// Starts mother `index` and sends it the configuration and the listening sockets.
    pub async fn start(self: &Rc<Self>, index: u32, settings: &Settings) -> std::io::Result<()> {
        let role = Role::Mother {
            index,
            of: self.of,
            relays: self.relays,
        };
        let label = format!("mother[{index}/{}]", self.of);
        let child = Child::spawn(&role, self.flags, label)?;
        let member = Rc::new(Member {
            pid: Cell::new(i32::try_from(child.pid).unwrap_or(i32::MAX)),
            chan: child.chan.clone(),
            started: child.started,
            ready: Cell::new(false),
            negotiating: Cell::new(0),
        });
        self.members.borrow_mut().insert(index, member.clone());
        child::send_config(&child.chan, settings, copies(&self.listeners)?).await?;
        if self.draining.get() {
            child
                .chan
                .send(&Control::Draining(true).encode(), &[])
                .await?;
        }
        let hook = self.on_start.borrow().clone();
        if let Some(hook) = hook {
            hook(child.chan.clone());
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

    /// No mother is left (all reaped).
    pub fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
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
        if child::stopping() {
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
        let backoff = self
            .backoffs
            .borrow_mut()
            .entry(index)
            .or_insert_with(|| Rc::new(Backoff::new(HEALTHY_AFTER, MAX_BACKOFF)))
            .clone();
        let delay = backoff.after_death(member.started.elapsed());
        if delay > Duration::ZERO {
            log::warning(&format!(
                "mother[{index}/{}] died {} times in a row; re-spawning it in {}s",
                self.of,
                backoff.deaths_in_a_row(),
                delay.as_secs()
            ));
        }
        let fam = self.clone();
        tokio::task::spawn_local(async move {
            let what = format!("mother[{index}/{}]", fam.of);
            child::respawn(&backoff, delay, &what, ProcRole::Mother, || {
                let fam = fam.clone();
                async move {
                    let Some(settings) = Settings::current() else {
                        return Ok(());
                    };
                    fam.start(index, &settings).await?;
                    log::info(&format!(
                        "mother[{index}/{}]: re-spawned as pid {}",
                        fam.of,
                        fam.members
                            .borrow()
                            .get(&index)
                            .map(|m| m.pid.get())
                            .unwrap_or(0)
                    ));
                    Ok(())
                }
            })
            .await;
        });
        true
    }

    /// Whether `rsockd --drain` is in force.
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// `rsockd --drain` (true) or `--resume` (false), for every mother now and later.
    pub async fn set_draining(&self, on: bool) {
        self.draining.set(on);
        self.broadcast(&Control::Draining(on), None).await;
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
                (Control::Config { .. }, Some(s)) => match copies(&self.listeners) {
                    Ok(listen) => child::send_config(&m.chan, s, listen).await,
                    Err(e) => Err(e),
                },
                _ => m.chan.send(&msg.encode(), &[]).await,
            };
            if let Err(e) = res {
                log::warning(&format!("mother[{index}/{}]: {e}", self.of));
            }
        }
    }
}
