//! A mother process: accepts on the shared listening sockets, negotiates, and hands finished
//! sessions to its relay processes. Mother 1 also owns the pidfile, starts and re-spawns the
//! other mothers, reloads on SIGHUP and fans signals out to its children. Mothers 2..N get
//! their configuration and listening sockets from mother 1 over their control channel.

mod accept;
mod admin;
mod agent;
mod alarms;
mod auth;
mod bind;
mod clientmethod;
mod connect;
mod control;
pub mod family;
mod pool;
mod request;
#[cfg(test)]
mod request_tests;
mod routed;
mod session;
mod state;
mod stop;
mod udp;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{Control, Report};
use tokio::task::JoinHandle;

use crate::channel::Channel;
use crate::log;
use crate::roles::auth_helper::keeper::{self, Keeper};
use crate::roles::child;
use crate::roles::signals::{Signal, Signals};
use crate::roles::upgrade;
use crate::settings::{Flags, Settings};
use family::{Family, Listeners};
pub use pool::Pool;
pub use state::Mother;

/// What `main` hands to a mother.
pub struct MotherArgs {
    pub index: u32,
    pub of: u32,
    pub flags: Flags,
    pub settings: Rc<Settings>,
    /// Listening sockets by address, already bound (by mother 1, before dropping privileges).
    pub listeners: Vec<(SocketAddr, OwnedFd)>,
    /// Mother 1 keeps the pidfile open to truncate it at exit, as Dante does.
    pub pidfile: Option<File>,
    /// Relay processes per mother.
    pub relays: usize,
    /// Control channel to the process that started this mother (mother 1 or the supervisor);
    /// None for mother 1 itself.
    pub upstream: Option<Rc<Channel>>,
    /// Start and re-spawn mothers 2..=of (mother 1, unless a supervisor does it).
    pub lead: bool,
    /// Started while the server drains (`rsockd --drain`).
    pub draining: bool,
    /// The pidfile's path (for the upgrade's outcome file next to it).
    pub pidfile_path: Option<std::path::PathBuf>,
    /// Started by an upgrade: the channel to the old mother 1 (or supervisor), told once we
    /// are ready.
    pub predecessor: Option<OwnedFd>,
}

/// Why the signal loop ended.
enum Ended {
    /// SIGTERM/SIGINT (the number), or the lead's drain order.
    Signal(i32),
    /// Handed over to the new process (its pid) after SIGUSR2.
    Upgraded(u32),
}

/// Entry point of mother 1 (from `main`). Returns the exit code.
pub fn run(args: MotherArgs) -> i32 {
    child::block_on_local("mother[1]", serve(args))
}

/// Entry point of `--role mother --id I/N`: waits for the first configuration and the
/// listening sockets from the special process, then serves like mother 1.
pub fn run_child(index: u32, of: u32, ctl: OwnedFd, flags: Flags, relays: usize) -> i32 {
    child::remember_parent();
    let id = format!("{index}/{of}");
    rsockd_sys::proctitle::set(&format!("rsockd: mother {index}/{of}"));
    crate::log::set_process(&format!("mother {index}/{of}"));
    child::block_on_local(&format!("mother[{id}]"), async move {
        let chan = match Channel::new(ctl, "mother_ipc()") {
            Ok(c) => Rc::new(c),
            Err(e) => {
                log::error(&format!("mother[{id}]: control channel: {e}"));
                return 1;
            }
        };
        // A drain order may come first, so that we never answer an agent check with "up"
        // while the others say "drain".
        let mut draining = false;
        let (generation, file, board, listen, fds) = loop {
            match chan.recv::<Control>().await {
                Some((
                    Control::Config {
                        generation,
                        file,
                        board,
                        listen,
                    },
                    fds,
                )) => break (generation, file, board, listen, fds),
                Some((Control::Draining(on), _)) => draining = on,
                None => return 1,
                Some(_) => {
                    log::error(&format!(
                        "mother[{id}]: the first control message must be a configuration"
                    ));
                    return 2;
                }
            }
        };
        let mut fds = fds.into_iter();
        let Some(memfd) = fds.next() else {
            return 2;
        };
        let board = if board { fds.next() } else { None };
        let settings = match Settings::adopt(&file, generation, flags, memfd, board) {
            Ok(s) => s,
            Err(e) => {
                log::error(&format!("mother[{id}]: {e}"));
                return 1;
            }
        };
        serve(MotherArgs {
            index,
            of,
            flags,
            settings,
            listeners: listen.into_iter().zip(fds).collect(),
            pidfile: None,
            relays,
            upstream: Some(chan),
            lead: false,
            draining,
            pidfile_path: None,
            predecessor: None,
        })
        .await
    })
}

/// A mother's life: start, serve until told to stop, stop.
async fn serve(mut args: MotherArgs) -> i32 {
    let Some(mut signals) = Signals::install(true) else {
        log::error("cannot install signal handlers");
        return 1;
    };
    let upstream = args.upstream.clone();
    let mut pidfile = args.pidfile.take();
    let pidfile_path = args.pidfile_path.take();
    let predecessor = args.predecessor.take();
    let m = match start(args, &mut signals).await {
        Ok(m) => m,
        Err(e) => {
            log::error(&e);
            return 1;
        }
    };
    log::info(&format!(
        "rsockd/server[{}/{}] v{} running",
        m.index,
        m.of,
        env!("CARGO_PKG_VERSION")
    ));
    let ended = match &upstream {
        Some(chan) => Ended::Signal(serve_lead_by(&m, chan, &mut signals).await),
        None => {
            tokio::task::spawn_local(alarms::watch_forever());
            tokio::task::spawn_local(crate::notify::watchdog());
            if std::env::var_os("NOTIFY_SOCKET").is_some() {
                tokio::task::spawn_local(report_status(m.clone()));
            }
            // READY=1 before the old process hands MAINPID= to us, so the manager sees both
            // in that order.
            crate::notify::notify("READY=1");
            if let Some(old) = &predecessor {
                upgrade::report_ready(old);
            }
            obey_lead_signals(&m, &mut signals, pidfile_path.as_deref()).await
        }
    };
    match ended {
        Ended::Signal(code) => {
            if upstream.is_none() {
                crate::notify::notify("STOPPING=1");
            }
            let why = format!("sigterm(): exiting on signal {code}");
            stop::stop(&m, &why, &mut signals, upstream.as_deref()).await;
            if let Some(f) = pidfile {
                let _ = f.set_len(0);
            }
        }
        Ended::Upgraded(pid) => {
            // The new process is the server now: the pidfile and the service manager's main
            // pid move to it, and we drain as on SIGTERM.
            if let Some(f) = pidfile.as_mut() {
                upgrade::hand_pidfile(f, pid);
            }
            crate::notify::notify(&format!("MAINPID={pid}"));
            upgrade::write_status(pidfile_path.as_deref(), &format!("ok {pid}"));
            let why = format!("upgrade: pid {pid} took over; this family drains and exits");
            m.handing_over.set(true);
            stop::stop(&m, &why, &mut signals, None).await;
        }
    }
    0
}

/// Mother 1's signal loop: [`obey_signals`], plus SIGUSR2's upgrade, which either hands over
/// (we are done) or fails (we go on serving).
async fn obey_lead_signals(
    m: &Rc<Mother>,
    signals: &mut Signals,
    pidfile: Option<&std::path::Path>,
) -> Ended {
    loop {
        match obey_signals(m, signals, None).await {
            Some(code) => return Ended::Signal(code),
            None => {
                let copies: std::io::Result<Vec<(SocketAddr, OwnedFd)>> = m
                    .listeners
                    .borrow()
                    .iter()
                    .map(|(a, fd)| Ok((*a, fd.try_clone()?)))
                    .collect();
                let res = match copies {
                    Ok(l) => {
                        match upgrade::Successor::start(&m.settings(), l, m.draining.get()).await {
                            Ok(next) => next.ready().await,
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(format!("upgrade: cannot copy the listening sockets: {e}")),
                };
                match res {
                    Ok(pid) => return Ended::Upgraded(pid),
                    Err(why) => {
                        log::error(&format!(
                            "upgrade failed, this server goes on serving: {why}"
                        ));
                        upgrade::write_status(pidfile, &format!("failed: {why}"));
                    }
                }
            }
        }
    }
}

/// `STATUS=` for the service manager, now and every 10 s: what mother 1 sees.
async fn report_status(m: Rc<Mother>) {
    loop {
        let s = m.settings();
        let socks = m
            .accepting
            .borrow()
            .keys()
            .filter(|a| s.is_socks(a))
            .count();
        crate::notify::status(&format!(
            "{}: {} session(s) in {} relay(s) of mother 1; {} mother(s); accepting on {socks} \
             address(es)",
            if m.draining.get() {
                "draining"
            } else {
                "serving"
            },
            m.pool.total_sessions(),
            m.pool.live(),
            m.of
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Builds the mother and starts everything it keeps: the auth helper (lead only), its relays,
/// accepting, the other mothers (lead only); returns once every child took its configuration.
async fn start(args: MotherArgs, signals: &mut Signals) -> Result<Rc<Mother>, String> {
    let MotherArgs {
        index,
        of,
        flags,
        settings,
        listeners,
        relays,
        lead,
        draining,
        ..
    } = args;
    settings.make_current();
    crate::roles::cpu::apply(rsockd_config::CpuRole::Mother, &settings.config);
    let listen_copies: Listeners = Rc::new(RefCell::new(Vec::new()));
    let family = (lead && of > 1).then(|| Family::new(of, flags, relays, listen_copies.clone()));
    let auth = crate::auth::link::AuthLink::new();
    let keeper = lead.then(|| {
        let k = Keeper::new(settings.config.user_privileged.clone(), Some(auth.clone()));
        if let Some(f) = &family {
            keeper::serve_mothers(&k, f);
        }
        k
    });
    let m = Rc::new(Mother {
        index,
        of,
        pool: Pool::new(index, flags),
        next_id: Cell::new(1),
        accepting: RefCell::new(HashMap::new()),
        listeners: listen_copies,
        family,
        negotiating: Cell::new(0),
        negotiating_changed: tokio::sync::Notify::new(),
        auth,
        keeper,
        draining: Cell::new(draining),
        handing_over: Cell::new(false),
        stopping: Cell::new(false),
        srchost: Default::default(),
    });
    rsockd_sys::proctitle::set(&m.title());
    if let Some(k) = &m.keeper {
        k.apply(&settings).await;
    }
    m.pool.start_base(relays, &settings).await?;
    for (addr, fd) in listeners {
        accept::start_accepting(&m, addr, fd)
            .map_err(|e| format!("cannot accept on {}: {e}", log::addr(&addr)))?;
    }
    if let Some(f) = &m.family {
        // An upgrade of a draining server: its new mothers drain too.
        if draining {
            f.set_draining(true).await;
        }
        for i in 2..=of {
            f.start(i, &settings)
                .await
                .map_err(|e| format!("cannot start mother[{i}/{of}]: {e}"))?;
        }
    }
    // Ready when every relay (and every other mother) has applied its configuration.
    while !(m.pool.all_ready() && m.family.as_ref().is_none_or(|f| f.all_ready())) {
        let relays_changed = m.pool.ready_changed.notified();
        tokio::select! {
            _ = relays_changed => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            // A mother that dies while starting is re-spawned like any other.
            _ = signals.child_exited() => reap(&m),
        }
    }
    Ok(m)
}

/// Mothers 2..N: report readiness and load to the lead process and obey it, until it says
/// drain or a signal says stop. Its death is logged and does not stop us.
async fn serve_lead_by(m: &Rc<Mother>, chan: &Rc<Channel>, signals: &mut Signals) -> i32 {
    let ready = Report::Ready {
        pid: std::process::id(),
    };
    if let Err(e) = chan.send(&ready.encode(), &[]).await {
        log::error(&format!(
            "mother[{}/{}]: control channel: {e}",
            m.index, m.of
        ));
    }
    tokio::task::spawn_local(control::report_negotiating(m.clone(), chan.clone()));
    let mut upstream = Some(tokio::task::spawn_local(control::upstream_loop(
        m.clone(),
        chan.clone(),
    )));
    loop {
        // SIGUSR2 is mother 1's (or the supervisor's) to act on.
        if let Some(code) = obey_signals(m, signals, upstream.take()).await {
            return code;
        }
        log::info("SIGUSR2: an upgrade is started by mother 1 or the supervisor, not here");
    }
}

/// The signal loop; returns the signal number to exit with, or None on SIGUSR2 (the caller
/// decides what an upgrade order means). `upstream`: the lead's orders.
async fn obey_signals(
    m: &Rc<Mother>,
    signals: &mut Signals,
    mut upstream: Option<JoinHandle<control::Upstream>>,
) -> Option<i32> {
    let notify = upstream.is_none();
    loop {
        let from_upstream = async {
            match upstream.as_mut() {
                Some(t) => t.await.unwrap_or(control::Upstream::Gone),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sig = signals.next() => match sig {
                Signal::Reload => {
                    if notify { crate::notify::reloading(); }
                    control::reload(m).await;
                    if notify { crate::notify::notify("READY=1"); }
                }
                Signal::Dump => {
                    control::dump_state(m);
                    m.pool.broadcast(&Control::DumpState, None).await;
                    if let Some(f) = &m.family {
                        f.broadcast(&Control::DumpState, None).await;
                    }
                }
                Signal::ChildExited => reap(m),
                Signal::Drain(on) => {
                    control::set_draining(m, on);
                    if let Some(f) = &m.family {
                        f.set_draining(on).await;
                    }
                }
                Signal::Stop(code) => {
                    // `stop` reads the lead's channel from here on (for its end order).
                    if let Some(h) = upstream.take() {
                        h.abort();
                    }
                    return Some(code);
                }
                Signal::Upgrade => {
                    // Back to the caller; the upstream task goes on for mothers 2..N.
                    if upstream.is_some() {
                        log::info("SIGUSR2: an upgrade is started by mother 1 or the supervisor, not here");
                        continue;
                    }
                    return None;
                }
            },
            up = from_upstream => {
                upstream = None;
                if let control::Upstream::Drain = up {
                    return Some(libc::SIGTERM);
                }
            }
        }
    }
}

/// Reaps exited children; a mother of ours is re-spawned, anything else only noted.
pub(super) fn reap(m: &Rc<Mother>) {
    for (pid, how) in rsockd_sys::process::reap() {
        // Whatever it was (a relay, a mother, an orphan), its scoreboard slots are free now.
        crate::scoreboard::reaped(pid);
        if m.family.as_ref().is_some_and(|f| f.reaped(pid, &how)) {
            continue;
        }
        log::debug(&format!("sigchld(): process {pid} exited ({how:?})"));
    }
}
