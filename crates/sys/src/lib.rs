//! System-call glue for rsockd.
//!
//! This is the only crate of the workspace that may contain `unsafe`; every block carries a
//! `SAFETY:` comment. Everything here is a thin, synchronous wrapper: policy stays in the
//! server crate.

pub mod accept;
pub mod asyncfd;
pub mod daemon;
pub mod dns;
pub mod epoll;
pub mod fdio;
pub mod fdpass;
#[cfg(feature = "libwrap")]
pub mod libwrap;
pub mod localtime;
#[cfg(feature = "pam")]
pub mod pam;
pub mod passwd;
pub mod privs;
pub mod process;
pub mod proctitle;
pub mod sched;
pub mod shm;
pub mod sockopt;
pub mod spawn;
pub mod syslog;
pub mod udp;
