//! `monitor { from: .. to: .. [protocol: ..] [command: ..] alarms }` (Dante 1.4 monitors):
//! the alarm keywords and their `B in S` / `N/R in S` values, with Dante's checks.

use super::Parser;
use crate::lexer::Tok;
use crate::model::{AlarmSides, DataAlarm, DisconnectAlarm, Monitor, Protocol, RuleAddr};

/// What an alarm keyword names: its sides, and for data alarms the directions.
enum Alarm {
    Data {
        sides: AlarmSides,
        recv: bool,
        send: bool,
    },
    Disconnect(AlarmSides),
}

/// `[internal.|external.]alarm.data[.recv|.send]` or `[internal.|external.]alarm.disconnect`.
fn alarm_of(word: &str) -> Option<Alarm> {
    let (sides, rest) = if let Some(r) = word.strip_prefix("internal.") {
        (
            AlarmSides {
                internal: true,
                external: false,
            },
            r,
        )
    } else if let Some(r) = word.strip_prefix("external.") {
        (
            AlarmSides {
                internal: false,
                external: true,
            },
            r,
        )
    } else {
        (
            AlarmSides {
                internal: true,
                external: true,
            },
            word,
        )
    };
    match rest {
        "alarm.data" => Some(Alarm::Data {
            sides,
            recv: true,
            send: true,
        }),
        "alarm.data.recv" => Some(Alarm::Data {
            sides,
            recv: true,
            send: false,
        }),
        "alarm.data.send" => Some(Alarm::Data {
            sides,
            recv: false,
            send: true,
        }),
        "alarm.disconnect" => Some(Alarm::Disconnect(sides)),
        _ => None,
    }
}

impl<'a> Parser<'a> {
    /// After `monitor`: the body, pushed to the config's monitors.
    pub(super) fn monitor(&mut self, start: Tok<'a>) {
        if !self.sc.eat('{') {
            let t = self.sc.next_token();
            self.error(t, "expected '{' after 'monitor'");
            self.sc.skip_line();
            return;
        }
        let number = u32::try_from(self.cfg.monitors.len() + 1).unwrap_or(u32::MAX);
        let mut m = Monitor {
            number,
            line: start.line,
            from: RuleAddr::any(),
            to: RuleAddr::any(),
            protocol: Vec::new(),
            command: Vec::new(),
            data: Vec::new(),
            disconnect: Vec::new(),
        };
        let errors_before = self.errors.len();
        let (mut from, mut to) = (false, false);
        self.object_body(
            start,
            "monitor",
            "expected a monitor keyword (such as 'from:' or 'internal.alarm.data.recv:') or '}'",
            &mut |p, kw| p.monitor_option(&mut m, kw, &mut from, &mut to),
        );
        if !(from && to) && self.errors.len() == errors_before {
            self.error(start, "a monitor needs both 'from:' and 'to:'");
        }
        if m.protocol.contains(&Protocol::Udp) && self.errors.len() == errors_before {
            self.not_yet(
                start,
                "protocol: udp",
                "monitors watch TCP sessions (connect and bind); remove udp from this monitor",
            );
        }
        if m.data.is_empty() && m.disconnect.is_empty() {
            // Dante's words.
            self.warn(
                start,
                "monitor has no alarms configured.  Is this intended?",
            );
        }
        self.cfg.monitors.push(m);
    }

    fn monitor_option(&mut self, m: &mut Monitor, kw: Tok<'a>, from: &mut bool, to: &mut bool) {
        if matches!(kw.text, "hostid" | "hostindex") {
            self.error(
                kw,
                "hostid is not supported on this system; Dante's Linux build refuses it too",
            );
            self.sc.skip_value();
            return;
        }
        let alarm = alarm_of(kw.text);
        if alarm.is_none() && !matches!(kw.text, "from" | "to" | "protocol" | "command") {
            self.error(
                kw,
                format!(
                    "'{}' is not valid in a monitor; expected from, to, protocol, command or an \
                     alarm such as 'internal.alarm.data.recv' or 'external.alarm.disconnect'",
                    kw.text
                ),
            );
            self.sc.skip_value();
            return;
        }
        if !self.colon(kw) {
            self.sc.skip_value();
            return;
        }
        match (kw.text, alarm) {
            ("from" | "to", _) => {
                let seen = if kw.text == "from" {
                    &mut *from
                } else {
                    &mut *to
                };
                if *seen {
                    self.error(kw, format!("'{}:' given twice in one monitor", kw.text));
                }
                *seen = true;
                match self.rule_addr(kw) {
                    Some(a) if kw.text == "from" => m.from = a,
                    Some(a) => m.to = a,
                    None => self.skip_to_keyword(),
                }
            }
            ("protocol", _) => self.protocols(kw, &mut m.protocol),
            ("command", _) => self.commands(kw, &mut m.command),
            (_, Some(Alarm::Data { sides, recv, send })) => {
                let Some(bytes) = self.number(&format!("{}:", kw.text), u64::MAX) else {
                    self.skip_to_keyword();
                    return;
                };
                let Some(seconds) = self.alarm_period(kw) else {
                    return;
                };
                let a = DataAlarm {
                    sides,
                    recv,
                    send,
                    bytes,
                    seconds,
                };
                // A later line for the same alarm replaces the earlier one, as in Dante.
                m.data
                    .retain(|d| (d.sides, d.recv, d.send) != (sides, recv, send));
                m.data.push(a);
                self.end_of_value(kw);
            }
            (_, Some(Alarm::Disconnect(sides))) => {
                let Some(min) = self.positive(kw) else {
                    self.skip_to_keyword();
                    return;
                };
                if !self.sc.eat('/') {
                    let t = self.sc.next_token();
                    self.error(
                        t,
                        format!("expected '/' after the minimum count of '{}:'", kw.text),
                    );
                    self.skip_to_keyword();
                    return;
                }
                let at = self.sc.clone().number();
                let Some(sessions) = self.positive(kw) else {
                    self.skip_to_keyword();
                    return;
                };
                let Some(seconds) = self.alarm_period(kw) else {
                    return;
                };
                if sessions < min {
                    // Dante's words.
                    let side = if sides.internal && !sides.external {
                        "internal "
                    } else if sides.external && !sides.internal {
                        "external "
                    } else {
                        ""
                    };
                    self.error(
                        at,
                        format!(
                            "{side}session limit value ({sessions}) cannot be lower than \
                             disconnect limit ({min})"
                        ),
                    );
                }
                m.disconnect.retain(|d| d.sides != sides);
                m.disconnect.push(DisconnectAlarm {
                    sides,
                    min,
                    sessions,
                    seconds,
                });
                self.end_of_value(kw);
            }
            _ => self.sc.skip_value(),
        }
    }

    /// A number > 0 (Dante: `number (0) must be > 0`).
    fn positive(&mut self, kw: Tok<'_>) -> Option<u32> {
        let t = self.sc.clone().number();
        let n = self.number(&format!("{}:", kw.text), u64::from(u32::MAX))?;
        if n == 0 {
            self.error(t, "number (0) must be > 0");
            return None;
        }
        u32::try_from(n).ok()
    }

    /// `in SECONDS` after an alarm's value.
    fn alarm_period(&mut self, kw: Tok<'_>) -> Option<u32> {
        let w = self.sc.clone().ident();
        if w.text != "in" {
            let t = self.sc.next_token();
            self.error(
                t,
                format!("expected 'in SECONDS' after the value of '{}:'", kw.text),
            );
            self.skip_to_keyword();
            return None;
        }
        self.sc.ident();
        let s = self.positive(kw);
        if s.is_none() {
            self.skip_to_keyword();
        }
        s
    }
}
