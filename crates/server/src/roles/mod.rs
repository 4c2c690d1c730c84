//! The processes of rsockd, one module per role. Every role is started by exec'ing our own
//! binary with a hidden `--role` argument (DESIGN.md §1); `main` dispatches here.

pub mod auth_helper;
pub mod child;
pub mod mother;
pub mod relay;
pub mod signals;
pub mod supervisor;

pub use child::{Role, CTL_FD};

/// Runs a child process's role (`main`, for the hidden `--role`); `ctl` is its control
/// channel. Returns the exit code.
pub fn run_child(role: Role, flags: crate::settings::Flags, ctl: std::os::fd::OwnedFd) -> i32 {
    match role {
        Role::Mother { index, of, relays } => mother::run_child(index, of, ctl, flags, relays),
        Role::Relay { id } => relay::run(id, ctl, flags),
        Role::AuthHelper { user } => auth_helper::run(ctl, user),
    }
}

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

/// SIGHUP, first half: re-read the file and check it can be served (its `internal:` addresses
/// expand). A bad file is logged and None returned: the running configuration stays (Dante
/// exits here). On success the new log outputs are already in use.
pub(crate) fn load_for_reload(
    old: &crate::settings::Settings,
) -> Option<(crate::settings::Settings, Vec<std::net::SocketAddr>)> {
    use crate::log;
    log::info("SIGHUP [: reloading config");
    let loaded = crate::settings::Settings::load(&old.file, old.generation + 1, old.flags)
        .map_err(|e| e.to_string())
        .and_then(|(s, mut w)| {
            // The password file is re-read by the auth helper, which can read it; we may not.
            w.extend(crate::auth::check(&s.config, false)?);
            s.listen_addrs()
                .map(|a| (s, w, a))
                .map_err(|e| e.to_string())
        });
    let (new, warnings, addrs) = match loaded {
        Ok(ok) => ok,
        Err(e) => {
            log::error(&format!(
                "SIGHUP: configuration not reloaded, keeping the running one: {e}"
            ));
            return None;
        }
    };
    for w in &warnings {
        log::warning(w);
    }
    if let Err(e) = new.install_logging() {
        log::error(&format!("SIGHUP: {e}; keeping the old log outputs"));
    }
    Some((new, addrs))
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
