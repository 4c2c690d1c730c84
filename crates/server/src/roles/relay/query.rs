//! What a relay's rule checks (bindreply, udpreply) need from a hand-off: the session's
//! method and SOCKS version as the rules name them.

use rsockd_config::ProxyProtocol;
use rsockd_ipc::Handoff;

/// The configured method a negotiated wire method stands for, for rule checks in the relay.
pub(super) fn method_of(code: u8) -> rsockd_config::Method {
    rsockd_config::Method::from_code(code).unwrap_or(rsockd_config::Method::None)
}

pub(super) fn version_of(h: &Handoff) -> ProxyProtocol {
    if h.version == 4 {
        ProxyProtocol::SocksV4
    } else {
        ProxyProtocol::SocksV5
    }
}
