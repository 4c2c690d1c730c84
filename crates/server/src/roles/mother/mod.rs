//! A mother process: accepts on the shared listening sockets, negotiates, and hands finished
//! sessions to its relay processes. Mother 1 also owns the pidfile, starts and re-spawns the
//! other mothers, reloads on SIGHUP and fans signals out to its children. Mothers 2..N get
//! their configuration and listening sockets from mother 1 over their control channel.

mod auth;
mod bind;
mod connect;
pub mod family;
mod pool;
mod session;
mod udp;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{Control, Report};
use rsockd_sys::accept::ExclusiveAccept;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::channel::Channel;
use crate::log;
use crate::roles::auth_helper::keeper::{self, Keeper};
use crate::roles::child;
use crate::roles::signals::{Signal, Signals};
use crate::settings::{Flags, Settings};
use family::{Family, Listeners};
pub use pool::Pool;

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
}

pub struct Mother {
    pub index: u32,
    pub of: u32,
    pub pool: Rc<Pool>,
    next_id: Cell<u64>,
    accepting: RefCell<HashMap<SocketAddr, JoinHandle<()>>>,
    /// A copy of each listening socket, for the mothers we start and for reloads.
    listeners: Listeners,
    family: Option<Rc<Family>>,
    /// Clients accepted and not yet handed off or refused: lost if this process dies.
    negotiating: Cell<u32>,
    negotiating_changed: tokio::sync::Notify,
    /// This mother's channel to the auth helper.
    pub auth: Rc<crate::auth::link::AuthLink>,
    /// The lead mother starts, re-spawns and reloads the auth helper.
    keeper: Option<Rc<Keeper>>,
}

impl Mother {
    pub fn settings(&self) -> Rc<Settings> {
        Settings::current().unwrap_or_else(unreachable_settings)
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
async fn accept_loop(m: Rc<Mother>, listener: ExclusiveAccept, bound: SocketAddr) {
    let mut emfile_logged = false;
    loop {
        match listener.accept().await {
            Ok((fd, peer)) => {
                emfile_logged = false;
                // Accepted non-blocking (SOCK_NONBLOCK).
                let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                    continue;
                };
                let m = m.clone();
                m.negotiating.set(m.negotiating.get() + 1);
                m.negotiating_changed.notify_one();
                tokio::task::spawn_local(async move {
                    session::handle(m.clone(), stream, peer, bound).await;
                    m.negotiating.set(m.negotiating.get().saturating_sub(1));
                    m.negotiating_changed.notify_one();
                });
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
    m.listeners.borrow_mut().retain(|(a, _)| *a != addr);
    m.listeners.borrow_mut().push((addr, fd.try_clone()?));
    let std_l = std::net::TcpListener::from(fd);
    std_l.set_nonblocking(true)?;
    // Accepted sockets inherit SO_KEEPALIVE from the listener (Linux copies the socket flags
    // and arms the timer in the child), which saves a setsockopt(2) per client. Every mother
    // sets the same value on the shared socket.
    socket2::SockRef::from(&std_l).set_keepalive(m.settings().keepalive())?;
    // Tests and admins learn the real port from this line when the config says `port = 0`.
    let bound = std_l.local_addr().unwrap_or(addr);
    let l = ExclusiveAccept::new(OwnedFd::from(std_l))?;
    log::info(&format!("accepting clients on {}", log::addr(&bound)));
    let h = tokio::task::spawn_local(accept_loop(m.clone(), l, bound));
    m.accepting.borrow_mut().insert(addr, h);
    Ok(())
}

/// SIGHUP: re-read the file; a bad file is logged and the old configuration stays (Dante
/// exits here). `internal:` changes are applied: new addresses bound, removed ones closed.
async fn reload(m: &Rc<Mother>) {
    let Some((new, addrs)) = super::load_for_reload(&m.settings()) else {
        return;
    };
    let new = Rc::new(new);
    new.make_current();
    // Listening sockets: add new, drop removed.
    let current: Vec<SocketAddr> = m.accepting.borrow().keys().copied().collect();
    for a in &current {
        if !addrs.contains(a) {
            stop_accepting(m, a);
        }
    }
    for a in &addrs {
        if !current.contains(a) {
            match rsockd_sys::privs::with_saved_uid(|| crate::net::listen::bind(*a)) {
                Ok(sock) => {
                    if let Err(e) = start_accepting(m, *a, sock.into()) {
                        log::error(&format!("cannot accept on {}: {e}", log::addr(a)));
                    }
                }
                Err(e) => log::error(&format!("SIGHUP: {e}")),
            }
        }
    }
    broadcast_config(m, &new).await;
    if let Some(k) = &m.keeper {
        k.apply(&new).await;
    }
    log::info("SIGHUP ]: config reloaded.  Broadcasting to children to do the same");
}

fn stop_accepting(m: &Mother, a: &SocketAddr) {
    if let Some(h) = m.accepting.borrow_mut().remove(a) {
        h.abort();
    }
    m.listeners.borrow_mut().retain(|(x, _)| x != a);
    log::info(&format!("no longer accepting clients on {}", log::addr(a)));
}

/// Hands a new configuration to our relays and, on mother 1, to the other mothers.
async fn broadcast_config(m: &Rc<Mother>, new: &Rc<Settings>) {
    let msg = Control::Config {
        generation: new.generation,
        file: new.file.clone(),
        listen: Vec::new(),
    };
    m.pool.broadcast(&msg, Some(new)).await;
    if let Some(f) = &m.family {
        f.broadcast(&msg, Some(new)).await;
    }
}

/// A configuration from mother 1 (or the supervisor): the text in a memfd, then one listening
/// socket per address in `listen`, which is the full set to accept on from now on.
async fn adopt(
    m: &Rc<Mother>,
    generation: u64,
    file: &str,
    listen: Vec<SocketAddr>,
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    let mut fds = fds.into_iter();
    let memfd = fds.next().ok_or("configuration without its descriptor")?;
    let new =
        Settings::adopt(file, generation, m.settings().flags, memfd).map_err(|e| e.to_string())?;
    let current: Vec<SocketAddr> = m.accepting.borrow().keys().copied().collect();
    for a in current.iter().filter(|a| !listen.contains(a)) {
        stop_accepting(m, a);
    }
    for (a, fd) in listen.into_iter().zip(fds) {
        if !current.contains(&a) {
            start_accepting(m, a, fd).map_err(|e| format!("{}: {e}", log::addr(&a)))?;
        }
    }
    broadcast_config(m, &new).await;
    log::info(&format!(
        "mother[{}/{}]: configuration generation {generation} applied",
        m.index, m.of
    ));
    Ok(())
}

/// What the upstream control channel asked of us.
enum Upstream {
    Drain,
    Gone,
}

/// Mothers 2..N: obey mother 1 (or the supervisor). On EOF the special process is gone: say
/// so, as Dante's children do, and go on serving.
async fn upstream_loop(m: Rc<Mother>, chan: Rc<Channel>) -> Upstream {
    while let Some((msg, fds)) = chan.recv::<Control>().await {
        match msg {
            Control::Config {
                generation,
                file,
                listen,
            } => {
                if let Err(e) = adopt(&m, generation, &file, listen, fds).await {
                    log::error(&format!(
                        "mother[{}/{}]: configuration refused, keeping the running one: {e}",
                        m.index, m.of
                    ));
                }
            }
            Control::DumpState => {
                dump_state(&m);
                m.pool.broadcast(&Control::DumpState, None).await;
            }
            Control::Drain => return Upstream::Drain,
            Control::Auth => {
                if let Some(fd) = fds.into_iter().next() {
                    m.auth.install(fd);
                }
            }
            Control::Sessions(_) => log::error("mother_ipc(): unexpected session message"),
        }
    }
    let suffix = if super::parent_gone().await {
        ": mother unexpectedly exited"
    } else {
        ""
    };
    log::alert(&format!(
        "mother_ipc(): mother unexpectedly closed the IPC control channel{suffix}"
    ));
    Upstream::Gone
}

/// Tells the special process how many clients we are negotiating with, when it changes: at
/// once, then at most every 100 ms.
async fn report_negotiating(m: Rc<Mother>, chan: Rc<Channel>) {
    let mut last = 0;
    loop {
        m.negotiating_changed.notified().await;
        let now = m.negotiating.get();
        if now != last {
            let msg = Report::Negotiating { count: now }.encode();
            if chan.send(&msg, &[]).await.is_err() {
                return;
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Changes during the pause are sent on the next round.
        if m.negotiating.get() != last {
            m.negotiating_changed.notify_one();
        }
    }
}

fn dump_state(m: &Rc<Mother>) {
    let slots = m.pool.slots.borrow();
    log::info(&format!(
        "mother[{}/{}]: relay processes: {}, clients negotiating: {}, sessions handed and open: {}, handed off so far: {} in {} message(s), listening on: {}",
        m.index,
        m.of,
        slots.iter().filter(|s| s.alive.get()).count(),
        m.negotiating.get(),
        m.pool.total_sessions(),
        m.pool.handed_total.get(),
        m.pool.handoff_messages.get(),
        m.accepting
            .borrow()
            .keys()
            .map(log::addr)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    if let Some(pid) = m.keeper.as_ref().and_then(|k| k.pid()) {
        log::info(&format!("auth-helper: pid {pid}"));
    }
    if let Some(f) = &m.family {
        for (i, pid, negotiating) in f.pids() {
            log::info(&format!(
                "mother[{i}/{}]: pid {pid}, clients negotiating: {negotiating}",
                m.of
            ));
        }
    }
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

/// Entry point of mother 1 (from `main`). Returns the exit code.
pub fn run(args: MotherArgs) -> i32 {
    super::block_on_local("mother[1]", serve(args))
}

/// Entry point of `--role mother --id I/N`: waits for the first configuration and the
/// listening sockets from the special process, then serves like mother 1.
pub fn run_child(index: u32, of: u32, ctl: OwnedFd, flags: Flags, relays: usize) -> i32 {
    super::remember_parent();
    let id = format!("{index}/{of}");
    rsockd_sys::proctitle::set(&format!("rsockd: mother {index}/{of}"));
    super::block_on_local(&format!("mother[{id}]"), async move {
        let chan = match Channel::new(ctl, "mother_ipc()") {
            Ok(c) => Rc::new(c),
            Err(e) => {
                log::error(&format!("mother[{id}]: control channel: {e}"));
                return 1;
            }
        };
        let (generation, file, listen, fds) = match chan.recv::<Control>().await {
            Some((
                Control::Config {
                    generation,
                    file,
                    listen,
                },
                fds,
            )) => (generation, file, listen, fds),
            None => return 1,
            Some(_) => {
                log::error(&format!(
                    "mother[{id}]: the first control message must be a configuration"
                ));
                return 2;
            }
        };
        let mut fds = fds.into_iter();
        let Some(memfd) = fds.next() else {
            return 2;
        };
        let settings = match Settings::adopt(&file, generation, flags, memfd) {
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
        })
        .await
    })
}

async fn serve(args: MotherArgs) -> i32 {
    let MotherArgs {
        index,
        of,
        flags,
        settings,
        listeners,
        pidfile,
        relays,
        upstream,
        lead,
    } = args;
    settings.make_current();
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
        family: family.clone(),
        negotiating: Cell::new(0),
        negotiating_changed: tokio::sync::Notify::new(),
        auth,
        keeper,
    });
    rsockd_sys::proctitle::set(&m.title());
    let Some(mut signals) = Signals::install(true) else {
        log::error("cannot install signal handlers");
        return 1;
    };
    if let Some(k) = &m.keeper {
        k.apply(&settings).await;
    }
    if let Err(e) = m.pool.start_base(relays, &settings).await {
        log::error(&e);
        return 1;
    }
    for (addr, fd) in listeners {
        if let Err(e) = start_accepting(&m, addr, fd) {
            log::error(&format!("cannot accept on {}: {e}", log::addr(&addr)));
            return 1;
        }
    }
    if let Some(f) = &family {
        for i in 2..=of {
            if let Err(e) = f.start(i, &settings).await {
                log::error(&format!("cannot start mother[{i}/{of}]: {e}"));
                return 1;
            }
        }
    }
    // Ready when every relay (and every other mother) has applied its configuration.
    while !(m.pool.all_ready() && family.as_ref().is_none_or(|f| f.all_ready())) {
        let relays_changed = m.pool.ready_changed.notified();
        tokio::select! {
            _ = relays_changed => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            // A mother that dies while starting is re-spawned like any other.
            _ = signals.child_exited() => {
                for (pid, how) in rsockd_sys::process::reap() {
                    if let Some(f) = &family {
                        f.reaped(pid, &how);
                    }
                }
            }
        }
    }
    log::info(&format!(
        "rsockd/server[{index}/{of}] v{} running",
        env!("CARGO_PKG_VERSION")
    ));
    let upstream_task = match &upstream {
        Some(chan) => {
            let ready = Report::Ready {
                pid: std::process::id(),
            };
            if let Err(e) = chan.send(&ready.encode(), &[]).await {
                log::error(&format!("mother[{index}/{of}]: control channel: {e}"));
            }
            tokio::task::spawn_local(report_negotiating(m.clone(), chan.clone()));
            Some(tokio::task::spawn_local(upstream_loop(
                m.clone(),
                chan.clone(),
            )))
        }
        None => {
            crate::notify::notify("READY=1");
            None
        }
    };
    let mut upstream_task = upstream_task;
    let code = loop {
        let from_upstream = async {
            match upstream_task.as_mut() {
                Some(t) => t.await.unwrap_or(Upstream::Gone),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sig = signals.next() => match sig {
                Signal::Reload => {
                    if upstream.is_none() { crate::notify::notify("RELOADING=1"); }
                    reload(&m).await;
                    if upstream.is_none() { crate::notify::notify("READY=1"); }
                }
                Signal::Dump => {
                    dump_state(&m);
                    m.pool.broadcast(&Control::DumpState, None).await;
                    if let Some(f) = &family {
                        f.broadcast(&Control::DumpState, None).await;
                    }
                }
                Signal::ChildExited => {
                    for (pid, how) in rsockd_sys::process::reap() {
                        if family.as_ref().is_some_and(|f| f.reaped(pid, &how)) {
                            continue;
                        }
                        log::debug(&format!("sigchld(): process {pid} exited ({how:?})"));
                    }
                }
                Signal::Stop(code) => break code,
            },
            up = from_upstream => {
                upstream_task = None;
                match up {
                    Upstream::Drain => break libc::SIGTERM,
                    Upstream::Gone => {}
                }
            }
        }
    };
    if upstream.is_none() {
        crate::notify::notify("STOPPING=1");
    }
    log::info(&format!("sigterm(): exiting on signal {code}"));
    child::stop_replacing();
    for (_, h) in m.accepting.borrow_mut().drain() {
        h.abort();
    }
    m.pool.broadcast(&Control::Drain, None).await;
    if let Some(f) = &family {
        f.broadcast(&Control::Drain, None).await;
        f.wait_gone(&mut signals).await;
    }
    log::alert(&format!("mother[{index}/{of}]: shutting down"));
    if let Some(f) = pidfile {
        let _ = f.set_len(0);
    }
    0
}
