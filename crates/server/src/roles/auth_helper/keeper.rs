//! The lead process's side of the auth helper: starting it when a configuration first needs
//! it, re-spawning it when it dies, telling it which password file to use, and handing every
//! mother a channel to it ([`serve_mothers`]).
//!
//! The lead process (mother 1, or the supervisor) runs unprivileged like every networking
//! process, but keeps `user.privileged` as its saved uid (see `rsockd_sys::privs::drop_to`);
//! it borrows that uid just for the spawn, so the helper starts privileged.

use crate::scoreboard::counters::ProcRole;
use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rsockd_ipc::{AuthAnswer, Control, HelperControl};

use crate::auth::link::AuthLink;
use crate::channel::Channel;
use crate::log;
use crate::roles::child::{self, Backoff, Child, Role};
use crate::roles::mother::family::Family;
use crate::settings::{Flags, Settings};

/// A helper that lived at least this long before dying is re-spawned at once.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Running {
    pid: u32,
    chan: Rc<Channel>,
}

pub struct Keeper {
    privileged: Option<String>,
    running: RefCell<Option<Running>>,
    users_file: RefCell<Option<PathBuf>>,
    route_credentials: RefCell<Option<PathBuf>>,
    /// The lead mother's own link (None for the supervisor, which authenticates nobody).
    own: Option<Rc<AuthLink>>,
    /// Told each time a helper starts, so that every mother gets a channel to it.
    started: tokio::sync::Notify,
    backoff: Backoff,
}

impl Keeper {
    pub fn new(privileged: Option<String>, own: Option<Rc<AuthLink>>) -> Rc<Keeper> {
        Rc::new(Keeper {
            privileged,
            running: RefCell::new(None),
            users_file: RefCell::new(None),
            route_credentials: RefCell::new(None),
            own,
            started: tokio::sync::Notify::new(),
            backoff: Backoff::new(HEALTHY_AFTER, MAX_BACKOFF),
        })
    }

    /// The running helper's process id.
    pub fn pid(&self) -> Option<u32> {
        self.running.borrow().as_ref().map(|r| r.pid)
    }

    pub fn is_running(&self) -> bool {
        self.running.borrow().is_some()
    }

    /// Applies a (new) configuration: starts the helper if the configuration needs it, and
    /// has it (re)load the password file.
    pub async fn apply(self: &Rc<Self>, s: &Settings) {
        *self.users_file.borrow_mut() = s.config.users_file.clone();
        *self.route_credentials.borrow_mut() = s.config.route_credentials.clone();
        if !self.is_running() {
            if !crate::auth::needs_helper(&s.config) {
                return;
            }
            if let Err(e) = self.start().await {
                log::error(&format!("cannot start the auth helper: {e}"));
            }
            return;
        }
        self.send_users_file().await;
    }

    /// A new channel to the helper for one mother; None when no helper runs.
    pub async fn connect(&self) -> Option<OwnedFd> {
        let chan = self.running.borrow().as_ref().map(|r| r.chan.clone())?;
        let (ours, theirs) = match rsockd_sys::fdpass::seqpacket_pair() {
            Ok(p) => p,
            Err(e) => {
                log::error(&format!("auth helper: cannot make a channel: {e}"));
                return None;
            }
        };
        let msg = HelperControl::Client.encode();
        match chan.send(&msg, &[theirs.as_fd()]).await {
            Ok(()) => Some(ours),
            Err(e) => {
                log::error(&format!("auth helper: cannot hand over a channel: {e}"));
                None
            }
        }
    }

    /// Has the helper (re)load the password file and the route credentials.
    async fn send_users_file(&self) {
        let chan = self.running.borrow().as_ref().map(|r| r.chan.clone());
        let Some(chan) = chan else { return };
        let name =
            |p: &RefCell<Option<PathBuf>>| p.borrow().as_ref().map(|p| p.display().to_string());
        let users = HelperControl::UsersFile {
            path: name(&self.users_file),
        };
        let routes = HelperControl::RouteCredentials {
            path: name(&self.route_credentials),
        };
        for msg in [users, routes] {
            if let Err(e) = chan.send(&msg.encode(), &[]).await {
                log::error(&format!("auth helper: cannot send a file name: {e}"));
            }
        }
    }

    /// Starts the helper, loads the password file and hands every mother a channel.
    async fn start(self: &Rc<Self>) -> std::io::Result<()> {
        let role = Role::AuthHelper {
            user: self.privileged.clone(),
        };
        // Borrowing the saved uid just for the spawn starts the helper privileged.
        let Child { pid, chan, started } = rsockd_sys::privs::with_saved_uid(|| {
            Child::spawn(&role, Flags::default(), "auth helper".into())
        })?;
        if let Some(s) = crate::settings::Settings::current() {
            // The helper runs as root: its scheduling is set with the same privilege.
            rsockd_sys::privs::with_saved_uid(|| {
                crate::roles::cpu::apply_to(
                    Some(pid),
                    rsockd_config::CpuRole::AuthHelper,
                    &s.config,
                )
            });
        }
        *self.running.borrow_mut() = Some(Running {
            pid,
            chan: chan.clone(),
        });
        log::debug(&format!("auth helper started, pid {pid}"));
        self.send_users_file().await;
        if let Some(own) = &self.own {
            if let Some(fd) = self.connect().await {
                own.install(fd);
            }
        }
        self.started.notify_one();
        tokio::task::spawn_local(self.clone().watch(chan, pid, started));
        Ok(())
    }

    /// Reads the helper's answers to password-file loads; its EOF is its death.
    async fn watch(self: Rc<Self>, chan: Rc<Channel>, pid: u32, started: Instant) {
        while let Some((a, _)) = chan.recv::<AuthAnswer>().await {
            if !a.ok {
                log::error(&a.reason);
            } else if !a.reason.is_empty() {
                log::info(&a.reason);
            }
        }
        let is_current = self
            .running
            .borrow()
            .as_ref()
            .is_some_and(|r| Rc::ptr_eq(&r.chan, &chan));
        if !is_current {
            return;
        }
        *self.running.borrow_mut() = None;
        if child::stopping() {
            return;
        }
        log::warning(&format!(
            "auth helper (pid {pid}) exited unexpectedly; logins fail until it is re-spawned"
        ));
        let delay = self.backoff.after_death(started.elapsed());
        child::respawn(
            &self.backoff,
            delay,
            "the auth helper",
            ProcRole::AuthHelper,
            || {
                let k = self.clone();
                async move {
                    match k.is_running() {
                        true => Ok(()),
                        false => k.start().await,
                    }
                }
            },
        )
        .await;
    }
}

/// Hands every mother of `family` a channel to the helper: each mother as it starts, and all
/// of them again whenever the helper is re-spawned (the lead's own link is renewed by
/// [`Keeper::start`]).
pub fn serve_mothers(keeper: &Rc<Keeper>, family: &Rc<Family>) {
    let k = keeper.clone();
    family.on_start(move |chan| {
        let k = k.clone();
        tokio::task::spawn_local(async move { send_channel(&k, &chan).await });
    });
    let (k, f) = (keeper.clone(), family.clone());
    tokio::task::spawn_local(async move {
        loop {
            k.started.notified().await;
            for chan in f.channels() {
                send_channel(&k, &chan).await;
            }
        }
    });
}

/// Sends a mother a channel to the auth helper, if one runs.
async fn send_channel(k: &Keeper, chan: &Channel) {
    let Some(fd) = k.connect().await else { return };
    if let Err(e) = chan.send(&Control::Auth.encode(), &[fd.as_fd()]).await {
        log::error(&format!(
            "cannot hand a mother its auth helper channel: {e}"
        ));
    }
}
