//! What a signal means to an rsockd process, decided in one place for every role. Dante's
//! vocabulary: SIGHUP reloads, SIGUSR1 dumps the state, SIGTERM and SIGINT stop, SIGCHLD says
//! a child exited (only processes that start children ask for it).

use tokio::signal::unix::{signal, Signal as Stream, SignalKind};

/// A signal, as the role loops act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read the configuration (relays only reopen their log files; their mother
    /// sends them the new configuration).
    Reload,
    /// SIGUSR1: log the state.
    Dump,
    /// SIGTERM or SIGINT: stop; the number is the signal's, for the exit line.
    Stop(i32),
    /// SIGCHLD: reap, and replace what should not have died.
    ChildExited,
    /// Our extension, `rsockd --drain` / `--resume`: [`drain_signal`] (true) and [`resume_signal`] (false)
    /// set what the agent-check answers. Real-time signals, because every classic signal
    /// already means something (SIGWINCH arrives with each terminal resize).
    Drain(bool),
    /// SIGUSR2 (ours): start the binary we were started from and hand over to it.
    Upgrade,
}

/// `rsockd --drain` sends SIGRTMIN+1.
pub fn drain_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

/// `rsockd --upgrade` sends SIGUSR2.
pub fn upgrade_signal() -> i32 {
    libc::SIGUSR2
}

/// `rsockd --resume` sends SIGRTMIN+2.
pub fn resume_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

/// The signal streams of one process.
pub struct Signals {
    hup: Stream,
    usr1: Stream,
    term: Stream,
    int: Stream,
    drain: Stream,
    resume: Stream,
    usr2: Stream,
    /// None in processes that start no children (relays).
    chld: Option<Stream>,
}

impl Signals {
    /// Installs the handlers; `children` adds SIGCHLD. None if the runtime refuses one.
    pub fn install(children: bool) -> Option<Signals> {
        Some(Signals {
            hup: signal(SignalKind::hangup()).ok()?,
            usr1: signal(SignalKind::user_defined1()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            drain: signal(SignalKind::from_raw(drain_signal())).ok()?,
            resume: signal(SignalKind::from_raw(resume_signal())).ok()?,
            usr2: signal(SignalKind::user_defined2()).ok()?,
            chld: match children {
                true => Some(signal(SignalKind::child()).ok()?),
                false => None,
            },
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        let chld = async {
            match self.chld.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.usr1.recv() => Signal::Dump,
            _ = self.term.recv() => Signal::Stop(libc::SIGTERM),
            _ = self.int.recv() => Signal::Stop(libc::SIGINT),
            _ = chld => Signal::ChildExited,
            _ = self.drain.recv() => Signal::Drain(true),
            _ = self.resume.recv() => Signal::Drain(false),
            _ = self.usr2.recv() => Signal::Upgrade,
        }
    }

    /// The next SIGCHLD, ignoring the rest (while starting or stopping children).
    pub async fn child_exited(&mut self) {
        match self.chld.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}
