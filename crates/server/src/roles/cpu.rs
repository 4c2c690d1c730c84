//! `cpu.schedule.<role>` and `cpu.mask.<role>`: each process sets its own once it has its
//! configuration (a mother at start, a relay at its first configuration); the auth helper,
//! which does not read the configuration, gets its own from the process that starts it. What the kernel
//! refuses is logged, not fatal, as in Dante.

use rsockd_config::{Config, CpuRole, SchedPolicy};
use rsockd_sys::sched::{self, Policy};

use crate::log;

fn policy(p: SchedPolicy) -> Policy {
    match p {
        SchedPolicy::Other => Policy::Other,
        SchedPolicy::Fifo => Policy::Fifo,
        SchedPolicy::Rr => Policy::Rr,
        SchedPolicy::Batch => Policy::Batch,
        SchedPolicy::Idle => Policy::Idle,
    }
}

/// Applies `role`'s `cpu.*` of `cfg` to this process.
pub fn apply(role: CpuRole, cfg: &Config) {
    apply_to(None, role, cfg);
}

/// Applies `role`'s `cpu.*` of `cfg` to process `pid` (ours, started by us), or this one.
pub fn apply_to(pid: Option<u32>, role: CpuRole, cfg: &Config) {
    let c = cfg.cpu.of(role);
    if let Some((p, prio)) = c.schedule {
        let r = match pid {
            Some(pid) => sched::set_scheduler_of(pid, policy(p), prio),
            None => sched::set_scheduler(policy(p), prio),
        };
        if let Err(e) = r {
            log::error(&format!(
                "cpu.schedule.{}: {}/{prio}: sched_setscheduler(2) failed: {e}",
                role.name(),
                p.name()
            ));
        }
    }
    if let Some(cpus) = &c.mask {
        let r = match pid {
            Some(pid) => sched::set_affinity_of(pid, cpus),
            None => sched::set_affinity(cpus),
        };
        if let Err(e) = r {
            let list: Vec<String> = cpus.iter().map(u32::to_string).collect();
            log::error(&format!(
                "cpu.mask.{}: {}: sched_setaffinity(2) failed: {e}",
                role.name(),
                list.join(" ")
            ));
        }
    }
}
