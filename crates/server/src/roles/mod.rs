//! The processes of rsockd, one module per role. Every role is started by exec'ing our own
//! binary with a hidden `--role` argument (DESIGN.md §1); `main` dispatches here.

pub mod mother;
pub mod relay;
mod session_log;

/// The descriptor number a child finds its control channel on.
pub const CTL_FD: i32 = 3;

/// Our parent is still an rsockd process that started us (a mother or the supervisor), not
/// init or a subreaper that adopted us after our parent died.
pub(crate) fn parent_is_rsockd() -> bool {
    let ppid = rsockd_sys::process::parent();
    if ppid <= 1 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{ppid}/cmdline"))
        .map(|c| c.starts_with("rsockd: mother") || c.starts_with("rsockd: supervisor"))
        .unwrap_or(false)
}
