//! `rsockd --drain` / `--resume` / `--upgrade`: signals the server named by a pidfile, so
//! deploy scripts and operators need not know which signal means what; `--upgrade` waits for
//! the outcome, so they need no `sleep` either.

use rsockd_server::roles::signals::{drain_signal, resume_signal};

use crate::cli::Order;

/// Sends the order to the pid in `pidfile`. Returns the exit code; says why on failure.
pub fn run(order: Order, pidfile: &str) -> i32 {
    let text = match std::fs::read_to_string(pidfile) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rsockd: cannot read pidfile {pidfile}: {e}");
            return 1;
        }
    };
    let Some(pid) = text.trim().parse::<i32>().ok().filter(|p| *p > 1) else {
        eprintln!("rsockd: pidfile {pidfile} holds no pid (is the server running?)");
        return 1;
    };
    // A stale pidfile may name another program now: real-time signals would kill it.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_ours = cmdline
        .split(|b| *b == 0)
        .next()
        .and_then(|argv0| std::str::from_utf8(argv0).ok())
        .is_some_and(|argv0| argv0.starts_with("rsockd"));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !is_ours && !comm.trim().starts_with("rsockd") {
        eprintln!("rsockd: pid {pid} from {pidfile} is not an rsockd server");
        return 1;
    }
    let (sig, what) = match order {
        Order::Drain => (drain_signal(), "drain"),
        Order::Resume => (resume_signal(), "up"),
        Order::Upgrade => return upgrade(pid, pidfile),
    };
    match rsockd_sys::process::kill_raw(pid, sig) {
        Ok(()) => {
            println!("rsockd: pid {pid} told to answer \"{what}\" to agent checks");
            0
        }
        Err(e) => {
            eprintln!("rsockd: cannot signal pid {pid}: {e}");
            1
        }
    }
}

/// SIGUSR2, then the outcome the server writes next to its pidfile.
fn upgrade(pid: i32, pidfile: &str) -> i32 {
    let status = rsockd_server::roles::upgrade::status_path(std::path::Path::new(pidfile));
    let _ = std::fs::remove_file(&status);
    if let Err(e) =
        rsockd_sys::process::kill_raw(pid, rsockd_server::roles::signals::upgrade_signal())
    {
        eprintln!("rsockd: cannot signal pid {pid}: {e}");
        return 1;
    }
    // The new binary has 10 s to be ready; starting it and the hand-over take a little more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let text = text.trim();
            if let Some(new) = text.strip_prefix("ok ") {
                println!("rsockd: upgraded: pid {new} serves now (pid {pid} drains and exits)");
                return 0;
            }
            if let Some(why) = text.strip_prefix("failed: ") {
                eprintln!("rsockd: upgrade failed, pid {pid} goes on serving: {why}");
                return 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("rsockd: no outcome from pid {pid} within 30 s (see its log)");
    1
}
