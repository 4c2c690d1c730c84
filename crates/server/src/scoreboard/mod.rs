//! The scoreboard (DESIGN §5): session limits that hold for the whole server, every mother
//! and every relay, whatever dies; monitors' counters; routes' health. One shared memory region per configuration generation,
//! created by the lead process and handed to every child beside the configuration; its
//! layout follows from the configuration text (`layout.rs`), so it needs no directory.
//!
//! A session's slots are words holding the pid of the process that has the session: the
//! mother that admits it, then (handed on before the hand-off message is sent) the relay that
//! runs it. Whoever reaps a dead process frees the words holding its pid, and a taker that
//! finds a rule full first frees the words of holders that no longer exist, so a SIGKILL
//! never leaks a slot.

pub mod counters;
pub mod held;
pub mod keys;
pub mod layout;
pub mod monitor;
pub mod pace;
pub mod routes;
pub mod slots;
pub mod throttle;

use std::cell::Cell;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rsockd_config::{Config, RuleKind, Throttle};
use rsockd_sys::shm::SharedWords;

pub use keys::Key;

/// Process `pid` was reaped: the limit slots it held are free and it leaves the gauges.
pub fn reaped(pid: i32) {
    held::clear_dead(pid);
    counters::process_gone(pid);
}
use layout::{Layout, Table, MAGIC};

/// Why a session was refused, in Dante's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `session.max` (or, `per_key`, `session.state.max`) reached.
    Max { max: u32, per_key: bool },
    /// `session.throttle` (or `session.state.throttle`) reached: `admitted` in the window that
    /// began `secs` ago, `current` sessions now.
    Throttle {
        admitted: u64,
        secs: u64,
        current: u64,
        per_key: bool,
    },
    /// Every entry of the rule's per-key table belongs to a key with sessions of its own.
    KeysFull { entries: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |per_key: bool| if per_key { "per-key " } else { "" };
        match self {
            Refusal::Max { max, per_key } => {
                let slots = if *max == 1 { "slot" } else { "slots" };
                write!(
                    f,
                    "{}session limit reached ({max}/{max} {slots} in use)",
                    prefix(*per_key)
                )
            }
            Refusal::Throttle {
                admitted,
                secs,
                current,
                per_key,
            } => {
                let clients = if *admitted == 1 { "client" } else { "clients" };
                write!(
                    f,
                    "{}session rate limit reached (already accepted {admitted} new {clients} \
                     during the last {secs}s.  Current client count: {current})",
                    prefix(*per_key)
                )
            }
            Refusal::KeysFull { entries } => write!(
                f,
                "per-key session limit reached (all {entries} keys of the rule have sessions)"
            ),
        }
    }
}

/// A limited rule as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRow {
    /// `client` or `socks`.
    pub kind: &'static str,
    pub number: u32,
    /// `session.max`.
    pub max: Option<u64>,
    /// Its slots in use, every process's sessions counted.
    pub in_use: u64,
    /// `bandwidth:`, bytes per second.
    pub bandwidth: Option<u64>,
}

/// The slot words a session holds, by index in the region; travels with the hand-off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held(pub Vec<u32>);

impl Held {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct Scoreboard {
    shm: SharedWords,
    layout: Layout,
    generation: u64,
    /// Where this process starts looking for a free slot, so racing processes spread out.
    hint: Cell<usize>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Whether process `pid` still exists (a zombie counts: its reaper will free its slots).
fn alive(pid: u32) -> bool {
    rsockd_sys::process::exists(pid)
}

impl Scoreboard {
    /// A new zeroed scoreboard for `cfg`; None when it has nothing to count (no limit, monitor
    /// or route).
    pub fn create(file: &str, cfg: &Config, generation: u64) -> Result<Option<Scoreboard>, String> {
        let layout = Layout::of(file, cfg)?;
        if layout.is_empty() {
            return Ok(None);
        }
        let shm = SharedWords::create("rsockd.scoreboard", layout.words)
            .map_err(|e| format!("cannot create the scoreboard: {e}"))?;
        shm.words()[0].store(MAGIC, Ordering::Release);
        shm.words()[1].store(generation, Ordering::Release);
        Ok(Some(Scoreboard::new(shm, layout, generation)))
    }

    /// The scoreboard our parent created for the same configuration text.
    pub fn adopt(
        fd: OwnedFd,
        file: &str,
        cfg: &Config,
        generation: u64,
    ) -> Result<Scoreboard, String> {
        let layout = Layout::of(file, cfg)?;
        let shm = SharedWords::adopt(fd).map_err(|e| format!("cannot map the scoreboard: {e}"))?;
        let w = shm.words();
        if w.len() != layout.words
            || w[0].load(Ordering::Acquire) != MAGIC
            || w[1].load(Ordering::Acquire) != generation
        {
            return Err(format!(
                "the scoreboard handed to us does not fit configuration generation {generation}"
            ));
        }
        Ok(Scoreboard::new(shm, layout, generation))
    }

    fn new(shm: SharedWords, layout: Layout, generation: u64) -> Scoreboard {
        Scoreboard {
            shm,
            layout,
            generation,
            hint: Cell::new(std::process::id() as usize),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A copy of the region's descriptor, for a child.
    pub fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        self.shm.dup_fd()
    }

    pub(crate) fn words(&self) -> &[AtomicU64] {
        self.shm.words()
    }

    fn run(&self, r: layout::Run) -> &[AtomicU64] {
        &self.words()[r.start..r.start + r.len]
    }

    /// What rule `number` of `kind` counts `session.state.*` per, if anything.
    pub fn state_key(&self, kind: RuleKind, number: u32) -> Option<rsockd_config::StateKey> {
        self.layout
            .table(kind, number)
            .filter(|t| t.keys.is_some())
            .and_then(|t| t.limits.state_key)
    }

    /// Whether rule `number` of `kind` limits sessions (`session.*`).
    pub fn limits(&self, kind: RuleKind, number: u32) -> bool {
        self.layout
            .table(kind, number)
            .is_some_and(|t| t.limits.limits())
    }

    /// Rule `number` of `kind`'s `bandwidth:`: its pace word and bytes per second.
    pub fn pace(&self, kind: RuleKind, number: u32) -> Option<(u32, u64)> {
        let t = self.layout.table(kind, number)?;
        Some((t.pace? as u32, t.bandwidth?))
    }

    /// Admits one session under rule `number` of `kind` for process `pid` (`key`: the client
    /// address or user, for `session.state.*`), adding the slots it takes to `held`.
    /// Refused: nothing is taken.
    pub fn admit(
        &self,
        kind: RuleKind,
        number: u32,
        key: Option<&Key>,
        pid: u32,
        held: &mut Held,
    ) -> Result<(), Refusal> {
        let Some(t) = self.layout.table(kind, number) else {
            return Ok(());
        };
        let mut taken = Vec::new();
        if let (Some(run), Some(max)) = (t.slots, t.limits.max) {
            taken.push(self.take(run, max, pid)?);
        }
        if let (Some(w), Some(th)) = (t.throttle, t.limits.throttle) {
            if let Err(full) = throttle::admit(&self.words()[w], th, now_ms()) {
                self.undo(&taken, pid);
                return Err(self.throttle_refusal(t, th, full.admitted));
            }
        }
        if let (Some(keys), Some(key)) = (t.keys, key) {
            match self.admit_key(t, &keys, key, pid) {
                Ok(slot) => taken.extend(slot),
                Err(r) => {
                    self.undo(&taken, pid);
                    return Err(r);
                }
            }
        }
        held.0.extend(taken.into_iter().map(|i| i as u32));
        Ok(())
    }

    fn undo(&self, taken: &[usize], pid: u32) {
        for &i in taken {
            slots::release(&self.words()[i], pid);
        }
    }

    /// `session.state.*` for `key`: its slot (if the rule has `session.state.max`) and its
    /// throttle window.
    fn admit_key(
        &self,
        t: &Table,
        keys: &layout::Keys,
        key: &Key,
        pid: u32,
    ) -> Result<Option<usize>, Refusal> {
        let k = key.words();
        let words = self.words();
        for _ in 0..4 {
            let now = now_ms();
            let Some(found) = keys::find(words, keys, t.limits.state_throttle, k, now) else {
                return Err(Refusal::KeysFull {
                    entries: keys.entries,
                });
            };
            let run = keys.slot_run(found.entry);
            let slot = match t.limits.state_max {
                Some(max) => Some(
                    self.take(run, max, pid)
                        .map_err(|_| Refusal::Max { max, per_key: true })?,
                ),
                None => None,
            };
            if let (Some(w), Some(th)) = (keys.throttle_word(found.entry), t.limits.state_throttle)
            {
                if let Err(full) = throttle::admit(&words[w], th, now) {
                    self.undo(&slot.into_iter().collect::<Vec<_>>(), pid);
                    let start = words[w].load(Ordering::Acquire) >> 22;
                    let current = match t.limits.state_max {
                        Some(_) => slots::in_use(self.run(run)) as u64,
                        None => full.admitted,
                    };
                    return Err(Refusal::Throttle {
                        admitted: full.admitted,
                        secs: now.saturating_sub(start) / 1000,
                        current,
                        per_key: true,
                    });
                }
            }
            if keys::still(words, keys, found) {
                return Ok(slot);
            }
            // The entry went to another key while we took from it: try again.
            self.undo(&slot.into_iter().collect::<Vec<_>>(), pid);
        }
        Err(Refusal::KeysFull {
            entries: keys.entries,
        })
    }

    fn take(&self, run: layout::Run, max: u32, pid: u32) -> Result<usize, Refusal> {
        let words = self.run(run);
        let hint = self.hint.get();
        self.hint.set(hint.wrapping_add(1));
        let got = slots::take(words, hint, pid).or_else(|| {
            // Full: free what vanished holders kept, then look once more.
            (slots::sweep(words, &alive) > 0)
                .then(|| slots::take(words, hint, pid))
                .flatten()
        });
        got.map(|i| run.start + i).ok_or(Refusal::Max {
            max,
            per_key: false,
        })
    }

    fn throttle_refusal(&self, t: &Table, th: Throttle, admitted: u64) -> Refusal {
        let now = now_ms();
        let start = t
            .throttle
            .map(|w| self.words()[w].load(Ordering::Acquire) >> 22)
            .unwrap_or(now);
        let current = match t.slots {
            Some(run) => slots::in_use(self.run(run)) as u64,
            None => throttle::admitted(&self.words()[t.throttle.unwrap_or(0)], th, now),
        };
        Refusal::Throttle {
            admitted,
            secs: now.saturating_sub(start) / 1000,
            current,
            per_key: false,
        }
    }

    /// Hands the slots of `held` from `from` to `to` (the relay that will run the session).
    pub fn give(&self, held: &[u32], from: u32, to: u32) {
        for &i in held {
            if let Some(w) = self.words().get(i as usize) {
                slots::give(w, from, to);
            }
        }
    }

    /// Gives back the slots `pid` holds for a session that ended.
    pub fn release(&self, held: &[u32], pid: u32) {
        for &i in held {
            if let Some(w) = self.words().get(i as usize) {
                slots::release(w, pid);
            }
        }
    }

    /// Frees every slot a dead process held; how many.
    pub fn clear(&self, pid: u32) -> usize {
        let slots: usize = self
            .layout
            .slot_runs()
            .map(|r| slots::clear(self.run(r), pid))
            .sum();
        slots + self.clear_monitor_rows(pid)
    }

    /// Slots in use across every rule (0 when the server is idle).
    pub fn in_use(&self) -> usize {
        self.layout
            .slot_runs()
            .map(|r| slots::in_use(self.run(r)))
            .sum()
    }

    /// The health word of route `number` (see routes.rs).
    pub fn route(&self, number: u32) -> Option<&AtomicU64> {
        self.layout.route(number).and_then(|w| self.words().get(w))
    }

    /// Each limited rule's state now, for `/metrics`.
    pub fn limit_rows(&self) -> Vec<LimitRow> {
        self.layout
            .tables
            .iter()
            .map(|t| LimitRow {
                kind: t.kind.name(),
                number: t.number,
                max: t.limits.max.map(u64::from),
                in_use: t.slots.map_or(0, |run| slots::in_use(self.run(run)) as u64),
                bandwidth: t.bandwidth,
            })
            .collect()
    }

    /// One line per limited rule and per monitor, for the SIGUSR1 dump.
    pub fn dump(&self) -> Vec<String> {
        let now = now_ms();
        let monitors = self.monitors().filter_map(|n| {
            let t = self.monitor_totals(n)?;
            Some(format!(
                "monitor #{n}: sessions {}, bytes {}/{}/{}/{} (internal recv/send, external \
                 recv/send)",
                t.sessions, t.bytes[0], t.bytes[1], t.bytes[2], t.bytes[3]
            ))
        });
        let rules: Vec<String> = self
            .layout
            .tables
            .iter()
            .map(|t| {
                let mut s = format!("{}-rule #{}:", t.kind.name(), t.number);
                if let Some(b) = t.bandwidth {
                    s.push_str(&format!(" bandwidth {b} bytes/s,"));
                }
                s.push_str(" sessions");
                if let (Some(run), Some(max)) = (t.slots, t.limits.max) {
                    s.push_str(&format!(
                        " {}/{max} slots in use",
                        slots::in_use(self.run(run))
                    ));
                }
                if let (Some(w), Some(th)) = (t.throttle, t.limits.throttle) {
                    s.push_str(&format!(
                        ", {}/{} new in the current {}s window",
                        throttle::admitted(&self.words()[w], th, now),
                        th.sessions,
                        th.seconds
                    ));
                }
                if let (Some(k), Some(key)) = (t.keys, t.limits.state_key) {
                    s.push_str(&format!(
                        ", {} of {} {} keys in use",
                        keys::in_use(self.words(), &k),
                        k.entries,
                        key.name()
                    ));
                }
                s
            })
            .collect();
        rules.into_iter().chain(monitors).collect()
    }
}
