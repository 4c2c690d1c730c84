//! Relaying established sessions (runs in relay processes).

pub mod buffers;
pub mod tcp;
pub mod udp;
