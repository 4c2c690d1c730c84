//! Socket options, `<side>.<level>.<option>[.<subfield>]: VALUE`, globally and in rules, with
//! Dante's names (its Linux build's set), numbered options and the `ip_tos` subfields.

use super::Parser;
use crate::lexer::Tok;
use crate::model::{OptName, Side, SockOpt};
use crate::sockopts::{self, SockLevel, ValueKind};

impl<'a> Parser<'a> {
    /// The value of a socket-option keyword (its colon read); None after an error.
    pub(super) fn sockopt(&mut self, kw: Tok<'a>) -> Option<SockOpt> {
        let mut parts = kw.text.splitn(3, '.');
        let side = match parts.next() {
            Some("internal") => Side::Internal,
            _ => Side::External,
        };
        let given = parts.next().and_then(SockLevel::from_name);
        let rest = parts.next().unwrap_or("");
        let Some(given) = given else {
            self.error(kw, "expected a socket, ip, tcp or udp socket option");
            self.sc.skip_value();
            return None;
        };
        let (opt, sub) = match rest.split_once('.') {
            Some((o, s)) => (o, Some(s)),
            None => (rest, None),
        };
        let unknown = |p: &mut Self| {
            p.error(kw, format!("unknown socket option \"{rest}\""));
            p.sc.skip_value();
            None
        };
        // A number is the kernel's option number at the level given, as Dante allows.
        if let Ok(n) = opt.parse::<i32>() {
            if sub.is_some() || n < 0 {
                return unknown(self);
            }
            let value = self.sockopt_int(kw)?;
            return Some(SockOpt {
                side,
                level: given,
                option: OptName::Number(n),
                value,
            });
        }
        let Some((level, kind)) = sockopts::lookup(given, opt) else {
            return unknown(self);
        };
        if level != given && !(level == SockLevel::Socket && given != SockLevel::Ip) {
            // Dante warns and goes on; the option is set at the level it belongs to.
            self.warn(
                kw,
                format!(
                    "to our knowledge socket option \"{opt}\" is not valid at the protocol \
                     level given ({})",
                    given.name()
                ),
            );
        }
        let value = match (kind, sub) {
            (ValueKind::Tos, Some(sub)) if matches!(sub, "dscp" | "prec" | "tos") => {
                let t = self.sc.word(&[':', '}']);
                match sockopts::tos_byte(sub, t.text) {
                    Ok(b) => u32::from(b),
                    Err(why) => {
                        self.error(if t.text.is_empty() { kw } else { t }, why);
                        self.sc.skip_value();
                        return None;
                    }
                }
            }
            (_, Some(_)) => return unknown(self),
            (ValueKind::Tos, None) => {
                let n = self.number(&format!("{}:", kw.text), 255)?;
                n as u32
            }
            _ => self.sockopt_int(kw)?,
        };
        self.end_of_value(kw);
        Some(SockOpt {
            side,
            level,
            option: OptName::Named(opt.to_string()),
            value,
        })
    }

    /// An option's integer value (0 or 1 for the on/off options).
    fn sockopt_int(&mut self, kw: Tok<'a>) -> Option<u32> {
        let n = self.number(&format!("{}:", kw.text), i32::MAX as u64);
        if n.is_none() {
            self.sc.skip_value();
        }
        n.map(|n| n as u32)
    }
}
