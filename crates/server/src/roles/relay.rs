//! A relay process: receives fully negotiated sessions from its mother over the control channel
//! (descriptors + the success reply), writes the reply, relays, and logs the session's end.
//!
//! If the mother dies, the control channel reads EOF: we log Dante's alert, keep relaying, and
//! exit when the last session ends, so a mother's death never cuts an established session.

mod bind;
mod bind_extension;
mod connect;
mod flushed;
mod meter;
mod query;
mod udp;
mod watch;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use rsockd_ipc::{Command, Control, Handoff, Report};

use crate::channel::Channel;
use crate::log;
use crate::log::lines;
use crate::relay::tcp::Stats;
use crate::roles::child;
use crate::roles::signals::{Signal, Signals};
use crate::settings::{Flags, Settings};

/// A live session: what the mother handed over and its counters.
type Live = (Rc<Handoff>, Rc<Stats>);

/// Sessions this relay holds, for the state dump and the title.
#[derive(Default)]
struct Registry {
    sessions: RefCell<HashMap<u64, Live>>,
    /// The first two descriptors of each session (client, target or UDP socket), by number,
    /// so that the end of a drain can shut them; open as long as the session is registered.
    sockets: RefCell<HashMap<u64, [RawFd; 2]>>,
    draining: Cell<bool>,
    /// The drain is over: sessions are being ended.
    ending: Cell<bool>,
}

pub(super) struct Relay {
    id: String,
    chan: Channel,
    reg: Registry,
    flags: Flags,
    mother_gone: Cell<bool>,
    done: tokio::sync::Notify,
    /// Ends not yet reported to the mother; sent together, one message for many under load.
    closed: RefCell<Vec<u64>>,
    closed_pending: tokio::sync::Notify,
    /// The session count changed since the title last showed it.
    title_stale: tokio::sync::Notify,
    /// Sessions a monitor watches.
    watched: flushed::Flushed<watch::Watch>,
    /// Every running session, for the server's byte counters.
    meters: flushed::Flushed<meter::Meter>,
}

impl Relay {
    fn set_title(&self) {
        let n = self.reg.sessions.borrow().len();
        rsockd_sys::proctitle::set(&format!("rsockd: relay {}: {n} sessions", self.id));
    }

    fn finished(&self) -> bool {
        self.reg.draining.get() && self.reg.sessions.borrow().is_empty()
    }

    fn dump_state(&self) {
        let sessions = self.reg.sessions.borrow();
        log::info(&format!(
            "relay {}: sessions: {}{}",
            self.id,
            sessions.len(),
            if self.reg.draining.get() {
                " (draining)"
            } else {
                ""
            }
        ));
        for (h, stats) in sessions.values() {
            log::info(&lines::dump_line(h, stats));
        }
    }
}

/// Registers a handed-off session at once, before its task first runs, so a drain order read
/// right after it cannot find the relay empty and exit under it.
fn register(r: &Relay, h: Handoff, fds: &[OwnedFd]) -> Live {
    let live = (Rc::new(h), Rc::new(Stats::default()));
    let raw = |i: usize| fds.get(i).map_or(-1, |f| f.as_raw_fd());
    r.reg
        .sockets
        .borrow_mut()
        .insert(live.0.id, [raw(0), raw(1)]);
    r.reg.sessions.borrow_mut().insert(live.0.id, live.clone());
    r.title_stale.notify_one();
    if crate::log::debugging(2) {
        crate::log::debug(&format!(
            "relay {}: took session {:#x} of client {} with {} descriptor(s); {} session(s) now",
            r.id,
            live.0.id,
            crate::log::addr(&live.0.client),
            fds.len(),
            r.reg.sessions.borrow().len()
        ));
    }
    live
}

/// Runs a registered session by its command, and reports its end.
async fn run_session(r: Rc<Relay>, (h, stats): Live, fds: Vec<OwnedFd>) {
    let metered = Rc::new(meter::Meter::start(&h, &stats));
    r.meters.add(h.id, metered.clone());
    let watch = watch::Watch::start(&h, &stats).map(Rc::new);
    if let Some(w) = &watch {
        r.watched.add(h.id, w.clone());
    }
    let by = match h.command {
        Command::Connect => connect::run(&h, fds, &stats).await,
        // Boxed: their state machines are two to three times a CONNECT's, and every session's
        // task is as large as its largest variant; CONNECT sessions are the many idle ones.
        Command::Bind => Box::pin(bind::run(&h, fds, &stats)).await,
        Command::UdpAssociate => {
            Box::pin(udp::run(&h, fds, &stats)).await;
            None
        }
    };
    if let Some(w) = watch {
        r.watched.remove(h.id);
        w.end(by);
    }
    r.meters.remove(h.id);
    metered.end();
    crate::scoreboard::held::session_ended(h.board, &h.slots);
    r.reg.sockets.borrow_mut().remove(&h.id);
    r.reg.sessions.borrow_mut().remove(&h.id);
    r.title_stale.notify_one();
    if !r.mother_gone.get() {
        r.closed.borrow_mut().push(h.id);
        r.closed_pending.notify_one();
    }
    if r.finished() {
        r.done.notify_one();
    }
}

/// The drain is over: every session is woken by shutting its sockets, ends the way it always
/// does (its lines say "server stopped"), and the relay exits when the last is gone, or after
/// a few seconds whatever happens.
fn end_now(r: &Rc<Relay>) {
    r.reg.draining.set(true);
    if r.reg.ending.replace(true) {
        return;
    }
    crate::relay::tcp::mark_stopped();
    let sockets: Vec<[RawFd; 2]> = r.reg.sockets.borrow().values().copied().collect();
    if !sockets.is_empty() {
        log::info(&format!(
            "relay {}: drain over: ending {} session{}",
            r.id,
            sockets.len(),
            if sockets.len() == 1 { "" } else { "s" }
        ));
    }
    // Synchronous, so no session task runs (and closes its descriptors) in between.
    for fd in sockets.into_iter().flatten().filter(|fd| *fd >= 0) {
        let _ = rsockd_sys::sockopt::shutdown_both(fd);
    }
    if r.finished() {
        r.done.notify_one();
    }
    tokio::task::spawn_local(async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        log::warning("relay: sessions still open 5 s after the end of the drain; exiting");
        std::process::exit(0);
    });
}

/// Keeps the title's session count current, once per turn of the event loop however many
/// sessions started or ended in it (formatting and writing the title cost more than the rest of
/// a session's bookkeeping).
async fn refresh_title(r: Rc<Relay>) {
    loop {
        r.title_stale.notified().await;
        tokio::task::yield_now().await;
        r.set_title();
    }
}

/// Reports ended sessions to the mother. It lets every task that is ready run first, so
/// sessions ending in the same turn of the event loop share one message.
async fn report_closed(r: Rc<Relay>) {
    loop {
        r.closed_pending.notified().await;
        tokio::task::yield_now().await;
        loop {
            let ids: Vec<u64> = {
                let mut pending = r.closed.borrow_mut();
                let n = pending.len().min(rsockd_ipc::MAX_CLOSED);
                pending.drain(..n).collect()
            };
            if ids.is_empty() || r.mother_gone.get() {
                break;
            }
            let _ = r.chan.send(&Report::Closed { ids }.encode(), &[]).await;
        }
    }
}

async fn control_loop(r: Rc<Relay>) {
    while let Some((msg, fds)) = r.chan.recv::<Control>().await {
        match msg {
            Control::Config {
                generation,
                file,
                board,
                ..
            } => {
                let first = Settings::current().is_none();
                let mut fds = fds.into_iter();
                let Some(memfd) = fds.next() else {
                    continue;
                };
                let board = if board { fds.next() } else { None };
                match Settings::adopt(&file, generation, r.flags, memfd, board) {
                    Ok(s) if first => {
                        crate::roles::cpu::apply(rsockd_config::CpuRole::Relay, &s.config);
                        let ready = Report::Ready {
                            pid: std::process::id(),
                        };
                        let _ = r.chan.send(&ready.encode(), &[]).await;
                    }
                    Ok(_) => {}
                    // The mother validated this text; failing here means the environment
                    // changed (e.g. an interface vanished). Keep the old configuration, as a
                    // reload would.
                    Err(e) => log::error(&format!("relay: configuration refused: {e}")),
                }
            }
            Control::Sessions(hs) => {
                // The descriptors follow in the sessions' order, `nfds` each (counted by the
                // channel).
                let mut fds = fds.into_iter();
                for h in hs {
                    let mine: Vec<OwnedFd> = fds.by_ref().take(usize::from(h.nfds)).collect();
                    let live = register(&r, h, &mine);
                    tokio::task::spawn_local(run_session(r.clone(), live, mine));
                }
            }
            Control::DumpState => r.dump_state(),
            Control::Auth | Control::Draining(_) => {}
            Control::EndNow => end_now(&r),
            Control::Drain | Control::HandOver => {
                r.reg.draining.set(true);
                if r.finished() {
                    r.done.notify_one();
                }
            }
        }
    }
    // EOF: the mother is gone. Dante adds the suffix when our parent is no longer a mother.
    r.mother_gone.set(true);
    if !r.reg.draining.get() {
        let suffix = if child::parent_gone().await {
            ": mother unexpectedly exited"
        } else {
            ""
        };
        log::alert(&format!(
            "run_io(): mother unexpectedly closed the IPC control channel{suffix}"
        ));
    }
    r.reg.draining.set(true);
    if r.finished() {
        r.done.notify_one();
    }
}

/// Entry point of `--role relay`. Returns the exit code.
pub fn run(id: String, ctl: OwnedFd, flags: Flags) -> i32 {
    child::remember_parent();
    rsockd_sys::proctitle::set(&format!("rsockd: relay {id}: 0 sessions"));
    crate::log::set_process(&format!("relay {id}"));
    if let Ok(text) = std::env::var("RSOCKD_RELAY_PIPE") {
        match crate::relay::pipes::parse_engine(&text) {
            Ok(e) => crate::relay::pipes::set_engine(e),
            Err(e) => log::error(&format!("relay {id}: {e}; using splice with 1 MiB pipes")),
        }
    }
    child::block_on_local(&format!("relay {id}"), async move {
        let chan = match Channel::new(ctl, format!("relay {id}")) {
            Ok(c) => c,
            Err(e) => {
                log::error(&format!("relay {id}: control channel: {e}"));
                return 1;
            }
        };
        let r = Rc::new(Relay {
            id,
            chan,
            reg: Registry::default(),
            flags,
            mother_gone: Cell::new(false),
            done: tokio::sync::Notify::new(),
            closed: RefCell::new(Vec::new()),
            closed_pending: tokio::sync::Notify::new(),
            title_stale: tokio::sync::Notify::new(),
            watched: flushed::Flushed::new(watch::FLUSH),
            meters: flushed::Flushed::new(meter::FLUSH),
        });
        tokio::task::spawn_local(control_loop(r.clone()));
        tokio::task::spawn_local(report_closed(r.clone()));
        tokio::task::spawn_local(refresh_title(r.clone()));
        {
            let r = r.clone();
            tokio::task::spawn_local(async move { r.watched.flush_forever().await });
        }
        {
            let r = r.clone();
            tokio::task::spawn_local(async move { r.meters.flush_forever().await });
        }
        let Some(mut signals) = Signals::install(false) else {
            log::error("relay: cannot install signal handlers");
            return 1;
        };
        loop {
            tokio::select! {
                _ = r.done.notified() => {
                    if r.finished() { return 0; }
                }
                sig = signals.next() => match sig {
                    Signal::Reload => {
                        // The mother sends the new configuration; here we only reopen log files.
                        if let Some(s) = Settings::current() {
                            let _ = s.install_logging();
                        }
                    }
                    Signal::Dump => r.dump_state(),
                    // A second SIGTERM/SIGINT (a terminal's ^C reaches every process of
                    // the group) ends the sessions, as it does for the mother.
                    Signal::Stop(_) if r.reg.draining.get() => end_now(&r),
                    Signal::Stop(_) => {
                        r.reg.draining.set(true);
                        if r.finished() { return 0; }
                        // Sent to us directly (not by our mother's Drain): the sessions get
                        // `rsockd.drain.timeout`, as the mother's would, then end.
                        let after = Settings::current().map_or(
                            std::time::Duration::from_secs(u64::from(crate::settings::DEFAULT_DRAIN)),
                            |s| s.drain_timeout(),
                        );
                        if after.is_zero() {
                            end_now(&r);
                        } else {
                            let r2 = r.clone();
                            tokio::task::spawn_local(async move {
                                tokio::time::sleep(after).await;
                                end_now(&r2);
                            });
                        }
                    }
                    // Draining is the mothers' matter (their agent answers); nothing to do here.
                    Signal::ChildExited | Signal::Drain(_) | Signal::Upgrade => {}
                },
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rsockd_ipc::{Command, Handoff, LogFlags, RuleRef};

    /// Every session's task is as large as the largest command's state machine, and idle
    /// CONNECT sessions are what a relay holds by the thousand (the budget is 4 KiB per
    /// idle session, all processes together). BIND and UDP are boxed to keep CONNECT's task
    /// small; this fails if an unboxed large variant creeps back in.
    #[test]
    fn a_connect_sessions_task_stays_small() {
        let h = Handoff {
            id: 7,
            command: Command::Connect,
            version: 5,
            accepted_us: 1,
            client: "127.0.0.1:40000".parse().unwrap(),
            internal: "127.0.0.1:1080".parse().unwrap(),
            external: "127.0.0.1:1081".parse().unwrap(),
            target: "127.0.0.1:80".parse().unwrap(),
            target_name: None,
            user: None,
            groups: vec![],
            method: 0,
            client_rule: RuleRef {
                number: 1,
                log: LogFlags::default(),
            },
            socks_rule: RuleRef {
                number: 1,
                log: LogFlags::default(),
            },
            io_timeout: 0,
            fin_wait_timeout: 0,
            reply: vec![],
            prefetched: vec![],
            board: 0,
            slots: Vec::new(),
            pace: None,
            monitor: 0,
            via: None,
            nfds: 2,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (ours, _theirs) = rsockd_sys::fdpass::seqpacket_pair().unwrap();
        let r = std::rc::Rc::new(super::Relay {
            id: "1.1".into(),
            chan: crate::channel::Channel::new(ours, "relay 1.1").unwrap(),
            reg: super::Registry::default(),
            flags: Default::default(),
            mother_gone: std::cell::Cell::new(false),
            done: tokio::sync::Notify::new(),
            closed: std::cell::RefCell::new(Vec::new()),
            closed_pending: tokio::sync::Notify::new(),
            title_stale: tokio::sync::Notify::new(),
            watched: super::flushed::Flushed::new(super::watch::FLUSH),
            meters: super::flushed::Flushed::new(super::meter::FLUSH),
        });
        let live = super::register(&r, h, &[]);
        let task = super::run_session(r.clone(), live, Vec::new());
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "a CONNECT session's task is {size} bytes");
    }
}
