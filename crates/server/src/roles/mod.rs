//! The processes of rsockd, one module per role. Every role is started by exec'ing our own
//! binary with a hidden `--role` argument (DESIGN.md §1); `main` dispatches here.

pub mod auth_helper;
pub mod child;
pub mod cpu;
pub mod mother;
pub mod relay;
pub mod signals;
pub mod supervisor;
pub mod upgrade;

pub use child::{Role, CTL_FD};

/// Runs a child process's role (`main`, for the hidden `--role`); `ctl` is its control
/// channel. Returns the exit code.
pub fn run_child(role: Role, flags: crate::settings::Flags, ctl: std::os::fd::OwnedFd) -> i32 {
    use crate::scoreboard::counters::{attach_inherited, ProcRole};
    attach_inherited(match role {
        Role::Mother { .. } => ProcRole::Mother,
        Role::Relay { .. } => ProcRole::Relay,
        Role::AuthHelper { .. } => ProcRole::AuthHelper,
    });
    match role {
        Role::Mother { index, of, relays } => mother::run_child(index, of, ctl, flags, relays),
        Role::Relay { id } => relay::run(id, ctl, flags),
        Role::AuthHelper { user } => auth_helper::run(ctl, user),
    }
}
