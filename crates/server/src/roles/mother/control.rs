//! What reaches a mother from outside its own clients: SIGHUP reloads, configurations and
//! orders from the lead process (mothers 2..N), its reports back, and the SIGUSR1 dump.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{Control, Report};

use super::accept::{start_accepting, stop_accepting};
use super::state::Mother;
use crate::channel::Channel;
use crate::log;
use crate::settings::Settings;

/// SIGHUP: re-read the file; a bad file is logged and the old configuration stays (Dante
/// exits here). `internal:` changes are applied: new addresses bound, removed ones closed.
pub(super) async fn reload(m: &Rc<Mother>) {
    let Some((new, addrs)) = m.settings().load_for_reload() else {
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

/// Hands a new configuration to our relays and, on mother 1, to the other mothers.
async fn broadcast_config(m: &Rc<Mother>, new: &Rc<Settings>) {
    let msg = Control::Config {
        generation: new.generation,
        file: new.file.clone(),
        board: new.board.is_some(),
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
    board: bool,
    listen: Vec<SocketAddr>,
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    let mut fds = fds.into_iter();
    let memfd = fds.next().ok_or("configuration without its descriptor")?;
    let board = if board { fds.next() } else { None };
    let new = Settings::adopt(file, generation, m.settings().flags, memfd, board)
        .map_err(|e| e.to_string())?;
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
pub(super) enum Upstream {
    Drain,
    Gone,
}

/// Mothers 2..N: obey mother 1 (or the supervisor). On EOF the special process is gone: say
/// so, as Dante's children do, and go on serving.
pub(super) async fn upstream_loop(m: Rc<Mother>, chan: Rc<Channel>) -> Upstream {
    while let Some((msg, fds)) = chan.recv::<Control>().await {
        match msg {
            Control::Config {
                generation,
                file,
                board,
                listen,
            } => {
                if let Err(e) = adopt(&m, generation, &file, board, listen, fds).await {
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
            Control::HandOver => {
                m.handing_over.set(true);
                return Upstream::Drain;
            }
            Control::Draining(on) => set_draining(&m, on),
            // Only meaningful while stopping, where `stop` reads the channel itself.
            Control::EndNow => {}
            Control::Auth => {
                if let Some(fd) = fds.into_iter().next() {
                    m.auth.install(fd);
                }
            }
            Control::Sessions(_) => log::error("mother_ipc(): unexpected session message"),
        }
    }
    let suffix = if crate::roles::child::parent_gone().await {
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
pub(super) async fn report_negotiating(m: Rc<Mother>, chan: Rc<Channel>) {
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

/// `rsockd --drain` / `--resume`: what this mother's agent answers from now on. Sessions,
/// new ones included, are served as before: draining is the balancer's cue, not a refusal.
pub(super) fn set_draining(m: &Mother, on: bool) {
    if m.draining.replace(on) == on {
        return;
    }
    let (what, answer) = if on {
        ("draining", "drain")
    } else {
        ("resuming", "up")
    };
    log::info(&format!(
        "mother[{}/{}]: {what}: agent checks answer \"{answer}\" from now on",
        m.index, m.of
    ));
}

pub(super) fn dump_state(m: &Rc<Mother>) {
    let slots = m.pool.slots.borrow();
    log::info(&format!(
        "mother[{}/{}]: relay processes: {}, clients negotiating: {}, sessions handed and open: {}, handed off so far: {} in {} message(s), agent says: {}, listening on: {}",
        m.index,
        m.of,
        slots.iter().filter(|s| s.alive.get()).count(),
        m.negotiating.get(),
        m.pool.total_sessions(),
        m.pool.handed_total.get(),
        m.pool.handoff_messages.get(),
        String::from_utf8_lossy(super::agent::line(m.health())).trim_end(),
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
    let settings = m.settings();
    if settings.rules.has_routes() {
        let bad = super::routed::state_lines(&settings);
        log::info(&format!(
            "mother[{}/{}]: routes: {}, marked bad: {}",
            m.index,
            m.of,
            settings.config.routes.len(),
            bad.len()
        ));
        for line in bad {
            log::info(&format!("mother[{}/{}]: {line}", m.index, m.of));
        }
    }
    // The scoreboard is the whole server's: the lead (mother 1) speaks for it.
    if m.index == 1 {
        for line in crate::scoreboard::counters::snapshot()
            .map(|s| s.summary())
            .unwrap_or_default()
        {
            log::info(&format!("counters: {line}"));
        }
        if let Some(b) = &m.settings().board {
            for line in b.dump() {
                log::info(&format!("scoreboard: {line}"));
            }
        }
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
