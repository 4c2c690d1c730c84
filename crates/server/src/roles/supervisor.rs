//! Our extension `--supervisor`: a small process that accepts nothing and only keeps mothers
//! 1..N alive. Without it mother 1 re-spawns the others but nobody replaces mother 1; with it
//! no single process death reduces capacity for longer than a re-spawn. It holds the pidfile
//! and the listening sockets, and fans SIGHUP, SIGUSR1 and SIGTERM out to the mothers.

use std::cell::RefCell;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Control;

use crate::log;
use crate::roles::auth_helper::keeper::{self, Keeper};
use crate::roles::child;
use crate::roles::mother::family::{Family, Listeners};
use crate::roles::signals::{Signal, Signals};
use crate::roles::upgrade;
use crate::settings::{Flags, Settings};

pub struct SupervisorArgs {
    pub of: u32,
    pub flags: Flags,
    pub settings: Settings,
    pub listeners: Vec<(SocketAddr, OwnedFd)>,
    pub pidfile: Option<File>,
    pub pidfile_path: Option<std::path::PathBuf>,
    pub relays: usize,
    /// Started by an upgrade: the channel to the old supervisor.
    pub predecessor: Option<OwnedFd>,
    /// The old family was draining.
    pub draining: bool,
}

/// Why the supervisor's loop ended.
enum Ended {
    Signal(i32),
    Upgraded(u32),
}

/// SIGHUP: validate the file here, bind new `internal:` addresses, then hand the result to the
/// mothers. A bad file changes nothing.
async fn reload(fam: &Family, listeners: &Listeners) {
    let Some(old) = Settings::current() else {
        return;
    };
    let Some((new, addrs)) = old.load_for_reload() else {
        return;
    };
    listeners.borrow_mut().retain(|(a, _)| addrs.contains(a));
    for a in addrs {
        if listeners.borrow().iter().any(|(x, _)| *x == a) {
            continue;
        }
        match rsockd_sys::privs::with_saved_uid(|| crate::net::listen::bind(a)) {
            Ok(sock) => listeners.borrow_mut().push((a, sock.into())),
            Err(e) => log::error(&format!("SIGHUP: {e}")),
        }
    }
    let new = Rc::new(new);
    new.make_current();
    let msg = Control::Config {
        generation: new.generation,
        file: new.file.clone(),
        board: new.board.is_some(),
        listen: Vec::new(),
    };
    fam.broadcast(&msg, Some(&new)).await;
    log::info("SIGHUP ]: config reloaded.  Broadcasting to children to do the same");
}

/// Entry point of the supervisor (from `main`, instead of mother 1). Returns the exit code.
pub fn run(args: SupervisorArgs) -> i32 {
    let SupervisorArgs {
        of,
        flags,
        settings,
        listeners,
        mut pidfile,
        pidfile_path,
        relays,
        predecessor,
        draining,
    } = args;
    rsockd_sys::proctitle::set("rsockd: supervisor");
    crate::log::set_process("supervisor");
    child::block_on_local("supervisor", async move {
        let settings = Rc::new(settings);
        settings.make_current();
        let listeners: Listeners = Rc::new(RefCell::new(listeners));
        let fam = Family::new(of, flags, relays, listeners.clone());
        let Some(mut signals) = Signals::install(true) else {
            log::error("cannot install signal handlers");
            return 1;
        };
        if draining {
            fam.set_draining(true).await;
        }
        let keeper = Keeper::new(settings.config.user_privileged.clone(), None);
        keeper::serve_mothers(&keeper, &fam);
        keeper.apply(&settings).await;
        for i in 1..=of {
            if let Err(e) = fam.start(i, &settings).await {
                log::error(&format!("cannot start mother[{i}/{of}]: {e}"));
                return 1;
            }
        }
        while !fam.all_ready() {
            tokio::select! {
                _ = fam.ready_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = signals.child_exited() => {
                    for (pid, how) in rsockd_sys::process::reap() {
                        crate::scoreboard::reaped(pid);
                        fam.reaped(pid, &how);
                    }
                }
            }
        }
        log::info(&format!(
            "rsockd/supervisor v{} running, {of} mother(s)",
            env!("CARGO_PKG_VERSION")
        ));
        tokio::task::spawn_local(crate::notify::watchdog());
        crate::notify::notify("READY=1");
        if let Some(old) = &predecessor {
            crate::roles::upgrade::report_ready(old);
        }
        crate::notify::status(&format!("supervising {of} mother(s)"));
        let ended = loop {
            match signals.next().await {
                Signal::Reload => {
                    crate::notify::reloading();
                    reload(&fam, &listeners).await;
                    if let Some(s) = Settings::current() {
                        keeper.apply(&s).await;
                    }
                    crate::notify::notify("READY=1");
                }
                Signal::Dump => {
                    for (i, pid, negotiating) in fam.pids() {
                        log::info(&format!(
                            "supervisor: mother[{i}/{of}]: pid {pid}, clients negotiating: {negotiating}"
                        ));
                    }
                    fam.broadcast(&Control::DumpState, None).await;
                }
                Signal::ChildExited => {
                    for (pid, how) in rsockd_sys::process::reap() {
                        crate::scoreboard::reaped(pid);
                        if !fam.reaped(pid, &how) {
                            log::debug(&format!("sigchld(): process {pid} exited ({how:?})"));
                        }
                    }
                }
                Signal::Drain(on) => {
                    log::info(&format!(
                        "supervisor: {} the mothers",
                        if on { "draining" } else { "resuming" }
                    ));
                    fam.set_draining(on).await;
                }
                Signal::Upgrade => {
                    let copies: std::io::Result<Vec<(SocketAddr, OwnedFd)>> = listeners
                        .borrow()
                        .iter()
                        .map(|(a, fd)| Ok((*a, fd.try_clone()?)))
                        .collect();
                    let res = match (copies, Settings::current()) {
                        (Ok(l), Some(s)) => {
                            match upgrade::Successor::start(&s, l, fam.draining()).await {
                                Ok(next) => next.ready().await,
                                Err(e) => Err(e),
                            }
                        }
                        (Err(e), _) => Err(format!("cannot copy the listening sockets: {e}")),
                        (_, None) => Err("no configuration".into()),
                    };
                    match res {
                        Ok(pid) => break Ended::Upgraded(pid),
                        Err(why) => {
                            log::error(&format!(
                                "upgrade failed, this server goes on serving: {why}"
                            ));
                            upgrade::write_status(
                                pidfile_path.as_deref(),
                                &format!("failed: {why}"),
                            );
                        }
                    }
                }
                Signal::Stop(code) => break Ended::Signal(code),
            }
        };
        match ended {
            Ended::Signal(code) => {
                crate::notify::notify("STOPPING=1");
                log::info(&format!("sigterm(): exiting on signal {code}"));
            }
            Ended::Upgraded(pid) => {
                if let Some(f) = pidfile.as_mut() {
                    upgrade::hand_pidfile(f, pid);
                }
                crate::notify::notify(&format!("MAINPID={pid}"));
                upgrade::write_status(pidfile_path.as_deref(), &format!("ok {pid}"));
                log::info(&format!(
                    "upgrade: pid {pid} took over; these mothers drain and exit"
                ));
                // The pidfile is the new supervisor's now.
                pidfile = None;
            }
        }
        child::stop_replacing();
        // Our copies of the SOCKS sockets go at once, as the mothers' do (the agent's and the
        // admin port's stay, unless a new family answers now).
        let handover = matches!(ended, Ended::Upgraded(_));
        if let Some(s) = Settings::current() {
            listeners
                .borrow_mut()
                .retain(|(a, _)| !handover && !s.is_socks(a));
        }
        let order = if handover {
            Control::HandOver
        } else {
            Control::Drain
        };
        fam.broadcast(&order, None).await;
        // Each mother drains its relays on its own clock; a second signal ends it sooner.
        let timeout = Settings::current().map_or(Duration::ZERO, |s| s.drain_timeout());
        let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(15);
        while !fam.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                sig = signals.next() => match sig {
                    Signal::Stop(_) => fam.broadcast(&Control::EndNow, None).await,
                    Signal::ChildExited => {}
                    _ => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            for (pid, how) in rsockd_sys::process::reap() {
                crate::scoreboard::reaped(pid);
                fam.reaped(pid, &how);
            }
        }
        log::alert("supervisor: shutting down");
        if let Some(f) = pidfile {
            let _ = f.set_len(0);
        }
        0
    })
}
