//! The auth helper process (`rsockd: auth-helper`): the one process that keeps
//! `user.privileged`, so that it can read shadow and run PAM while mothers and relays run as
//! `user.unprivileged` (OpenSSH-style privilege separation, DESIGN §1).
//!
//! It takes no network input: only queries from mothers, each on its own SEQPACKET channel
//! handed over by the lead process on the control channel. Checks run on blocking threads, at
//! most `cores` at once (hashing is CPU-bound); more queries than [`MAX_QUEUED`] per channel
//! are answered "busy" at once rather than piling up. The helper lives on after its starter
//! dies, while any mother still holds a channel, so the other mothers keep authenticating.

pub mod keeper;

use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use rsockd_ipc::{AuthAnswer, AuthQuery, AuthSource, HelperControl};
use tokio::sync::Semaphore;

use crate::auth::route_credentials::RouteCredentials;
use crate::auth::users_file::UsersFile;
use crate::auth::verify::Verifier;
use crate::channel::Channel;
use crate::log;
use crate::roles::child;

/// Queries one mother may have waiting for a thread; a flood beyond this is refused.
const MAX_QUEUED: usize = 1024;

/// Runs the helper. `privileged`: the `user.privileged` account to keep (root when unset).
pub fn run(ctl: OwnedFd, privileged: Option<String>) -> i32 {
    child::remember_parent();
    rsockd_sys::proctitle::set("rsockd: auth-helper");
    crate::log::set_process("auth-helper");
    if rsockd_sys::privs::is_root() {
        let name = privileged.unwrap_or_else(|| "root".into());
        match rsockd_sys::privs::lookup(&name) {
            Ok(Some(acct)) => {
                // Started with euid = the privileged uid but the unprivileged account's groups:
                // take the privileged account's own ids, for good.
                if let Err(e) = rsockd_sys::privs::drop_to(&acct, acct.uid) {
                    log::error(&format!("auth-helper: cannot become user {name}: {e}"));
                    return 1;
                }
            }
            _ => {
                log::error(&format!("auth-helper: no such user \"{name}\""));
                return 1;
            }
        }
    }
    child::block_on_local("auth-helper", serve_control(ctl))
}

async fn serve_control(ctl: OwnedFd) -> i32 {
    let chan = match Channel::new(ctl, "auth-helper") {
        Ok(c) => Rc::new(c),
        Err(e) => {
            log::error(&format!("auth-helper: control channel: {e}"));
            return 1;
        }
    };
    let verifier = Arc::new(Verifier::new());
    let threads = Arc::new(Semaphore::new(rsockd_sys::process::cpus().max(2)));
    let clients = Rc::new(Cell::new(0usize));
    let gone = Rc::new(tokio::sync::Notify::new());
    while let Some((msg, fds)) = chan.recv::<HelperControl>().await {
        match msg {
            HelperControl::Client => {
                let Some(fd) = fds.into_iter().next() else {
                    continue;
                };
                let Ok(c) = Channel::new(fd, "auth-helper") else {
                    continue;
                };
                clients.set(clients.get() + 1);
                let (v, t, n, g) = (
                    verifier.clone(),
                    threads.clone(),
                    clients.clone(),
                    gone.clone(),
                );
                tokio::task::spawn_local(async move {
                    serve_client(Rc::new(c), v, t).await;
                    n.set(n.get() - 1);
                    g.notify_waiters();
                });
            }
            HelperControl::UsersFile { path } => {
                let answer = load_users(&verifier, path.map(PathBuf::from));
                let _ = chan.send(&answer.encode(), &[]).await;
            }
            HelperControl::RouteCredentials { path } => {
                let answer = load_routes(&verifier, path.map(PathBuf::from));
                let _ = chan.send(&answer.encode(), &[]).await;
            }
        }
    }
    // The starter is gone; mothers that still hold a channel keep being served.
    while clients.get() > 0 {
        let wait = gone.notified();
        if clients.get() == 0 {
            break;
        }
        wait.await;
    }
    0
}

/// (Re)loads the password file; the answer (id 0) tells the starter whether it worked. A
/// broken file keeps the previous one in force, as a broken config does on SIGHUP.
fn load_users(v: &Verifier, path: Option<PathBuf>) -> AuthAnswer {
    let Some(path) = path else {
        v.set_users(None);
        return AuthAnswer {
            id: 0,
            ok: true,
            reason: String::new(),
            secret: None,
        };
    };
    match UsersFile::load(&path) {
        Ok(f) => {
            let n = f.len();
            v.set_users(Some(f));
            AuthAnswer {
                id: 0,
                ok: true,
                reason: format!("password file {} loaded: {n} user(s)", path.display()),
                secret: None,
            }
        }
        Err(e) => AuthAnswer {
            id: 0,
            ok: false,
            reason: match v.users_path() {
                Some(_) => format!("{e}; keeping the previously loaded password file"),
                None => e.to_string(),
            },
            secret: None,
        },
    }
}

/// (Re)loads `rsockd.route.credentials`, as [`load_users`] does the password file.
fn load_routes(v: &Verifier, path: Option<PathBuf>) -> AuthAnswer {
    let answer = |ok, reason| AuthAnswer {
        id: 0,
        ok,
        reason,
        secret: None,
    };
    let Some(path) = path else {
        v.set_routes(None);
        return answer(true, String::new());
    };
    match RouteCredentials::load(&path) {
        Ok(f) => {
            let n = f.len();
            v.set_routes(Some(f));
            answer(
                true,
                format!(
                    "route credentials {} loaded: {n} upstream(s)",
                    path.display()
                ),
            )
        }
        Err(e) => answer(
            false,
            match v.has_routes() {
                true => format!("{e}; keeping the previously loaded route credentials"),
                false => e.to_string(),
            },
        ),
    }
}

async fn serve_client(chan: Rc<Channel>, v: Arc<Verifier>, threads: Arc<Semaphore>) {
    let queued = Rc::new(Cell::new(0usize));
    // The channel wipes each query's bytes (a password) once decoded.
    while let Some((q, _)) = chan.recv::<AuthQuery>().await {
        if q.source == AuthSource::Route {
            // A look-up, not a check: answered at once.
            let secret = v.route_secret(&q.service);
            let mut a = AuthAnswer {
                id: q.id,
                ok: secret.is_some(),
                reason: String::new(),
                secret,
            };
            let mut buf = a.encode();
            let _ = chan.send(&buf, &[]).await;
            // Both held the password.
            buf.fill(0);
            if let Some((_, p)) = a.secret.as_mut() {
                p.fill(0);
            }
            continue;
        }
        if queued.get() >= MAX_QUEUED {
            let a = AuthAnswer {
                id: q.id,
                ok: false,
                reason: "the auth helper is overloaded".into(),
                secret: None,
            };
            let _ = chan.send(&a.encode(), &[]).await;
            continue;
        }
        queued.set(queued.get() + 1);
        let (chan, v, threads, queued) = (chan.clone(), v.clone(), threads.clone(), queued.clone());
        tokio::task::spawn_local(async move {
            let id = q.id;
            let (verdict, delay) = match threads.acquire_owned().await {
                Ok(permit) => tokio::task::spawn_blocking(move || {
                    let mut q = q;
                    let r = v.check_deferring_delay(&q);
                    if let Some(p) = q.password.as_mut() {
                        p.fill(0);
                    }
                    drop(permit);
                    r
                })
                .await
                .unwrap_or_else(|_| {
                    (
                        Err("the password check failed unexpectedly".into()),
                        std::time::Duration::ZERO,
                    )
                }),
                Err(_) => (
                    Err("the auth helper is shutting down".into()),
                    std::time::Duration::ZERO,
                ),
            };
            // A PAM module's failure delay, waited out here without holding a thread or PAM.
            tokio::time::sleep(delay).await;
            queued.set(queued.get() - 1);
            let a = AuthAnswer {
                id,
                ok: verdict.is_ok(),
                reason: verdict.err().unwrap_or_default(),
                secret: None,
            };
            let _ = chan.send(&a.encode(), &[]).await;
        });
    }
}
