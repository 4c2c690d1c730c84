//! The lead process's side of the auth helper: starting it when a configuration first needs
//! it, re-spawning it when it dies, telling it which password file to use, and handing every
//! mother a channel to it.
//!
//! The lead process (mother 1, or the supervisor) runs unprivileged like every networking
//! process, but keeps `user.privileged` as its saved uid (see `rsockd_sys::privs::drop_to`);
//! it borrows that uid just for the spawn, so the helper starts privileged.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rsockd_ipc::{AuthAnswer, HelperControl};

use super::link::AuthLink;
use crate::channel::Channel;
use crate::log;
use crate::roles::mother::family::Family;
use crate::roles::CTL_FD;
use crate::settings::Settings;

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
    /// The lead mother's own link (None for the supervisor, which authenticates nobody).
    own: Option<Rc<AuthLink>>,
    family: RefCell<Option<Rc<Family>>>,
    pub stopping: Cell<bool>,
}

impl Keeper {
    pub fn new(privileged: Option<String>, own: Option<Rc<AuthLink>>) -> Rc<Keeper> {
        Rc::new(Keeper {
            privileged,
            running: RefCell::new(None),
            users_file: RefCell::new(None),
            own,
            family: RefCell::new(None),
            stopping: Cell::new(false),
        })
    }

    /// The mothers to hand channels to, besides our own.
    pub fn set_family(&self, f: Rc<Family>) {
        *self.family.borrow_mut() = Some(f);
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
        if !self.is_running() {
            if !super::needs_helper(&s.config) {
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

    async fn send_users_file(&self) {
        let chan = self.running.borrow().as_ref().map(|r| r.chan.clone());
        let Some(chan) = chan else { return };
        let path = self
            .users_file
            .borrow()
            .as_ref()
            .map(|p| p.display().to_string());
        let msg = HelperControl::UsersFile { path }.encode();
        if let Err(e) = chan.send(&msg, &[]).await {
            log::error(&format!(
                "auth helper: cannot send the password file name: {e}"
            ));
        }
    }

    fn spawn(&self) -> std::io::Result<(u32, Channel)> {
        let (ours, theirs) = rsockd_sys::fdpass::seqpacket_pair()?;
        let mut args = vec!["--role".to_string(), "auth-helper".to_string()];
        if let Some(u) = &self.privileged {
            args.push("--user".into());
            args.push(u.clone());
        }
        let child = rsockd_sys::privs::with_saved_uid(|| {
            rsockd_sys::spawn::spawn_self("rsockd: auth-helper", &args, vec![(theirs, CTL_FD)])
        })?;
        Ok((child.id(), Channel::new(ours, "auth helper")?))
    }

    /// Starts the helper, loads the password file and hands every mother a channel.
    async fn start(self: &Rc<Self>) -> std::io::Result<()> {
        let (pid, chan) = self.spawn()?;
        let chan = Rc::new(chan);
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
        let family = self.family.borrow().clone();
        if let Some(f) = family {
            f.hand_out_auth(self).await;
        }
        tokio::task::spawn_local(self.clone().watch(chan, pid, Instant::now()));
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
        if self.stopping.get() {
            return;
        }
        log::warning(&format!(
            "auth helper (pid {pid}) exited unexpectedly; logins fail until it is re-spawned"
        ));
        let mut delay = if started.elapsed() >= HEALTHY_AFTER {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        };
        loop {
            tokio::time::sleep(delay).await;
            if self.stopping.get() || self.is_running() {
                return;
            }
            match self.start().await {
                Ok(()) => return,
                Err(e) => {
                    log::error(&format!("cannot re-spawn the auth helper: {e}"));
                    delay = (delay * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                }
            }
        }
    }
}
