//! libwrap (tcp_wrappers), as Dante uses it: `libwrap.hosts_access: yes` runs hosts.allow and
//! hosts.deny (or the `libwrap.allow:`/`libwrap.deny:` files) for every client at accept,
//! before the client rules, under the daemon name this program was started as (Dante's
//! `__progname`); a rule's `libwrap:` line (`spawn ...`, `deny`, ...) runs when the rule
//! matches, and one whose options jump (`deny`, `allow`, a bad option) blocks the client, with
//! Dante's `failed libwrap line` warning. libwrap may look names up and run commands: calls go
//! to the blocking pool, one at a time (libwrap keeps its state in globals).

use std::os::fd::{AsFd, OwnedFd};

use rsockd_config::Config;

/// Whether this build has libwrap (cargo feature `libwrap`, Debian's libwrap0-dev).
pub const BUILT: bool = cfg!(feature = "libwrap");

/// The default tables, as libwrap's own.
const HOSTS_ALLOW: &str = "/etc/hosts.allow";
const HOSTS_DENY: &str = "/etc/hosts.deny";

/// Refuses a configuration that needs libwrap in a build without it (Dante's words).
pub fn check(cfg: &Config) -> Result<(), String> {
    if BUILT {
        return Ok(());
    }
    let rule = cfg
        .client_rules
        .iter()
        .chain(&cfg.socks_rules)
        .find(|r| r.libwrap.is_some());
    let what = if cfg.libwrap_hosts_access {
        Some("libwrap.hosts_access".to_string())
    } else if cfg.libwrap_allow.is_some() || cfg.libwrap_deny.is_some() {
        Some("libwrap.allow/libwrap.deny".to_string())
    } else {
        rule.map(|r| format!("'libwrap:' at line {}", r.line))
    };
    match what {
        Some(w) => Err(format!(
            "{w} requires libwrap library, and this rsockd was built without it (cargo feature \
             \"libwrap\", Debian package libwrap0-dev)"
        )),
        None => Ok(()),
    }
}

/// Whether any part of `cfg` needs a client's socket for libwrap.
pub fn wanted(cfg: &Config) -> bool {
    cfg.libwrap_hosts_access
        || cfg
            .client_rules
            .iter()
            .chain(&cfg.socks_rules)
            .any(|r| r.libwrap.is_some())
}

/// The daemon name hosts.allow lines are matched against: the program's name.
fn daemon() -> &'static str {
    rsockd_sys::proctitle::program_name()
}

/// hosts_access(3) for the client on `fd` (a duplicate the check owns).
pub async fn hosts_access(fd: OwnedFd, cfg: &Config) -> bool {
    let allow = path_or(&cfg.libwrap_allow, HOSTS_ALLOW);
    let deny = path_or(&cfg.libwrap_deny, HOSTS_DENY);
    blocking(move || allowed(&fd, &allow, &deny))
        .await
        .unwrap_or(false)
}

/// Runs a rule's `libwrap:` line for the client on `fd`; false when it blocks the client.
pub async fn rule_line(fd: OwnedFd, line: &str) -> bool {
    let l = line.to_string();
    let ok = blocking(move || options(&fd, &l)).await.unwrap_or(false);
    if !ok {
        crate::log::warning(&format!(
            "rulespermit(): failed libwrap line: \"{}\"",
            crate::log::escape(line.as_bytes())
        ));
    }
    ok
}

fn path_or(p: &Option<std::path::PathBuf>, default: &str) -> String {
    p.as_ref()
        .map_or_else(|| default.to_string(), |p| p.display().to_string())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(feature = "libwrap")]
fn allowed(fd: &OwnedFd, allow: &str, deny: &str) -> bool {
    rsockd_sys::libwrap::hosts_access(fd.as_fd(), daemon(), allow, deny)
}

#[cfg(feature = "libwrap")]
fn options(fd: &OwnedFd, line: &str) -> bool {
    // Any jump out of the options (deny, allow, an error) blocks, as in Dante.
    rsockd_sys::libwrap::process_options(fd.as_fd(), daemon(), line)
        == rsockd_sys::libwrap::Options::Ran
}

// Without libwrap, `check` refuses every configuration that gets here.
#[cfg(not(feature = "libwrap"))]
fn allowed(fd: &OwnedFd, _allow: &str, _deny: &str) -> bool {
    let _ = (fd.as_fd(), daemon());
    true
}

#[cfg(not(feature = "libwrap"))]
fn options(fd: &OwnedFd, _line: &str) -> bool {
    let _ = fd.as_fd();
    true
}
