//! Whole-config checks that need the complete file: Dante's startup warnings, and the
//! "can this config start a server" check that `-V` and start run.

use crate::diag::{ConfigError, Diagnostic};
use std::net::IpAddr;

use crate::model::{Config, HostSpec, Rotation};

/// Warnings Dante's checkconfig() gives for a config that parsed.
pub(crate) fn warnings(file: &str, cfg: &Config) -> Vec<Diagnostic> {
    let mut w = Vec::new();
    if cfg.socksmethod.is_empty() {
        w.push(Diagnostic::whole_file(
            file,
            "no socks authentication methods enabled (no 'socksmethod:' line); all socks \
             requests will be blocked after negotiation",
        ));
    }
    if cfg.external.len() > 1 && cfg.external_rotation == Rotation::None && !one_per_family(cfg) {
        w.push(Diagnostic::whole_file(
            file,
            "more than one external address given, but with 'external.rotation: none' only \
             the first one of each address family is used",
        ));
    }
    w
}

/// Whether the external addresses are literal IPs, at most one per family: then rotation
/// `none` uses every one of them (the first of the target's family), and there is nothing to
/// warn about (the built-in default's `0.0.0.0` and `::`).
fn one_per_family(cfg: &Config) -> bool {
    let (mut v4, mut v6) = (0, 0);
    for e in &cfg.external {
        match e.host {
            HostSpec::Ip(IpAddr::V4(_)) => v4 += 1,
            HostSpec::Ip(IpAddr::V6(_)) => v6 += 1,
            HostSpec::Name(_) => return false,
        }
    }
    v4 <= 1 && v6 <= 1
}

/// Checks what a server needs to start (Dante's checkconfig errors): at least one internal
/// and one external address. The server calls it for `-V` and at start; `parse_str` does not,
/// so partial configs (tests, examples) still parse.
pub fn check_startable(cfg: &Config) -> Result<(), ConfigError> {
    let mut d = Vec::new();
    if cfg.internal.is_empty() {
        d.push(Diagnostic::whole_file(
            "",
            "no internal address given for server to listen for clients on",
        ));
    }
    if cfg.external.is_empty() && cfg.external_prefixes.is_empty() {
        d.push(Diagnostic::whole_file(
            "",
            "no external address given for server to use",
        ));
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { diagnostics: d })
    }
}
