//! Whole-config checks that need the complete file: Dante's startup warnings, and the
//! "can this config start a server" check that `-V` and start run.

use crate::diag::{ConfigError, Diagnostic};
use crate::model::{Config, Rotation};

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
    if cfg.external.len() > 1 && cfg.external_rotation == Rotation::None {
        w.push(Diagnostic::whole_file(
            file,
            "more than one external address given, but with 'external.rotation: none' only \
             the first one is used",
        ));
    }
    w
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
    if cfg.external.is_empty() {
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
