//! A process's children, whoever keeps them (a mother its relays, the lead process the other
//! mothers and the auth helper): the role a child is started in, written as the hidden
//! `--role` arguments by [`Role::to_args`] and read back by [`Role::parse`]; starting one
//! ([`Child::spawn`]); the configuration it is sent ([`send_config`]); and the one back-off
//! every keeper re-spawns with ([`Backoff`], [`respawn`]). What to do when a child dies is the
//! keeper's policy and stays with it. On the child's side: remembering its parent, noticing
//! it gone ([`parent_gone`]), and the single-threaded runtime every role runs on
//! ([`block_on_local`]).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rsockd_ipc::Control;

use crate::channel::Channel;
use crate::log;
use crate::scoreboard::counters;
use crate::settings::{Flags, Settings};

/// The descriptor number a child finds its control channel on.
pub const CTL_FD: i32 = 3;

/// What a child process is started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Mother `index` of `of` (`-N of`), starting `relays` relay processes.
    Mother { index: u32, of: u32, relays: usize },
    /// Relay `M.K`: relay `K` of mother `M`.
    Relay { id: String },
    /// The auth helper, keeping `user.privileged` (`None`: root).
    AuthHelper { user: Option<String> },
}

impl Role {
    /// The process title it starts with, as `ps` shows it.
    pub fn title(&self) -> String {
        match self {
            Role::Mother { index, of, .. } => format!("rsockd: mother {index}/{of}"),
            Role::Relay { id } => format!("rsockd: relay {id}"),
            Role::AuthHelper { .. } => "rsockd: auth-helper".to_string(),
        }
    }

    /// The hidden arguments that start this role: `--role relay --id M.K`,
    /// `--role mother --id I/N --relays K`, `--role auth-helper [--user U]`, then the flags.
    pub fn to_args(&self, flags: Flags) -> Vec<String> {
        let mut v: Vec<String> = vec!["--role".into()];
        match self {
            Role::Mother { index, of, relays } => {
                v.extend(["mother".into(), "--id".into(), format!("{index}/{of}")]);
                v.extend(["--relays".into(), relays.to_string()]);
            }
            Role::Relay { id } => v.extend(["relay".into(), "--id".into(), id.clone()]),
            Role::AuthHelper { user } => {
                v.push("auth-helper".into());
                if let Some(u) = user {
                    v.extend(["--user".into(), u.clone()]);
                }
            }
        }
        v.extend(flags.to_args());
        v
    }

    /// Reads back what [`Role::to_args`] wrote. The error names the argument.
    pub fn parse(args: &[String]) -> Result<(Role, Flags), String> {
        let mut role = None;
        let mut id = None;
        let mut relays = 1usize;
        let mut user = None;
        let mut flags = Flags::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("\"{a}\" needs a value"));
            match a.as_str() {
                "--role" => role = Some(value()?),
                "--id" => id = Some(value()?),
                "--relays" => {
                    let v = value()?;
                    relays = v.parse().map_err(|_| format!("bad relay count \"{v}\""))?;
                }
                "--user" => user = Some(value()?),
                "-d" => {
                    let v = value()?;
                    flags.debug = Some(v.parse().map_err(|_| format!("bad debug level \"{v}\""))?);
                }
                "-n" => flags.no_keepalive = true,
                other => return Err(format!("unexpected argument \"{other}\"")),
            }
        }
        let role = match role.as_deref() {
            Some("mother") => {
                let id = id.unwrap_or_default();
                match id.split_once('/').map(|(i, n)| (i.parse(), n.parse())) {
                    Some((Ok(index), Ok(of))) => Role::Mother { index, of, relays },
                    _ => return Err(format!("bad mother id \"{id}\"")),
                }
            }
            Some("relay") => Role::Relay {
                id: id.unwrap_or_else(|| "?".into()),
            },
            Some("auth-helper") => Role::AuthHelper { user },
            _ => return Err("unknown role".into()),
        };
        Ok((role, flags))
    }
}

/// A started child: its pid and our end of its control channel.
pub struct Child {
    pub pid: u32,
    pub chan: Rc<Channel>,
    pub started: Instant,
}

impl Child {
    /// Starts `role`: our own binary re-executed, with the other end of a new SEQPACKET pair
    /// as its [`CTL_FD`], the server's counters as its [`counters::COUNTERS_FD`], and nothing
    /// else but the standard descriptors (DESIGN §1).
    /// `label` names the channel in our log lines.
    pub fn spawn(role: &Role, flags: Flags, label: String) -> io::Result<Child> {
        let (ours, theirs) = rsockd_sys::fdpass::seqpacket_pair()?;
        let mut fds = vec![(theirs, CTL_FD)];
        fds.extend(counters::dup_fd().map(|fd| (fd, counters::COUNTERS_FD)));
        let child = rsockd_sys::spawn::spawn_self(&role.title(), &role.to_args(flags), fds)?;
        Ok(Child {
            pid: child.id(),
            chan: Rc::new(Channel::new(ours, label)?),
            started: Instant::now(),
        })
    }
}

/// Sends a configuration to a child: the text in a memfd, then `listen`'s sockets (a mother's
/// full set to accept on; relays get none).
pub async fn send_config(
    chan: &Channel,
    s: &Settings,
    listen: Vec<(SocketAddr, OwnedFd)>,
) -> io::Result<()> {
    let memfd = s.to_memfd()?;
    let board = s.board.as_ref().map(|b| b.dup_fd()).transpose()?;
    let msg = Control::Config {
        generation: s.generation,
        file: s.file.clone(),
        board: board.is_some(),
        listen: listen.iter().map(|(a, _)| *a).collect(),
    };
    let mut fds: Vec<BorrowedFd<'_>> = vec![memfd.as_fd()];
    fds.extend(board.as_ref().map(|b| b.as_fd()));
    fds.extend(listen.iter().map(|(_, fd)| fd.as_fd()));
    chan.send(&msg.encode(), &fds).await
}

static STOPPING: AtomicBool = AtomicBool::new(false);

/// This process is shutting down: from now on no keeper replaces a child that exits.
pub fn stop_replacing() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// Whether [`stop_replacing`] was called.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// How long to wait before replacing a child that keeps dying. A child that lived at least
/// `healthy_after` is replaced at once and its count starts afresh; the first early death is
/// replaced at once too, then 1 s doubling up to `max` while it keeps dying young. A start
/// that fails is retried 1 s later, doubling up to `max`.
pub struct Backoff {
    healthy_after: Duration,
    max: Duration,
    early_deaths: Cell<u32>,
}

impl Backoff {
    pub const fn new(healthy_after: Duration, max: Duration) -> Backoff {
        Backoff {
            healthy_after,
            max,
            early_deaths: Cell::new(0),
        }
    }

    /// A child that lived `lived` died: the delay before its replacement starts.
    pub fn after_death(&self, lived: Duration) -> Duration {
        let n = if lived >= self.healthy_after {
            1
        } else {
            self.early_deaths.get() + 1
        };
        self.early_deaths.set(n);
        delay_after(n, self.max)
    }

    /// Deaths in a row without a healthy life in between, this one included.
    pub fn deaths_in_a_row(&self) -> u32 {
        self.early_deaths.get()
    }

    /// A start failed after waiting `last`: the wait before the next try.
    pub fn after_failed_start(&self, last: Duration) -> Duration {
        (last * 2).clamp(Duration::from_secs(1), self.max)
    }
}

/// The delay after `deaths` early deaths in a row: none the first time, then 1 s doubling up
/// to `max`.
fn delay_after(deaths: u32, max: Duration) -> Duration {
    if deaths <= 1 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (deaths - 2).min(6)).min(max)
}

/// Waits `delay`, then starts a replacement with `start`, waiting longer after each failed
/// start, until one succeeds or this process stops. `what` names the child in the error line.
pub async fn respawn<F, Fut>(
    backoff: &Backoff,
    mut delay: Duration,
    what: &str,
    role: counters::ProcRole,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    loop {
        tokio::time::sleep(delay).await;
        if stopping() {
            return;
        }
        match start().await {
            Ok(()) => {
                counters::restarted(role);
                return;
            }
            Err(e) => {
                log::error(&format!("cannot start {what}: {e}"));
                delay = backoff.after_failed_start(delay);
            }
        }
    }
}

// In the child: who its parent was, and the runtime its role runs on.

static PARENT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Remembers the process that started us; call first thing in a child role.
pub(crate) fn remember_parent() {
    let _ = PARENT.set(rsockd_sys::process::parent());
}

/// Our parent is gone: we were adopted (by mother 1 as subreaper, the supervisor or init).
/// Dante then adds `: mother unexpectedly exited` to its alert. A dying process closes its
/// descriptors before its children are re-parented, so after EOF on the control channel we
/// give the kernel a moment to finish.
pub(crate) async fn parent_gone() -> bool {
    let Some(original) = PARENT.get().copied() else {
        return false;
    };
    for _ in 0..50 {
        if rsockd_sys::process::parent() != original {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Runs a role's main future on a current-thread runtime with a `LocalSet` (every process is
/// single-threaded; we scale with processes). Returns the role's exit code.
pub(crate) fn block_on_local(who: &str, fut: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, fut),
        Err(e) => {
            crate::log::error(&format!("{who}: cannot start runtime: {e}"));
            1
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let max = Duration::from_secs(60);
        let secs: Vec<u64> = (1..=9).map(|d| delay_after(d, max).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_healthy_life_starts_the_count_afresh() {
        let b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let young = Duration::from_secs(1);
        let delays: Vec<u64> = (0..4).map(|_| b.after_death(young).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4]);
        assert_eq!(b.after_death(Duration::from_secs(61)), Duration::ZERO);
        assert_eq!(b.after_death(young).as_secs(), 1);
    }

    #[test]
    fn failed_starts_wait_longer_up_to_the_maximum() {
        let b = Backoff::new(Duration::ZERO, Duration::from_secs(30));
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            d = b.after_failed_start(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn every_role_reads_back_what_it_wrote() {
        let flags = Flags {
            debug: Some(2),
            no_keepalive: true,
        };
        for role in [
            Role::Mother {
                index: 2,
                of: 3,
                relays: 4,
            },
            Role::Relay { id: "1.2".into() },
            Role::AuthHelper { user: None },
            Role::AuthHelper {
                user: Some("root".into()),
            },
        ] {
            let (back, f) = Role::parse(&role.to_args(flags)).unwrap();
            assert_eq!(back, role);
            assert_eq!((f.debug, f.no_keepalive), (Some(2), true));
        }
    }

    #[test]
    fn bad_role_arguments_are_named() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = |v: &[&str]| Role::parse(&args(v)).unwrap_err();
        assert_eq!(
            err(&["--role", "mother", "--id", "x"]),
            "bad mother id \"x\""
        );
        assert_eq!(
            err(&["--role", "relay", "--bogus"]),
            "unexpected argument \"--bogus\""
        );
        assert_eq!(err(&["--role", "nobody"]), "unknown role");
        assert_eq!(err(&["--role"]), "\"--role\" needs a value");
    }
}
