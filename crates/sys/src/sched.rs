//! Scheduling policy and CPU affinity (sched(7)) of every thread of this process, for
//! `cpu.schedule.*` and `cpu.mask.*`. Threads created later inherit them from their creator.

use std::io;

/// The policies of sched(7), as `cpu.schedule.*` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Other,
    Fifo,
    Rr,
    Batch,
    Idle,
}

impl Policy {
    fn raw(self) -> libc::c_int {
        match self {
            Policy::Other => libc::SCHED_OTHER,
            Policy::Fifo => libc::SCHED_FIFO,
            Policy::Rr => libc::SCHED_RR,
            Policy::Batch => libc::SCHED_BATCH,
            Policy::Idle => libc::SCHED_IDLE,
        }
    }
}

/// The ids of this process's threads.
fn threads_of(pid: &str) -> io::Result<Vec<libc::pid_t>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            v.push(tid);
        }
    }
    Ok(v)
}

/// Sets `policy` with `priority` (1-99 for fifo and rr, 0 for the others) on every thread.
pub fn set_scheduler(policy: Policy, priority: u32) -> io::Result<()> {
    scheduler_of("self", policy, priority)
}

/// [`set_scheduler`] for every thread of another process (one we started).
pub fn set_scheduler_of(pid: u32, policy: Policy, priority: u32) -> io::Result<()> {
    scheduler_of(&pid.to_string(), policy, priority)
}

/// [`set_affinity`] for every thread of another process (one we started).
pub fn set_affinity_of(pid: u32, cpus: &[u32]) -> io::Result<()> {
    affinity_of(&pid.to_string(), cpus)
}

fn scheduler_of(proc_dir: &str, policy: Policy, priority: u32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::try_from(priority)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    };
    for tid in threads_of(proc_dir)? {
        // SAFETY: `param` is a valid, initialised sched_param that outlives the call; the
        // kernel only reads it. A thread that exited in between yields ESRCH, reported.
        let r = unsafe { libc::sched_setscheduler(tid, policy.raw(), &param) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets every thread run only on `cpus`.
pub fn set_affinity(cpus: &[u32]) -> io::Result<()> {
    affinity_of("self", cpus)
}

fn affinity_of(proc_dir: &str, cpus: &[u32]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set (CPU_ZERO).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        let c = usize::try_from(c).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: `c` is below CPU_SETSIZE (checked above), so the bit is inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    for tid in threads_of(proc_dir)? {
        // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
        let r =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_one_cpu_read_back_from_proc() {
        if set_scheduler(Policy::Batch, 0).is_err() {
            return; // a sandbox without the right to change policy
        }
        let sched = std::fs::read_to_string("/proc/self/sched").unwrap_or_default();
        assert!(
            sched
                .lines()
                .any(|l| l.starts_with("policy") && l.trim_end().ends_with(" 3")),
            "{sched}"
        );
        set_scheduler(Policy::Other, 0).unwrap();
        let all: Vec<u32> = (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|c| c as u32)
            .collect();
        set_affinity(&[0]).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        set_affinity(&all).unwrap();
        assert!(status.contains("Cpus_allowed_list:\t0\n"), "{status}");
    }
}
