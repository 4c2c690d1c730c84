//! `rsockd --drain` / `--resume`: signals the server named by a pidfile, so deploy scripts
//! and operators need not know which signal means what.

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
