//! Messages between rsockd processes.
//!
//! Every message travels as one `SOCK_SEQPACKET` datagram, so framing is free: a message is a
//! version byte, a kind byte and its fields in a fixed little-endian layout. Descriptors travel
//! beside it (SCM_RIGHTS) and each message says how many it expects, so a receiver can refuse a
//! message whose descriptors went missing. The layout is ours alone: parent and child are the
//! same binary, but an upgrade may briefly mix versions, hence the version byte.
#![forbid(unsafe_code)]

pub mod auth;
mod codec;
mod message;

pub use auth::{AuthAnswer, AuthQuery, AuthSource, HelperControl};
pub use codec::{DecodeError, Message};
pub use message::{
    batch_sessions, Command, Control, Handoff, LogFlags, Report, RuleRef, MAX_BATCH_FDS,
    MAX_CLOSED, MAX_MESSAGE, VERSION,
};
