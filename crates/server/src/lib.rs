//! rsockd's server: the roles (mother, relay), SOCKS negotiation, relaying, networking and
//! Dante-format logging. DESIGN.md §1–2 describe how the pieces fit.
#![forbid(unsafe_code)]

pub mod auth;
pub mod channel;
pub mod log;
pub mod metrics;
pub mod negotiate;
pub mod net;
pub mod notify;
pub mod relay;
pub mod roles;
pub mod scoreboard;
pub mod settings;
