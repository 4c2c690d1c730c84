//! The processes of rsockd, one module per role. Every role is started by exec'ing our own
//! binary with a hidden `--role` argument (DESIGN.md §1); `main` dispatches here.

pub mod mother;
pub mod relay;
mod session_log;

/// The descriptor number a child finds its control channel on.
pub const CTL_FD: i32 = 3;
/// The first descriptor number of inherited listening sockets (mothers 2..N).
pub const FIRST_LISTEN_FD: i32 = 4;
