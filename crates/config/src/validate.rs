//! Whole-config checks that need the complete file: Dante's startup warnings, and the
//! "can this config start a server" check that `-V` and start run.

use crate::diag::{ConfigError, Diagnostic};
use crate::model::{Config, Verdict};

/// Warnings Dante's checkconfig() gives for a config that parsed.
pub(crate) fn warnings(file: &str, cfg: &Config) -> Vec<Diagnostic> {
    let mut w = Vec::new();
    if cfg.socksmethod.is_empty() {
        let passes = cfg
            .socks_rules
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let mut msg = "no socks authentication methods enabled (no 'socksmethod:' line); \
                       all socks requests will be blocked after negotiation"
            .to_string();
        if passes > 0 {
            msg.push_str(&format!(
                ", so no socks pass rule ({passes} in the file) can ever match"
            ));
        }
        w.push(Diagnostic::whole_file(file, msg));
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
