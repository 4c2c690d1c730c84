//! A mother process: accepts on the shared listening sockets, negotiates, and hands finished
//! sessions to its relay processes. Mother 1 also owns the pidfile, reloads on SIGHUP and
//! fans signals out to its children.

mod pool;
mod session;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Control;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use crate::log;
use crate::settings::{Flags, Settings};
pub use pool::Pool;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
}

/// The configuration in force in this process (the newest successfully loaded one).
pub fn current_settings() -> Option<Rc<Settings>> {
    CURRENT.with(|c| c.borrow().clone())
}

fn set_current(s: Rc<Settings>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(s));
}

/// What `main` hands to a mother.
pub struct MotherArgs {
    pub index: u32,
    pub of: u32,
    pub flags: Flags,
    pub settings: Settings,
    /// Listening sockets by address, already bound (by mother 1, before dropping privileges).
    pub listeners: Vec<(SocketAddr, OwnedFd)>,
    /// Mother 1 keeps the pidfile open to truncate it at exit, as Dante does.
    pub pidfile: Option<File>,
    /// Relay processes per mother.
    pub relays: usize,
}

pub struct Mother {
    pub index: u32,
    pub of: u32,
    pub pool: Rc<Pool>,
    next_id: Cell<u64>,
    accepting: RefCell<HashMap<SocketAddr, JoinHandle<()>>>,
}

impl Mother {
    pub fn settings(&self) -> Rc<Settings> {
        current_settings().unwrap_or_else(unreachable_settings)
    }

    pub fn next_session_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        (u64::from(self.index) << 48) | id
    }

    fn title(&self) -> String {
        format!("rsockd: mother {}/{}", self.index, self.of)
    }
}

/// Settings are installed before any task runs; this exists only to avoid a panic path.
fn unreachable_settings() -> Rc<Settings> {
    log::alert("internal error: no configuration installed");
    std::process::exit(1)
}

/// Accepts clients on one socket until aborted.
async fn accept_loop(m: Rc<Mother>, listener: TcpListener) {
    let mut emfile_logged = false;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                emfile_logged = false;
                tokio::task::spawn_local(session::handle(m.clone(), stream, peer));
            }
            Err(e) => {
                let code = e.raw_os_error();
                if code == Some(libc::EMFILE) || code == Some(libc::ENFILE) {
                    // Out of descriptors: pause instead of spinning on a ready listener.
                    if !emfile_logged {
                        log::warning(&format!(
                            "accept(2) failed: {e}; pausing accepting while descriptors are short"
                        ));
                        emfile_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else if code == Some(libc::EAGAIN) || code == Some(libc::ECONNABORTED) {
                    // Another mother won the race, or the client gave up: normal.
                } else {
                    log::debug(&format!("accept(2) failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

fn start_accepting(m: &Rc<Mother>, addr: SocketAddr, fd: OwnedFd) -> std::io::Result<()> {
    let std_l = std::net::TcpListener::from(fd);
    std_l.set_nonblocking(true)?;
    let l = TcpListener::from_std(std_l)?;
    // Tests and admins learn the real port from this line when the config says `port = 0`.
    let bound = l.local_addr().unwrap_or(addr);
    log::info(&format!("accepting clients on {}", log::addr(&bound)));
    let h = tokio::task::spawn_local(accept_loop(m.clone(), l));
    m.accepting.borrow_mut().insert(addr, h);
    Ok(())
}

/// SIGHUP: re-read the file; a bad file is logged and the old configuration stays (Dante
/// exits here). `internal:` changes are applied: new addresses bound, removed ones closed.
async fn reload(m: &Rc<Mother>) {
    let old = m.settings();
    log::info("SIGHUP [: reloading config");
    let (new, warnings) = match Settings::load(&old.file, old.generation + 1, old.flags) {
        Ok(ok) => ok,
        Err(e) => {
            log::error(&format!(
                "SIGHUP: configuration not reloaded, keeping the running one: {e}"
            ));
            return;
        }
    };
    for w in &warnings {
        log::warning(w);
    }
    let addrs = match new.listen_addrs() {
        Ok(a) => a,
        Err(e) => {
            log::error(&format!(
                "SIGHUP: configuration not reloaded, keeping the running one: {e}"
            ));
            return;
        }
    };
    if let Err(e) = new.install_logging() {
        log::error(&format!("SIGHUP: {e}; keeping the old log outputs"));
    }
    let new = Rc::new(new);
    set_current(new.clone());
    // Listening sockets: add new, drop removed.
    let current: Vec<SocketAddr> = m.accepting.borrow().keys().copied().collect();
    for a in &current {
        if !addrs.contains(a) {
            if let Some(h) = m.accepting.borrow_mut().remove(a) {
                h.abort();
            }
            log::info(&format!("no longer accepting clients on {}", log::addr(a)));
        }
    }
    for a in &addrs {
        if !current.contains(a) {
            match crate::net::listen::bind(*a) {
                Ok(sock) => {
                    if let Err(e) = start_accepting(m, *a, sock.into()) {
                        log::error(&format!("cannot accept on {}: {e}", log::addr(a)));
                    }
                }
                Err(e) => log::error(&format!("SIGHUP: {e}")),
            }
        }
    }
    m.pool
        .broadcast(
            &Control::Config {
                generation: new.generation,
                file: new.file.clone(),
            },
            Some(&new),
        )
        .await;
    log::info("SIGHUP ]: config reloaded.  Broadcasting to children to do the same");
}

fn dump_state(m: &Rc<Mother>) {
    let slots = m.pool.slots.borrow();
    log::info(&format!(
        "mother[{}/{}]: relay processes: {}, sessions handed and open: {}, listening on: {}",
        m.index,
        m.of,
        slots.iter().filter(|s| s.alive.get()).count(),
        m.pool.total_sessions(),
        m.accepting
            .borrow()
            .keys()
            .map(log::addr)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for s in slots.iter() {
        log::info(&format!(
            "relay {} (pid {}): {}, sessions: {}",
            s.id,
            s.pid.get(),
            if s.alive.get() { "running" } else { "dead" },
            s.sessions.get()
        ));
    }
}

/// Entry point of a mother. Returns the exit code.
pub fn run(args: MotherArgs) -> i32 {
    let MotherArgs {
        index,
        of,
        flags,
        settings,
        listeners,
        pidfile,
        relays,
    } = args;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error(&format!("cannot start runtime: {e}"));
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    let settings = Rc::new(settings);
    set_current(settings.clone());
    local.block_on(&rt, async move {
        let m = Rc::new(Mother {
            index,
            of,
            pool: Pool::new(index, flags),
            next_id: Cell::new(1),
            accepting: RefCell::new(HashMap::new()),
        });
        rsockd_sys::proctitle::set(&m.title());
        let (Ok(mut hup), Ok(mut usr1), Ok(mut term), Ok(mut int), Ok(mut chld)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::child()),
        ) else {
            log::error("cannot install signal handlers");
            return 1;
        };
        for k in 1..=relays.max(1) {
            if let Err(e) = m.pool.start(k, &settings).await {
                log::error(&format!("cannot start relay {index}.{k}: {e}"));
                return 1;
            }
        }
        for (addr, fd) in listeners {
            if let Err(e) = start_accepting(&m, addr, fd) {
                log::error(&format!("cannot accept on {}: {e}", log::addr(&addr)));
                return 1;
            }
        }
        // Ready when every relay has applied its configuration.
        while !m.pool.all_ready() {
            let wait = m.pool.ready_changed.notified();
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        log::info(&format!(
            "rsockd/server[{index}/{of}] v{} running",
            env!("CARGO_PKG_VERSION")
        ));
        crate::notify::notify("READY=1");
        let code = loop {
            tokio::select! {
                _ = hup.recv() => {
                    crate::notify::notify("RELOADING=1");
                    reload(&m).await;
                    crate::notify::notify("READY=1");
                }
                _ = usr1.recv() => {
                    dump_state(&m);
                    m.pool.broadcast(&Control::DumpState, None).await;
                }
                _ = chld.recv() => {
                    for (pid, how) in rsockd_sys::process::reap() {
                        log::debug(&format!("sigchld(): process {pid} exited ({how:?})"));
                    }
                }
                _ = term.recv() => break 15,
                _ = int.recv() => break 2,
            }
        };
        crate::notify::notify("STOPPING=1");
        log::info(&format!("sigterm(): exiting on signal {code}"));
        m.pool.stopping.set(true);
        for (_, h) in m.accepting.borrow_mut().drain() {
            h.abort();
        }
        m.pool.broadcast(&Control::Drain, None).await;
        log::alert(&format!("mother[{index}/{of}]: shutting down"));
        if let Some(f) = pidfile {
            let _ = f.set_len(0);
        }
        0
    })
}
