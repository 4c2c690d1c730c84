//! Process-level calls: subreaper, reaping, resource limits, parent checks, signals.

use std::io;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals `kill` and `die_with_parent` send, so that callers need not depend on nix.
pub use nix::sys::signal::Signal;

/// Sends signal number `signo` to `pid`: real-time signals too, which [`Signal`] cannot name.
pub fn kill_raw(pid: i32, signo: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid, signo) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes this process the reaper of its orphaned descendants (relays of a dead mother).
pub fn set_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// How a reaped child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(String),
}

/// Reaps every child that has ended, without blocking.
pub fn reap() -> Vec<(i32, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                out.push((pid.as_raw(), Exit::Signal(sig.as_str().to_string())))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    out
}

/// Raises the soft open-files limit to the hard one (sessions need many descriptors).
pub fn raise_nofile() -> u64 {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = lim.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
        return max;
    }
    lim.current.unwrap_or(1024)
}

/// The parent's pid.
pub fn parent() -> i32 {
    rustix::process::getppid()
        .map(|p| p.as_raw_pid())
        .unwrap_or(0)
}

/// Sends `sig` to `pid`; errors (such as ESRCH) are returned to the caller.
pub fn kill(pid: i32, sig: Signal) -> io::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(io::Error::from)
}

/// Has the kernel send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG):
/// a worker process then ends with the process that started it.
pub fn die_with_parent(sig: Signal) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(sig).map_err(io::Error::from)
}

/// Clock ticks per second, the unit of the times in /proc/PID/stat (sysconf _SC_CLK_TCK);
/// None if the system does not say.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf(3) takes no pointers and has no memory effects; _SC_CLK_TCK is a valid
    // name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0)
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Whether process `pid` exists (zombies included), as `kill(pid, 0)` tells: a process we may
/// not signal exists too.
pub fn exists(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}
