//! Relaying established sessions (runs in relay processes).

pub mod buffers;
pub mod pipes;
pub mod tcp;
pub mod udp;
