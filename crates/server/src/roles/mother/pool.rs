//! A mother's relay processes: spawning them, handing them sessions, replacing the dead, and
//! growing the pool past one process's descriptor limit.
//!
//! A mother starts `K` base relays (its share of the CPUs). Each relay holds about two
//! descriptors per session and may hold no more than the hard open-files limit, which an
//! unprivileged process cannot raise (20,000 on our test machines), so when every relay nears
//! that limit the mother starts an extra relay, and retires extras again once they have been idle
//! a while. Sessions go to the least loaded base relay while one has room, then to the
//! lowest-numbered extra with room, so extras fill only under load and empty first when it falls.

use crate::scoreboard::counters::ProcRole;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{batch_sessions, Control, Handoff, Report};

use crate::channel::Channel;
use crate::log::{self, lines};
use crate::roles::child::{self, Backoff, Child, Role};
use crate::scoreboard::held::SessionSlots;
use crate::settings::{Flags, Settings};

/// How long a finished negotiation waits for a relay when none is alive (one is being
/// re-spawned).
const HANDOFF_WAIT: Duration = Duration::from_secs(3);
/// Descriptors a relay keeps for itself (control channel, logs, its pipe pool, spares).
const FD_RESERVE: u32 = 256;
/// A relay counts as near its limit at this share of its descriptor budget (percent).
const NEAR_FULL_PERCENT: u32 = 80;
/// At most this many relays per mother, base and extras together.
const MAX_RELAYS: usize = 64;
/// How often extras are checked for idleness; an extra empty at two checks in a row retires.
const TEND_EVERY: Duration = Duration::from_secs(5);

/// What a mother remembers of a session it handed off, to log it if its relay dies.
struct HandedOff {
    /// What its line names.
    line: lines::HandedOff,
    /// Descriptors handed with the session (they count against the relay's limit).
    fds: u32,
}

/// One relay process as its mother sees it.
pub struct Slot {
    /// `M.K`: mother index and relay number, as in the title `rsockd: relay 1.2`.
    pub id: String,
    /// The relay number (`K` in the id); numbers above the pool's base are extras.
    k: usize,
    pub pid: Cell<u32>,
    chan: Rc<Channel>,
    /// Sessions handed and not yet reported closed; the least loaded relay gets the next one.
    pub sessions: Cell<u32>,
    handed: RefCell<HashMap<u64, HandedOff>>,
    pub alive: Cell<bool>,
    pub ready: Cell<bool>,
    /// Descriptors of the sessions handed and open.
    fds: Cell<u32>,
    /// Told to drain and exit: gets no sessions and is not replaced.
    retiring: Cell<bool>,
    /// Consecutive idleness checks that found this (extra) relay empty.
    idle_checks: Cell<u32>,
    /// Sessions assigned to this relay since it started, for `child.maxrequests`.
    assigned: Cell<u64>,
    /// Due to be replaced (`child.maxrequests`/`child.maxlifetime`): already `retiring`, so it
    /// gets no more sessions; the deliver loop sends it Drain after what it was given.
    recycle: Cell<Option<Recycle>>,
}

/// Why a relay is replaced while it works.
#[derive(Debug, Clone, Copy)]
enum Recycle {
    Requests(u64),
    Lifetime(u64),
}

pub struct Pool {
    pub mother: u32,
    /// Live relays, in relay-number order.
    pub slots: RefCell<Vec<Rc<Slot>>>,
    flags: Flags,
    /// Relays started at once and always kept (the mother's CPU share).
    base: Cell<usize>,
    /// Descriptors one relay may spend on sessions.
    fd_budget: u32,
    /// An extra relay is being started.
    growing: Cell<bool>,
    /// A relay's death loses only its own sessions, and the pool needs its capacity back:
    /// every death is replaced at once; only failing starts back off.
    backoff: Backoff,
    pub ready_changed: tokio::sync::Notify,
    /// Sessions negotiated in this turn of the event loop, handed off together after it.
    outbox: RefCell<Vec<Queued>>,
    outbox_filled: tokio::sync::Notify,
    /// Sessions handed to relays, and the messages that carried them (the state dump shows how
    /// well hand-offs batch).
    pub handed_total: Cell<u64>,
    pub handoff_messages: Cell<u64>,
}

/// A negotiated session waiting for its hand-off, with its descriptors (the client's first).
/// Whoever holds it owns the session: on failure it answers the client.
pub struct Queued {
    pub h: Handoff,
    pub fds: Vec<OwnedFd>,
    /// The scoreboard slots the session holds; given back if no relay takes it.
    pub slots: SessionSlots,
}

impl Queued {
    /// No relay took the session: the client gets a general failure from here, since no one
    /// else will answer it, and the line says why.
    fn refuse(self, why: &std::io::Error) {
        log::error(&format!(
            "{} {}: session not handed to a relay: {why}",
            log::addr(&self.h.client),
            log::addr(&self.h.internal)
        ));
        if let Some(client) = self.fds.into_iter().next() {
            let reply = crate::negotiate::failure_reply(
                self.h.version,
                rsockd_proto::Reply::GeneralFailure,
            );
            let _ = std::io::Write::write_all(&mut &std::net::TcpStream::from(client), &reply);
        }
    }

    fn info(&self) -> HandedOff {
        let h = &self.h;
        HandedOff {
            line: lines::HandedOff {
                command: h.command,
                rule: h.socks_rule.number,
                path: [h.client, h.internal, h.external, h.target],
                accepted_us: h.accepted_us,
            },
            fds: self.fds.len() as u32,
        }
    }
}

impl Pool {
    pub fn new(mother: u32, flags: Flags) -> Rc<Self> {
        Rc::new(Pool {
            mother,
            slots: RefCell::new(Vec::new()),
            flags,
            base: Cell::new(1),
            fd_budget: fd_budget(),
            growing: Cell::new(false),
            backoff: Backoff::new(Duration::ZERO, Duration::from_secs(60)),
            ready_changed: tokio::sync::Notify::new(),
            outbox: RefCell::new(Vec::new()),
            outbox_filled: tokio::sync::Notify::new(),
            handed_total: Cell::new(0),
            handoff_messages: Cell::new(0),
        })
    }

    /// Starts the `n` base relays, numbered 1..=n.
    pub async fn start_base(
        self: &Rc<Self>,
        n: usize,
        settings: &Rc<Settings>,
    ) -> Result<(), String> {
        self.base.set(n.max(1));
        for k in 1..=n.max(1) {
            self.start(k, settings)
                .await
                .map_err(|e| format!("cannot start relay {}.{k}: {e}", self.mother))?;
        }
        tokio::task::spawn_local(Self::tend(self.clone()));
        tokio::task::spawn_local(Self::deliver(self.clone()));
        Ok(())
    }

    /// Starts relay number `k`, replacing a dead relay of that number.
    async fn start(self: &Rc<Self>, k: usize, settings: &Rc<Settings>) -> std::io::Result<()> {
        let id = format!("{}.{k}", self.mother);
        let role = Role::Relay { id: id.clone() };
        let Child { pid, chan, .. } = Child::spawn(&role, self.flags, format!("relay {id}"))?;
        child::send_config(&chan, settings, Vec::new()).await?;
        let slot = Rc::new(Slot {
            id,
            k,
            pid: Cell::new(pid),
            chan,
            sessions: Cell::new(0),
            handed: RefCell::new(HashMap::new()),
            alive: Cell::new(true),
            ready: Cell::new(false),
            fds: Cell::new(0),
            retiring: Cell::new(false),
            idle_checks: Cell::new(0),
            assigned: Cell::new(0),
            recycle: Cell::new(None),
        });
        if let Some(secs) = settings.config.child_maxlifetime {
            let (pool, slot) = (self.clone(), slot.clone());
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if slot.alive.get() && !slot.retiring.get() {
                    slot.retiring.set(true);
                    slot.recycle.set(Some(Recycle::Lifetime(secs)));
                    // The deliver loop sends the Drain, after any sessions it has for it.
                    pool.outbox_filled.notify_one();
                }
            });
        }
        {
            let mut slots = self.slots.borrow_mut();
            slots.retain(|s| s.k != k);
            let at = slots.partition_point(|s| s.k < k);
            slots.insert(at, slot.clone());
        }
        self.ready_changed.notify_waiters();
        tokio::task::spawn_local(Self::watch(self.clone(), slot, k, settings.clone()));
        Ok(())
    }

    /// Reads a relay's reports; on EOF the relay is dead: replace it (with back-off if it keeps
    /// dying), unless we are stopping.
    async fn watch(pool: Rc<Self>, slot: Rc<Slot>, k: usize, settings: Rc<Settings>) {
        while let Some((report, _)) = slot.chan.recv::<Report>().await {
            match report {
                Report::Ready { .. } => {
                    slot.ready.set(true);
                    pool.ready_changed.notify_waiters();
                }
                Report::Closed { ids } => {
                    let mut handed = slot.handed.borrow_mut();
                    for id in ids {
                        slot.sessions.set(slot.sessions.get().saturating_sub(1));
                        if let Some(h) = handed.remove(&id) {
                            slot.fds.set(slot.fds.get().saturating_sub(h.fds));
                        }
                    }
                }
                Report::Negotiating { .. } => {}
            }
        }
        slot.alive.set(false);
        if slot.retiring.get() {
            pool.slots.borrow_mut().retain(|s| !Rc::ptr_eq(s, &slot));
            if !slot.handed.borrow().is_empty() {
                log::warning(&format!(
                    "relay {} (pid {}) retired with {} session(s) still open",
                    slot.id,
                    slot.pid.get(),
                    slot.handed.borrow().len()
                ));
            }
            return;
        }
        if child::stopping() {
            return;
        }
        log::warning(&format!(
            "relay {} (pid {}) exited unexpectedly; its {} session(s) are lost",
            slot.id,
            slot.pid.get(),
            slot.sessions.get()
        ));
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        for s in slot.handed.borrow_mut().drain().map(|(_, s)| s) {
            lines::relay_died(&s.line, slot.pid.get(), now_us);
        }
        let what = format!("relay {}.{k}", pool.mother);
        let delay = pool.backoff.after_death(Duration::ZERO);
        child::respawn(&pool.backoff, delay, &what, ProcRole::Relay, || {
            // The newest configuration, not the one this relay started with.
            let current = Settings::current().unwrap_or(settings.clone());
            let pool = pool.clone();
            async move { pool.start(k, &current).await }
        })
        .await;
    }

    /// The relay for a session needing `need` descriptors: the least loaded base relay with
    /// room, else the lowest-numbered extra with room; when every relay is near its limit, an
    /// extra is started and meanwhile the least loaded relay that can still take it gets it.
    fn pick(self: &Rc<Self>, tried: &[Rc<Slot>], need: u32) -> Option<Rc<Slot>> {
        let near_full = self.fd_budget / 100 * NEAR_FULL_PERCENT;
        let slots = self.slots.borrow();
        let usable = || {
            slots.iter().filter(|s| {
                s.alive.get() && !s.retiring.get() && !tried.iter().any(|t| Rc::ptr_eq(t, s))
            })
        };
        let base = self.base.get();
        let roomy = |s: &&Rc<Slot>| s.fds.get() + need <= near_full;
        if let Some(s) = usable()
            .filter(|s| s.k <= base)
            .filter(roomy)
            .min_by_key(|s| s.fds.get())
        {
            return Some(s.clone());
        }
        if let Some(s) = usable().filter(|s| s.k > base).find(roomy) {
            return Some(s.clone());
        }
        let fallback = usable()
            .filter(|s| s.fds.get() + need <= self.fd_budget)
            .min_by_key(|s| s.fds.get())
            .cloned();
        drop(slots);
        self.grow();
        fallback
    }

    /// Starts one extra relay unless one is already starting or the pool is at its maximum.
    fn grow(self: &Rc<Self>) {
        if self.growing.get() || child::stopping() || self.slots.borrow().len() >= MAX_RELAYS {
            return;
        }
        self.growing.set(true);
        let pool = self.clone();
        tokio::task::spawn_local(async move {
            let k = {
                let slots = pool.slots.borrow();
                (pool.base.get() + 1..)
                    .find(|k| !slots.iter().any(|s| s.k == *k))
                    .unwrap_or(MAX_RELAYS + 1)
            };
            let open: u32 = pool.slots.borrow().iter().map(|s| s.sessions.get()).sum();
            if let Some(settings) = Settings::current() {
                match pool.start(k, &settings).await {
                    Ok(()) => log::info(&format!(
                        "relay {}.{k} started: the other relays are near their descriptor limit ({open} sessions open)",
                        pool.mother
                    )),
                    Err(e) => log::error(&format!("cannot start relay {}.{k}: {e}", pool.mother)),
                }
            }
            pool.growing.set(false);
        });
    }

    /// Retires extra relays that stayed empty for two checks in a row.
    async fn tend(pool: Rc<Self>) {
        loop {
            tokio::time::sleep(TEND_EVERY).await;
            if child::stopping() {
                return;
            }
            let extras: Vec<Rc<Slot>> = pool
                .slots
                .borrow()
                .iter()
                .filter(|s| s.k > pool.base.get() && s.alive.get() && !s.retiring.get())
                .cloned()
                .collect();
            for s in extras {
                if s.sessions.get() > 0 {
                    s.idle_checks.set(0);
                    continue;
                }
                s.idle_checks.set(s.idle_checks.get() + 1);
                if s.idle_checks.get() < 2 {
                    continue;
                }
                s.retiring.set(true);
                log::info(&format!("relay {}: idle extra relay retired", s.id));
                if let Err(e) = s.chan.send(&Control::Drain.encode(), &[]).await {
                    log::warning(&format!("relay {}: {e}", s.id));
                }
            }
        }
    }

    /// Relay processes still running (their control channel open).
    pub fn live(&self) -> usize {
        self.slots.borrow().iter().filter(|s| s.alive.get()).count()
    }

    /// Whether at least one relay takes sessions now.
    pub fn any_ready(&self) -> bool {
        self.slots
            .borrow()
            .iter()
            .any(|s| s.ready.get() && s.alive.get() && !s.retiring.get())
    }

    pub fn all_ready(&self) -> bool {
        self.slots.borrow().iter().all(|s| s.ready.get())
    }

    /// Takes a negotiated session for hand-off; it leaves with the others that finished in the
    /// same turn of the event loop. From here the pool owns it (and answers the client if no
    /// relay takes it).
    pub fn hand_off(&self, q: Queued) {
        self.outbox.borrow_mut().push(q);
        self.outbox_filled.notify_one();
    }

    /// Hands queued sessions to relays: after every ready task has run (so that sessions that
    /// finish together leave together), each is assigned a relay as `pick` chooses, and each
    /// relay gets its sessions in as few messages as `batch_sessions` allows: one sendmsg(2)
    /// and one wake-up of the relay for many sessions under load.
    async fn deliver(pool: Rc<Self>) {
        loop {
            pool.outbox_filled.notified().await;
            tokio::task::yield_now().await;
            let queued: Vec<Queued> = pool.outbox.borrow_mut().drain(..).collect();
            let mut groups: Vec<(Rc<Slot>, Vec<Queued>)> = Vec::new();
            for q in queued {
                let need = q.fds.len() as u32;
                let Some(slot) = pool.pick(&[], need) else {
                    // No relay alive (one is being re-spawned): this one waits on its own.
                    tokio::task::spawn_local(Self::hand_off_alone(pool.clone(), q, Vec::new()));
                    continue;
                };
                // Counted at once, so the next pick sees this relay's new load.
                slot.fds.set(slot.fds.get() + need);
                pool.count_assigned(&slot);
                match groups.iter_mut().find(|(s, _)| Rc::ptr_eq(s, &slot)) {
                    Some((_, qs)) => qs.push(q),
                    None => groups.push((slot, vec![q])),
                }
            }
            for (slot, qs) in groups {
                pool.send_batches(&slot, qs).await;
            }
            pool.recycle_due().await;
        }
    }

    /// One more session for `slot`; at `child.maxrequests` it takes no more and is replaced.
    fn count_assigned(&self, slot: &Slot) {
        slot.assigned.set(slot.assigned.get() + 1);
        let max = Settings::current().and_then(|s| s.config.child_maxrequests);
        if max.is_some_and(|n| slot.assigned.get() >= n) && !slot.retiring.get() {
            slot.retiring.set(true);
            slot.recycle
                .set(Some(Recycle::Requests(slot.assigned.get())));
        }
    }

    /// Relays due to be replaced: a new relay of the same number takes their place, and they
    /// finish their sessions and exit. Sent here, after the sessions handed in this turn, so
    /// the Drain never overtakes sessions already on their way.
    async fn recycle_due(self: &Rc<Self>) {
        let due: Vec<Rc<Slot>> = self
            .slots
            .borrow()
            .iter()
            .filter(|s| s.recycle.get().is_some())
            .cloned()
            .collect();
        for slot in due {
            let Some(why) = slot.recycle.take() else {
                continue;
            };
            if !slot.alive.get() || child::stopping() {
                continue;
            }
            let why = match why {
                Recycle::Requests(n) => format!("took {n} sessions (child.maxrequests)"),
                Recycle::Lifetime(s) => format!("took sessions for {s}s (child.maxlifetime)"),
            };
            log::info(&format!(
                "relay {} (pid {}) {why}: it finishes its {} session(s) and a new relay takes its place",
                slot.id,
                slot.pid.get(),
                slot.sessions.get()
            ));
            if let Some(settings) = Settings::current() {
                if let Err(e) = self.start(slot.k, &settings).await {
                    log::error(&format!("cannot start relay {}: {e}", slot.id));
                }
            }
            if let Err(e) = slot.chan.send(&Control::Drain.encode(), &[]).await {
                log::warning(&format!("relay {}: {e}", slot.id));
            }
        }
    }

    /// Sends one relay its sessions (already counted in its `fds`). A batch the relay did not
    /// take is uncounted and its sessions tried on other relays one by one.
    async fn send_batches(self: &Rc<Self>, slot: &Rc<Slot>, qs: Vec<Queued>) {
        let batches = {
            let hs: Vec<&Handoff> = qs.iter().map(|q| &q.h).collect();
            batch_sessions(&hs)
        };
        let mut qs: Vec<Option<Queued>> = qs.into_iter().map(Some).collect();
        for (msg, range) in batches {
            let sent = {
                let fds: Vec<BorrowedFd<'_>> = qs[range.clone()]
                    .iter()
                    .flatten()
                    .flat_map(|q| q.fds.iter().map(|f| f.as_fd()))
                    .collect();
                for q in qs[range.clone()].iter().flatten() {
                    q.slots.lend(slot.pid.get());
                }
                slot.chan.send(&msg, &fds).await
            };
            match &sent {
                Ok(()) => {
                    self.handoff_messages.set(self.handoff_messages.get() + 1);
                    self.handed_total
                        .set(self.handed_total.get() + range.len() as u64);
                }
                Err(e) => log::warning(&format!(
                    "relay {}: hand-off of {} session(s) failed: {e}",
                    slot.id,
                    range.len()
                )),
            }
            for mut q in qs[range].iter_mut().filter_map(Option::take) {
                if sent.is_ok() {
                    slot.sessions.set(slot.sessions.get() + 1);
                    slot.handed.borrow_mut().insert(q.h.id, q.info());
                    std::mem::take(&mut q.slots).sent();
                } else {
                    q.slots.take_back(slot.pid.get());
                    slot.fds
                        .set(slot.fds.get().saturating_sub(q.fds.len() as u32));
                    let tried = vec![slot.clone()];
                    tokio::task::spawn_local(Self::hand_off_alone(self.clone(), q, tried));
                }
            }
        }
    }

    /// Hands one session to the least loaded live relay not yet tried, waiting a while for a
    /// relay to be re-spawned if none is alive; refuses the client if none takes it.
    async fn hand_off_alone(self: Rc<Self>, q: Queued, mut tried: Vec<Rc<Slot>>) {
        let need = q.fds.len() as u32;
        let msg = Control::Sessions(vec![q.h.clone()]).encode();
        // A relay that just died is replaced within milliseconds; its mother's new clients wait
        // for the replacement rather than being refused (a dead relay loses only its own).
        let deadline = tokio::time::Instant::now() + HANDOFF_WAIT;
        loop {
            // By identity, not id: a re-spawned relay has its predecessor's id and is worth
            // trying.
            let Some(slot) = self.pick(&tried, need) else {
                if tokio::time::Instant::now() >= deadline || child::stopping() {
                    q.refuse(&std::io::Error::other("no relay process available"));
                    return;
                }
                let changed = self.ready_changed.notified();
                let _ = tokio::time::timeout_at(
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                    changed,
                )
                .await;
                continue;
            };
            let fds: Vec<BorrowedFd<'_>> = q.fds.iter().map(|f| f.as_fd()).collect();
            q.slots.lend(slot.pid.get());
            match slot.chan.send(&msg, &fds).await {
                Ok(()) => {
                    self.handoff_messages.set(self.handoff_messages.get() + 1);
                    self.handed_total.set(self.handed_total.get() + 1);
                    slot.sessions.set(slot.sessions.get() + 1);
                    slot.fds.set(slot.fds.get() + need);
                    slot.handed.borrow_mut().insert(q.h.id, q.info());
                    q.slots.sent();
                    self.count_assigned(&slot);
                    self.recycle_due().await;
                    return;
                }
                Err(e) => {
                    q.slots.take_back(slot.pid.get());
                    log::warning(&format!("relay {}: hand-off failed: {e}", slot.id));
                    tried.push(slot);
                }
            }
        }
    }

    /// Sends a message to every live relay.
    pub async fn broadcast(&self, msg: &Control, settings: Option<&Settings>) {
        let slots: Vec<Rc<Slot>> = self.slots.borrow().clone();
        for s in slots.iter().filter(|s| s.alive.get()) {
            let res = match (msg, settings) {
                (Control::Config { .. }, Some(st)) => {
                    child::send_config(&s.chan, st, Vec::new()).await
                }
                _ => s.chan.send(&msg.encode(), &[]).await,
            };
            if let Err(e) = res {
                log::warning(&format!("relay {}: {e}", s.id));
            }
        }
    }

    pub fn total_sessions(&self) -> u32 {
        self.slots.borrow().iter().map(|s| s.sessions.get()).sum()
    }
}

/// What one relay may spend on sessions: its open-files limit (inherited from us; already
/// raised to the hard limit at start) less a reserve.
fn fd_budget() -> u32 {
    let limit = rsockd_sys::process::raise_nofile().min(u64::from(u32::MAX)) as u32;
    limit.saturating_sub(FD_RESERVE).max(64)
}
