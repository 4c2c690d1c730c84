//! Dropping privileges (`user.privileged` / `user.unprivileged`).
//!
//! glibc's set*id broadcast to every thread, but we still drop before any thread starts, as
//! DESIGN.md requires, so no thread ever runs with the old ids.

use std::io;

use nix::unistd::{Gid, Uid, User};

/// A looked-up account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up by name (or by number, as Dante accepts).
pub fn lookup(name: &str) -> io::Result<Option<Account>> {
    let user = match name.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)).map_err(io::Error::from)?,
        Err(_) => User::from_name(name).map_err(io::Error::from)?,
    };
    Ok(user.map(|u| Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}

/// True when the process runs as root.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Current effective uid.
pub fn euid() -> u32 {
    Uid::effective().as_raw()
}

/// Switches real and effective ids to `to`. The saved uid becomes `saved` so that the process
/// can later take `saved` back for privileged binds, as Dante keeps its privileged uid; pass
/// `to.uid` to drop for good.
pub fn drop_to(to: &Account, saved: u32) -> io::Result<()> {
    let gid = Gid::from_raw(to.gid);
    let cname = std::ffi::CString::new(to.name.clone())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name holds a NUL"))?;
    nix::unistd::initgroups(&cname, gid).map_err(io::Error::from)?;
    nix::unistd::setresgid(gid, gid, gid).map_err(io::Error::from)?;
    let uid = Uid::from_raw(to.uid);
    nix::unistd::setresuid(uid, uid, Uid::from_raw(saved)).map_err(io::Error::from)?;
    Ok(())
}

/// Runs `f` with the saved uid as effective uid, then switches back: Dante's way of binding a
/// privileged port on SIGHUP after it dropped to `user.unprivileged` (the saved uid is
/// `user.privileged`, see `drop_to`). Without a different saved uid, `f` just runs.
pub fn with_saved_uid<T>(f: impl FnOnce() -> T) -> T {
    let Ok(ids) = nix::unistd::getresuid() else {
        return f();
    };
    if ids.saved == ids.effective || nix::unistd::seteuid(ids.saved).is_err() {
        return f();
    }
    let out = f();
    // Going back to the uid we had cannot fail: the real uid is that uid.
    let _ = nix::unistd::seteuid(ids.effective);
    out
}
