//! libwrap (tcp_wrappers, Debian's libwrap0): `hosts_access(3)` on a client's connection and
//! `process_options` for a rule's `libwrap:` line. The calls go through a C shim (build.rs)
//! that holds libwrap's setjmp; libwrap keeps its state in globals, so calls are serialised.
//! Both may block (name lookups, `spawn` commands): callers run them off the event loop.

use std::ffi::{c_char, c_int, CString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

extern "C" {
    fn rsockd_wrap_hosts_access(
        fd: c_int,
        daemon: *const c_char,
        allow: *const c_char,
        deny: *const c_char,
    ) -> c_int;
    fn rsockd_wrap_process_options(fd: c_int, daemon: *const c_char, line: *const c_char) -> c_int;
}

static LOCK: Mutex<()> = Mutex::new(());

fn cstr(s: &str) -> CString {
    // Interior NULs cannot come from the configuration parser; drop them if they ever do.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Whether hosts.allow/hosts.deny (`allow`, `deny`: their paths) let the client on `fd` in
/// under the daemon name `daemon`.
pub fn hosts_access(fd: BorrowedFd<'_>, daemon: &str, allow: &str, deny: &str) -> bool {
    let (d, a, n) = (cstr(daemon), cstr(allow), cstr(deny));
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: `fd` is an open socket for the call; the strings are NUL-terminated and live
    // until the call returns (the shim copies the table paths into its own buffers); the
    // lock serialises libwrap's global state.
    unsafe { rsockd_wrap_hosts_access(fd.as_raw_fd(), d.as_ptr(), a.as_ptr(), n.as_ptr()) == 1 }
}

/// What a `libwrap:` line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    /// Its options ran (`spawn`, `severity`, ...).
    Ran,
    /// An `allow` option.
    Allowed,
    /// A `deny` option, or the line failed.
    Denied,
}

/// Runs the options of `line` for the client on `fd`.
pub fn process_options(fd: BorrowedFd<'_>, daemon: &str, line: &str) -> Options {
    let (d, l) = (cstr(daemon), cstr(line));
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: as for hosts_access; the shim copies the line (libwrap modifies it).
    let rc = unsafe { rsockd_wrap_process_options(fd.as_raw_fd(), d.as_ptr(), l.as_ptr()) };
    match rc {
        0 => Options::Ran,
        1 => Options::Allowed,
        _ => Options::Denied,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn tables_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let allow = dir.path().join("allow");
        let deny = dir.path().join("deny");
        let (_c, s) = pair();
        let (a, d) = (allow.to_str().unwrap(), deny.to_str().unwrap());
        std::fs::write(&allow, "").unwrap();
        std::fs::write(&deny, "ALL: ALL\n").unwrap();
        assert!(!hosts_access(s.as_fd(), "rsockd", a, d));
        std::fs::File::create(&allow)
            .unwrap()
            .write_all(b"rsockd: 127.0.0.1\n")
            .unwrap();
        assert!(hosts_access(s.as_fd(), "rsockd", a, d));
        assert!(!hosts_access(s.as_fd(), "other", a, d));
        // An option in the table that denies.
        std::fs::write(&allow, "rsockd: 127.0.0.1: deny\n").unwrap();
        assert!(!hosts_access(s.as_fd(), "rsockd", a, d));
        let mark = dir.path().join("spawned");
        let line = format!("spawn (echo %a > {})", mark.display());
        assert_eq!(process_options(s.as_fd(), "rsockd", &line), Options::Ran);
        assert_eq!(
            process_options(s.as_fd(), "rsockd", "deny"),
            Options::Denied
        );
        assert_eq!(
            process_options(s.as_fd(), "rsockd", "allow"),
            Options::Allowed
        );
        assert_eq!(
            process_options(s.as_fd(), "rsockd", "nonsense_option"),
            Options::Denied
        );
        let start = std::time::Instant::now();
        while !mark.exists() && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let got = std::fs::read_to_string(&mark).unwrap_or_default();
        assert_eq!(got.trim(), "127.0.0.1");
    }
}
