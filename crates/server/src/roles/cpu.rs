//! `cpu.schedule.<role>` and `cpu.mask.<role>`: each process sets its own once it has its
//! configuration (a mother at start, a relay at its first configuration). What the kernel
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
    let c = cfg.cpu.of(role);
    if let Some((p, prio)) = c.schedule {
        if let Err(e) = sched::set_scheduler(policy(p), prio) {
            log::error(&format!(
                "cpu.schedule.{}: {}/{prio}: sched_setscheduler(2) failed: {e}",
                role.name(),
                p.name()
            ));
        }
    }
    if let Some(cpus) = &c.mask {
        if let Err(e) = sched::set_affinity(cpus) {
            let list: Vec<String> = cpus.iter().map(u32::to_string).collect();
            log::error(&format!(
                "cpu.mask.{}: {}: sched_setaffinity(2) failed: {e}",
                role.name(),
                list.join(" ")
            ));
        }
    }
}
