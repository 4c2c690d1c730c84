//! Helpers shared by the test suites of several crates: what used to be copied from one test
//! file to the next.
//!
//! Real system accounts for the authentication tests (rsockd's black-box tests and the PAM
//! binding's tests in rsockd-sys): a [`TestUser`] with a known password, a [`TestGroup`] and a
//! PAM [`Service`] file, each made for one test (its name carries the test process id and a
//! tag) and removed on drop, failed test or not. Making them needs root; [`require_root!`]
//! skips a test without it.

pub mod netns;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

/// True when the test process runs with effective uid 0 (the `Uid:` line of
/// `/proc/PID/status`).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string(format!("/proc/{}/status", std::process::id()));
    status.ok().is_some_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Returns from the test (which then passes) with a note on stderr unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root (useradd, groupadd, /etc/pam.d, user.privileged)");
            return;
        }
    };
}

/// useradd, groupadd, chpasswd and userdel lock /etc/passwd, /etc/group and /etc/shadow: one at
/// a time within a test binary, and a few tries in case another process holds the lock.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// Runs an account tool (`useradd`, `chpasswd`, ...) with `stdin` as its input; `Err` has the
/// command, its exit status and its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let _lock = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = String::new();
    for _ in 0..20 {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("{program} stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // Exit codes 1 (useradd, groupadd, userdel: cannot update the file; chpasswd: any
        // failure) may be a lock held by another process; anything else is final.
        if out.status.code() != Some(1) && out.status.code() != Some(10) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// A system user `rsk<tag><pid>` with a known password, deleted on drop.
pub struct TestUser {
    pub name: String,
    pub password: String,
}

impl TestUser {
    pub fn new(tag: &str) -> TestUser {
        Self::with_groups(tag, None, None)
    }

    /// `primary`: the user's primary group (`-g`); `extra`: a supplementary group (`-G`).
    pub fn with_groups(
        tag: &str,
        primary: Option<&TestGroup>,
        extra: Option<&TestGroup>,
    ) -> TestUser {
        let name = format!("rsk{tag}{}", std::process::id());
        let mut args = vec!["-M", "-N", "-s", "/usr/sbin/nologin"];
        if let Some(g) = primary {
            args.extend(["-g", g.name.as_str()]);
        }
        if let Some(g) = extra {
            args.extend(["-G", g.name.as_str()]);
        }
        args.push(&name);
        run("useradd", &args, None).expect("useradd should create the test user");
        // From here on the guard removes the user, whatever happens next.
        let user = TestUser {
            password: format!("Pw-{tag}-{}.x", std::process::id()),
            name,
        };
        let line = format!("{}:{}\n", user.name, user.password);
        run("chpasswd", &[], Some(&line)).expect("chpasswd should set the password");
        user
    }

    pub fn set_password(&mut self, password: &str) {
        let line = format!("{}:{password}\n", self.name);
        run("chpasswd", &[], Some(&line)).expect("chpasswd should set the password");
        self.password = password.to_string();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Err(e) = run("userdel", &[&self.name], None) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A system group `rskg<tag><pid>`, deleted on drop (declare it before its users: they are
/// dropped first).
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn new(tag: &str) -> TestGroup {
        let name = format!("rskg{tag}{}", std::process::id());
        run("groupadd", &[&name], None).expect("groupadd should create the test group");
        TestGroup { name }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if let Err(e) = run("groupdel", &[&self.name], None) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A PAM service file `/etc/pam.d/rsockd-t-<pid>-<tag>`, removed on drop.
pub struct Service {
    pub name: String,
    pub path: PathBuf,
}

impl Service {
    pub fn new(tag: &str, contents: &str) -> Service {
        let name = format!("rsockd-t-{}-{tag}", std::process::id());
        let path = PathBuf::from("/etc/pam.d").join(&name);
        std::fs::write(&path, contents).expect("the PAM service file should be writable as root");
        Service { name, path }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("cleanup: {}: {e}", self.path.display());
        }
    }
}

/// A PAM service checking the system password database (pam_unix for auth and account).
pub const PAM_UNIX: &str = "auth required pam_unix.so\naccount required pam_unix.so\n";
