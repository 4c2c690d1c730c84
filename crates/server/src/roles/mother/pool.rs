//! A mother's relay processes: spawning them, handing them sessions, replacing the dead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{Control, Handoff, Report, MAX_MESSAGE};

use crate::channel::Channel;
use crate::log;
use crate::roles::CTL_FD;
use crate::settings::{Flags, Settings};

/// How long a finished negotiation waits for a relay when none is alive (one is being
/// re-spawned).
const HANDOFF_WAIT: Duration = Duration::from_secs(3);

/// What a mother remembers of a session it handed off, to log it if its relay dies.
struct HandedOff {
    client: SocketAddr,
    internal: SocketAddr,
    external: SocketAddr,
    target: SocketAddr,
    rule: u32,
    accepted_us: u64,
    command: rsockd_ipc::Command,
}

/// One relay process as its mother sees it.
pub struct Slot {
    /// `M.K`: mother index and relay number, as in the title `rsockd: relay 1.2`.
    pub id: String,
    pub pid: Cell<u32>,
    chan: Channel,
    /// Sessions handed and not yet reported closed; the least loaded relay gets the next one.
    pub sessions: Cell<u32>,
    handed: RefCell<HashMap<u64, HandedOff>>,
    pub alive: Cell<bool>,
    pub ready: Cell<bool>,
}

pub struct Pool {
    pub mother: u32,
    pub slots: RefCell<Vec<Rc<Slot>>>,
    flags: Flags,
    /// Set when shutting down: dead relays are no longer replaced.
    pub stopping: Cell<bool>,
    pub ready_changed: tokio::sync::Notify,
}

/// Sends `settings`' text to a child as a memfd.
pub async fn send_config(chan: &Channel, s: &Settings) -> std::io::Result<()> {
    let fd = rsockd_sys::spawn::memfd_with("rsockd.conf", s.text.as_bytes())?;
    let msg = Control::Config {
        generation: s.generation,
        file: s.file.clone(),
        listen: Vec::new(),
    };
    chan.send(&msg.encode(), &[fd.as_fd()]).await
}

impl Pool {
    pub fn new(mother: u32, flags: Flags) -> Rc<Self> {
        Rc::new(Pool {
            mother,
            slots: RefCell::new(Vec::new()),
            flags,
            stopping: Cell::new(false),
            ready_changed: tokio::sync::Notify::new(),
        })
    }

    fn spawn_process(&self, id: &str) -> std::io::Result<(u32, Channel)> {
        let (ours, theirs) = rsockd_sys::fdpass::seqpacket_pair()?;
        let mut args = vec![
            "--role".to_string(),
            "relay".to_string(),
            "--id".to_string(),
            id.to_string(),
        ];
        args.extend(self.flags.to_args());
        let child = rsockd_sys::spawn::spawn_self(
            &format!("rsockd: relay {id}"),
            &args,
            vec![(theirs, CTL_FD)],
        )?;
        Ok((child.id(), Channel::new(ours)?))
    }

    /// Starts relay number `k` (1-based) and keeps it in slot `k - 1`.
    pub async fn start(self: &Rc<Self>, k: usize, settings: &Rc<Settings>) -> std::io::Result<()> {
        let id = format!("{}.{k}", self.mother);
        let (pid, chan) = self.spawn_process(&id)?;
        send_config(&chan, settings).await?;
        let slot = Rc::new(Slot {
            id,
            pid: Cell::new(pid),
            chan,
            sessions: Cell::new(0),
            handed: RefCell::new(HashMap::new()),
            alive: Cell::new(true),
            ready: Cell::new(false),
        });
        {
            let mut slots = self.slots.borrow_mut();
            if slots.len() < k {
                slots.push(slot.clone());
            } else {
                slots[k - 1] = slot.clone();
            }
        }
        self.ready_changed.notify_waiters();
        tokio::task::spawn_local(Self::watch(self.clone(), slot, k, settings.clone()));
        Ok(())
    }

    /// Reads a relay's reports; on EOF the relay is dead: replace it (with back-off if it keeps
    /// dying), unless we are stopping.
    async fn watch(pool: Rc<Self>, slot: Rc<Slot>, k: usize, settings: Rc<Settings>) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            match slot.chan.recv(&mut buf).await {
                Ok(r) if r.len == 0 => break,
                Ok(r) => match Report::decode(&buf[..r.len]) {
                    Ok(Report::Ready { .. }) => {
                        slot.ready.set(true);
                        pool.ready_changed.notify_waiters();
                    }
                    Ok(Report::Closed { id }) => {
                        slot.sessions.set(slot.sessions.get().saturating_sub(1));
                        slot.handed.borrow_mut().remove(&id);
                    }
                    Ok(Report::Negotiating { .. }) => {}
                    Err(e) => log::error(&format!("relay {}: bad report: {e}", slot.id)),
                },
                // A relay killed with hand-offs unread resets the channel: that is its death,
                // reported below like an EOF.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => {
                    log::error(&format!("relay {}: control channel: {e}", slot.id));
                    break;
                }
            }
        }
        slot.alive.set(false);
        if pool.stopping.get() {
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
            log::info(&format!(
                "{}{} {} -> {} {}: session error (relay process {} died).  Session duration: {}s",
                {
                    let (proto, cmd) = match s.command {
                        rsockd_ipc::Command::Connect => ("tcp", "connect"),
                        rsockd_ipc::Command::Bind => ("tcp", "bind"),
                        rsockd_ipc::Command::UdpAssociate => ("udp", "udpassociate"),
                    };
                    log::Line::verdict(true, s.rule, proto, cmd, ']')
                },
                log::addr(&s.client),
                log::addr(&s.internal),
                log::addr(&s.external),
                log::addr(&s.target),
                slot.pid.get(),
                now_us.saturating_sub(s.accepted_us) / 1_000_000
            ));
        }
        let mut delay = Duration::from_millis(0);
        loop {
            tokio::time::sleep(delay).await;
            if pool.stopping.get() {
                return;
            }
            // The newest configuration, not the one this relay started with.
            let current = crate::roles::mother::current_settings().unwrap_or(settings.clone());
            match pool.start(k, &current).await {
                Ok(()) => return,
                Err(e) => {
                    log::error(&format!("cannot start relay {}.{k}: {e}", pool.mother));
                    delay = (delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
                }
            }
        }
    }

    pub fn all_ready(&self) -> bool {
        self.slots.borrow().iter().all(|s| s.ready.get())
    }

    /// Hands a session to the least loaded live relay. On failure the descriptors are still
    /// ours (the caller tells the client).
    pub async fn handoff(&self, h: Handoff, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let id = h.id;
        let info = HandedOff {
            client: h.client,
            internal: h.internal,
            external: h.external,
            target: h.target,
            rule: h.socks_rule.number,
            accepted_us: h.accepted_us,
            command: h.command,
        };
        let msg = Control::Session(Box::new(h)).encode();
        let mut info = Some(info);
        // By identity, not id: a re-spawned relay has its predecessor's id and is worth trying.
        let mut tried: Vec<Rc<Slot>> = Vec::new();
        // A relay that just died is replaced within milliseconds; its mother's new clients wait
        // for the replacement rather than being refused (a dead relay loses only its own).
        let deadline = tokio::time::Instant::now() + HANDOFF_WAIT;
        loop {
            let slot = {
                let slots = self.slots.borrow();
                slots
                    .iter()
                    .filter(|s| s.alive.get() && !tried.iter().any(|t| Rc::ptr_eq(t, s)))
                    .min_by_key(|s| s.sessions.get())
                    .cloned()
            };
            let Some(slot) = slot else {
                if tokio::time::Instant::now() >= deadline || self.stopping.get() {
                    return Err(std::io::Error::other("no relay process available"));
                }
                let changed = self.ready_changed.notified();
                let _ = tokio::time::timeout_at(
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                    changed,
                )
                .await;
                continue;
            };
            match slot.chan.send(&msg, fds).await {
                Ok(()) => {
                    slot.sessions.set(slot.sessions.get() + 1);
                    if let Some(info) = info.take() {
                        slot.handed.borrow_mut().insert(id, info);
                    }
                    return Ok(());
                }
                Err(e) => {
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
                (Control::Config { .. }, Some(st)) => send_config(&s.chan, st).await,
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
