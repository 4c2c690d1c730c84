//! Where each limited rule's counters live in the scoreboard: computed from the configuration
//! alone, so every process that has the same text finds the same words without being told.
//!
//! ```text
//! word 0        MAGIC
//! word 1        generation
//! then, for each client rule and then each socks rule that limits sessions, in file order:
//!   session.max       `max` slot words (0 = free, else the pid holding the session)
//!   session.throttle  1 word (see throttle.rs)
//!   session.state.*   `entries` key entries of [key, key, state, throttle?, slots...]
//!   bandwidth         1 word (see pace.rs)
//! then, for each monitor { }, in file order (see monitor.rs):
//!   MONITOR_ROWS rows of [pid, sessions]; 4 byte counters, 4 last-i/o times, 4 disconnect
//!   counters
//! then, for each route { }, in file order: 1 health word (see routes.rs)
//! ```

use rsockd_config::{Config, Rule, RuleKind, SessionLimits, StateKey};

/// "rsockdSB", then the layout version in the last byte: bump it on any change here.
pub const MAGIC: u64 = 0x7273_6f63_6b64_5303;
const HEADER: usize = 2;
/// A `session.max` above this is refused at start: each session takes one word.
pub const MAX_SESSIONS: u32 = 1_000_000;
/// A `session.state.max` above this is refused at start.
pub const MAX_STATE_SESSIONS: u32 = 4096;
/// Key entries per `session.state.*` rule: at most this many distinct keys at once...
const KEY_ENTRIES: usize = 4096;
/// ...and fewer when each entry is large, so one rule's table stays within this many words.
const KEY_TABLE_WORDS: usize = 1 << 22;
/// Words of a key entry before its throttle word and slots: the key (two words) and its state.
pub const KEY_HEAD: usize = 3;

/// A run of words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub len: usize,
}

/// The per-key table of a rule with `session.state.key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub start: usize,
    pub entries: usize,
    /// Words per entry: [`KEY_HEAD`], one throttle word if any, then `slots` slot words.
    pub stride: usize,
    pub has_throttle: bool,
    pub slots: usize,
}

impl Keys {
    pub fn entry(&self, i: usize) -> usize {
        self.start + i * self.stride
    }
    pub fn throttle_word(&self, i: usize) -> Option<usize> {
        self.has_throttle.then(|| self.entry(i) + KEY_HEAD)
    }
    pub fn slot_run(&self, i: usize) -> Run {
        Run {
            start: self.entry(i) + KEY_HEAD + usize::from(self.has_throttle),
            len: self.slots,
        }
    }
}

/// One limited rule's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub kind: RuleKind,
    pub number: u32,
    pub limits: SessionLimits,
    pub slots: Option<Run>,
    pub throttle: Option<usize>,
    pub keys: Option<Keys>,
    /// `bandwidth:` and the word of its pace (see pace.rs).
    pub bandwidth: Option<u64>,
    pub pace: Option<usize>,
}

/// Processes that can hold sessions of one monitor at once, each counting its own in a row.
pub const MONITOR_ROWS: usize = 512;
/// Words of counters after a monitor's rows (their order: monitor.rs).
pub const MONITOR_COUNTERS: usize = 12;

/// One monitor's place: its rows, then its counters (see monitor.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorWords {
    pub number: u32,
    pub rows: Run,
    pub counters: Run,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    pub tables: Vec<Table>,
    pub monitors: Vec<MonitorWords>,
    /// Each route's number and health word.
    pub routes: Vec<(u32, usize)>,
    pub words: usize,
}

impl Layout {
    /// The layout for `cfg`; an error names the rule whose limit is beyond what we count.
    pub fn of(file: &str, cfg: &Config) -> Result<Layout, String> {
        let mut l = Layout {
            tables: Vec::new(),
            monitors: Vec::new(),
            routes: Vec::new(),
            words: HEADER,
        };
        for r in cfg.client_rules.iter().chain(&cfg.socks_rules) {
            if r.session.limits() || r.bandwidth.is_some() {
                l.add(file, r)?;
            }
        }
        for m in &cfg.monitors {
            let rows = l.take(2 * MONITOR_ROWS);
            let counters = l.take(MONITOR_COUNTERS);
            l.monitors.push(MonitorWords {
                number: m.number,
                rows,
                counters,
            });
        }
        for r in &cfg.routes {
            let w = l.take(1).start;
            l.routes.push((r.number, w));
        }
        Ok(l)
    }

    /// True when no rule limits sessions, no monitor watches any and there is no route: no
    /// scoreboard is needed.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.monitors.is_empty() && self.routes.is_empty()
    }

    /// The health word of route `number`.
    pub fn route(&self, number: u32) -> Option<usize> {
        self.routes
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, w)| *w)
    }

    /// The words of monitor `number`.
    pub fn monitor(&self, number: u32) -> Option<&MonitorWords> {
        self.monitors.iter().find(|m| m.number == number)
    }

    fn add(&mut self, file: &str, r: &Rule) -> Result<(), String> {
        let s = r.session;
        let what = || format!("{file}:{}: {} rule #{}", r.line, r.kind.name(), r.number);
        let slots = match s.max {
            Some(n) if n > MAX_SESSIONS => {
                return Err(format!(
                    "{}: session.max: {n} is more than the {MAX_SESSIONS} sessions rsockd counts \
                     per rule",
                    what()
                ))
            }
            Some(n) => Some(self.take(n as usize)),
            None => None,
        };
        let throttle = s.throttle.map(|_| self.take(1).start);
        let keyed = s.state_max.is_some() || s.state_throttle.is_some();
        let keys = match (s.state_key, keyed) {
            (None, true) => {
                return Err(format!(
                    "{}: session.state.max and session.state.throttle need session.state.key",
                    what()
                ))
            }
            (Some(StateKey::User), true) if r.kind == RuleKind::Client => {
                return Err(format!(
                    "{}: session.state.key: user needs a socks rule; the user is not known yet \
                     when client rules are checked",
                    what()
                ))
            }
            (Some(_), true) => {
                let per = s.state_max.unwrap_or(0);
                if per > MAX_STATE_SESSIONS {
                    return Err(format!(
                        "{}: session.state.max: {per} is more than the {MAX_STATE_SESSIONS} \
                         sessions rsockd counts per key",
                        what()
                    ));
                }
                let has_throttle = s.state_throttle.is_some();
                let stride = KEY_HEAD + usize::from(has_throttle) + per as usize;
                let entries = (KEY_TABLE_WORDS / stride).clamp(256, KEY_ENTRIES);
                let run = self.take(entries * stride);
                Some(Keys {
                    start: run.start,
                    entries,
                    stride,
                    has_throttle,
                    slots: per as usize,
                })
            }
            _ => None,
        };
        let pace = r.bandwidth.map(|_| self.take(1).start);
        self.tables.push(Table {
            kind: r.kind,
            number: r.number,
            limits: s,
            slots,
            throttle,
            keys,
            bandwidth: r.bandwidth,
            pace,
        });
        Ok(())
    }

    fn take(&mut self, len: usize) -> Run {
        let run = Run {
            start: self.words,
            len,
        };
        self.words += len;
        run
    }

    /// The table of rule `number` of `kind`, if it limits sessions.
    pub fn table(&self, kind: RuleKind, number: u32) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.kind == kind && t.number == number)
    }

    /// Every run of slot words, for freeing what a dead process held.
    pub fn slot_runs(&self) -> impl Iterator<Item = Run> + '_ {
        self.tables.iter().flat_map(|t| {
            let keyed = t
                .keys
                .into_iter()
                .flat_map(|k| (0..k.entries).map(move |i| k.slot_run(i)));
            t.slots.into_iter().chain(keyed).filter(|r| r.len > 0)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout(rules: &str) -> Result<Layout, String> {
        let text = format!("internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\n{rules}");
        // Per-key limits are laid out already though the parser still refuses them.
        let opts = rsockd_config::ParseOptions {
            allow_unsupported: true,
            ..Default::default()
        };
        let cfg = rsockd_config::parse_str_with("t.conf", &text, &opts)
            .unwrap()
            .config;
        Layout::of("t.conf", &cfg)
    }

    #[test]
    fn only_limited_rules_take_words_in_file_order() {
        let l = layout(
            "client pass { from: 0/0 to: 0/0 session.max: 2 }\n\
             socks pass { from: 0/0 to: 0/0 }\n\
             socks pass { from: 0/0 to: 0/0 session.max: 3 session.throttle: 5/1 }\n",
        )
        .unwrap();
        assert_eq!(l.tables.len(), 2);
        let c = l.table(RuleKind::Client, 1).unwrap();
        assert_eq!(c.slots, Some(Run { start: 2, len: 2 }));
        let s = l.table(RuleKind::Socks, 2).unwrap();
        assert_eq!(s.slots, Some(Run { start: 4, len: 3 }));
        assert_eq!(s.throttle, Some(7));
        assert_eq!(l.words, 8);
        assert!(l.table(RuleKind::Socks, 1).is_none());
        assert_eq!(l.slot_runs().count(), 2);
    }

    #[test]
    fn no_limits_no_scoreboard() {
        assert!(
            layout("client pass { from: 0/0 to: 0/0 session.inheritable: no }\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn key_tables_and_the_bounds() {
        let l = layout(
            "client pass { from: 0/0 to: 0/0 session.state.key: from session.state.max: 2 \
             session.state.throttle: 1/1 }\n",
        )
        .unwrap();
        let k = l.tables[0].keys.unwrap();
        assert_eq!(k.stride, KEY_HEAD + 1 + 2);
        assert_eq!(k.entries, KEY_ENTRIES);
        assert_eq!(k.slot_run(1).start, 2 + k.stride + KEY_HEAD + 1);
        let e = layout("client pass { from: 0/0 to: 0/0 session.max: 1000001 }\n").unwrap_err();
        assert!(
            e.starts_with("t.conf:3: client rule #1: session.max: 1000001"),
            "{e}"
        );
        let e = layout("client pass { from: 0/0 to: 0/0 session.state.max: 2 }\n").unwrap_err();
        assert!(e.contains("need session.state.key"), "{e}");
        let e = layout(
            "client pass { from: 0/0 to: 0/0 session.state.key: user session.state.max: 2 }\n",
        )
        .unwrap_err();
        assert!(e.contains("needs a socks rule"), "{e}");
    }
}
