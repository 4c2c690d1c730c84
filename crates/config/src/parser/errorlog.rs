//! `internal.log.<level>.error: SYMBOL...` and `external.log.<level>.error: ...`, globally and
//! in rules: Dante's syslog level names, then errno names, `EAI_*` names and the aliases
//! `no-route`, `system-any`, `dns-any`.

use super::Parser;
use crate::errsyms;
use crate::lexer::Tok;
use crate::model::{ErrorLog, LogWhat, Side};

impl<'a> Parser<'a> {
    /// The value of an error-log keyword (its colon read); None after an error.
    pub(super) fn error_log(&mut self, kw: Tok<'a>) -> Option<ErrorLog> {
        let (side, rest) = match kw.text.split_once(".log.") {
            Some(("internal", r)) => (Side::Internal, r),
            Some(("external", r)) => (Side::External, r),
            _ => {
                self.error(kw, "expected 'internal.log.' or 'external.log.'");
                self.sc.skip_value();
                return None;
            }
        };
        let (level, what) = rest.split_once('.').unwrap_or((rest, ""));
        if !ErrorLog::LEVELS.contains(&level) {
            // Dante's words; `error` is not a syslog level name (`err` is).
            self.error(
                kw,
                format!(
                    "unknown loglevel: \"{level}\" (one of {})",
                    ErrorLog::LEVELS.join(", ")
                ),
            );
            self.sc.skip_value();
            return None;
        }
        let what = match what {
            "error" => LogWhat::Error,
            "tcp.enabled" => LogWhat::TcpEnabled,
            "tcp.disabled" => LogWhat::TcpDisabled,
            _ => {
                self.error(
                    kw,
                    format!(
                        "expected '{}.log.{level}.error', '.tcp.enabled' or '.tcp.disabled'",
                        side.name()
                    ),
                );
                self.sc.skip_value();
                return None;
            }
        };
        let mut symbols = Vec::new();
        let mut bad = false;
        for t in self.list_items(kw) {
            let known = if what == LogWhat::Error {
                errsyms::expand(t.text).is_some()
            } else {
                ErrorLog::TCP_OPTIONS.contains(&t.text)
            };
            if known {
                symbols.push(t.text.to_string());
            } else if what == LogWhat::Error {
                bad = true;
                self.error(
                    t,
                    format!(
                        "unknown error symbol \"{}\": expected an errno name (ECONNREFUSED, ...), \
                         an EAI_* name, no-route, system-any or dns-any",
                        t.text
                    ),
                );
            } else {
                bad = true;
                self.error(
                    t,
                    format!(
                        "unknown TCP option \"{}\": expected {}",
                        t.text,
                        ErrorLog::TCP_OPTIONS.join(", ")
                    ),
                );
            }
        }
        (!bad && !symbols.is_empty()).then(|| ErrorLog {
            side,
            level: level.to_string(),
            symbols,
            what,
        })
    }
}
