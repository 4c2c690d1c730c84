//! Mother 1 checks every `monitor { }` alarm against the scoreboard's shared counters, as
//! Dante's monitor process does: a data alarm is raised (`[`) at the end of a period in which
//! at most its bytes moved and cleared (`]`) at the end of one in which more did; a disconnect
//! alarm is a single line (`]`) for a period with enough sessions closed by the peer. A new
//! configuration (SIGHUP) starts every alarm afresh, cleared and silent.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsockd_config::{AlarmSides, DataAlarm, DisconnectAlarm, Monitor};

use crate::log::lines;
use crate::scoreboard::monitor::Totals;
use crate::scoreboard::Scoreboard;
use crate::settings::Settings;

/// How often the alarms are looked at; a period ends at most this late.
const TICK: Duration = Duration::from_millis(100);
/// How often a server without monitors looks whether a new configuration has some.
const IDLE_TICK: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The counters (in [`Totals`] order) an alarm on `sides` in directions `recv`/`send` sums.
fn data_counters(sides: AlarmSides, recv: bool, send: bool) -> Vec<usize> {
    let mut v = Vec::new();
    if sides.internal {
        v.extend(recv.then_some(0).into_iter().chain(send.then_some(1)));
    }
    if sides.external {
        v.extend(recv.then_some(2).into_iter().chain(send.then_some(3)));
    }
    v
}

struct DataState {
    alarm: DataAlarm,
    counters: Vec<usize>,
    last_reset: u64,
    /// The summed counters at `last_reset`'s check.
    base: u64,
    on: bool,
    changed: u64,
}

struct DisconnectState {
    alarm: DisconnectAlarm,
    last_reset: u64,
    /// The end counters at the last check.
    base: [u64; 4],
}

struct Watched {
    monitor: Monitor,
    data: Vec<DataState>,
    disconnect: Vec<DisconnectState>,
}

/// Every alarm of one configuration generation.
struct Alarms {
    generation: u64,
    board: Rc<Scoreboard>,
    monitors: Vec<Watched>,
}

impl Alarms {
    fn new(s: &Settings, now: u64) -> Option<Alarms> {
        let board = s.board.clone()?;
        let monitors = s
            .config
            .monitors
            .iter()
            .map(|m| {
                let mut m = m.clone();
                // Dante's order: the external side's alarms first.
                let internal_only = |s: AlarmSides| !s.external || s.internal;
                m.data.sort_by_key(|d| internal_only(d.sides));
                m.disconnect.sort_by_key(|d| internal_only(d.sides));
                Watched {
                    data: m
                        .data
                        .iter()
                        .map(|&alarm| {
                            let counters = data_counters(alarm.sides, alarm.recv, alarm.send);
                            // Each generation has a scoreboard of its own, counting from
                            // zero: what its sessions did before this first look belongs
                            // to the first period.
                            DataState {
                                base: 0,
                                counters,
                                alarm,
                                last_reset: now,
                                on: false,
                                changed: now,
                            }
                        })
                        .collect(),
                    disconnect: m
                        .disconnect
                        .iter()
                        .map(|&alarm| DisconnectState {
                            alarm,
                            last_reset: now,
                            base: [0; 4],
                        })
                        .collect(),
                    monitor: m,
                }
            })
            .collect();
        Some(Alarms {
            generation: s.generation,
            board,
            monitors,
        })
    }

    fn check(&mut self, now: u64) {
        for w in &mut self.monitors {
            let Some(t) = self.board.monitor_totals(w.monitor.number) else {
                continue;
            };
            for d in &mut w.data {
                check_data(&w.monitor, d, &t, now);
            }
            for d in &mut w.disconnect {
                check_disconnect(&w.monitor, d, &t, now);
            }
        }
    }
}

fn check_data(m: &Monitor, d: &mut DataState, t: &Totals, now: u64) {
    if now < d.last_reset + u64::from(d.alarm.seconds) * 1000 {
        return;
    }
    let total: u64 = d.counters.iter().map(|&i| t.bytes[i]).sum();
    let last_io = d
        .counters
        .iter()
        .map(|&i| t.last_io_ms[i])
        .max()
        .unwrap_or(0);
    let bytes = total.saturating_sub(d.base);
    let line = |on: bool, duration: Option<u64>| lines::AlarmData {
        monitor: m,
        what: d.alarm.name(),
        raised: on,
        bytes,
        limit: d.alarm.bytes,
        secs: now.saturating_sub(d.last_reset) / 1000,
        sessions: t.sessions,
        duration,
    };
    if bytes <= d.alarm.bytes {
        if !d.on {
            line(true, None).log();
            d.on = true;
            d.changed = now;
        }
        d.last_reset = now;
    } else if d.on {
        line(false, Some(now.saturating_sub(d.changed) / 1000)).log();
        d.on = false;
        d.changed = now;
        d.last_reset = now;
    } else {
        // Quiet and not raised: the next check comes one period after the last i/o (Dante).
        d.last_reset = last_io.clamp(d.last_reset, now);
    }
    d.base = total;
}

fn check_disconnect(m: &Monitor, d: &mut DisconnectState, t: &Totals, now: u64) {
    if now < d.last_reset + u64::from(d.alarm.seconds) * 1000 {
        return;
    }
    let since = |i: usize| t.ends[i].saturating_sub(d.base[i]);
    let (mut peer, mut ours) = (0, 0);
    if d.alarm.sides.internal {
        peer += since(0);
        ours += since(1);
    }
    if d.alarm.sides.external {
        peer += since(2);
        ours += since(3);
    }
    let sessions = t.sessions + peer + ours;
    // At least MINCOUNT, and at least MINCOUNT out of every SESSIONS sessions of the period.
    // (Dante 1.4 compares the two ratios in integer division, so there any ratio below one
    // passes; we compare them as written.)
    let a = d.alarm;
    if peer >= u64::from(a.min)
        && sessions > 0
        && peer * u64::from(a.sessions) >= u64::from(a.min) * sessions
    {
        lines::AlarmDisconnect {
            monitor: m,
            side: a.sides.name(),
            disconnects: peer,
            sessions,
            secs: now.saturating_sub(d.last_reset) / 1000,
            current: t.sessions,
        }
        .log();
    }
    d.base = t.ends;
    d.last_reset = now;
}

/// Checks the alarms of the current configuration until the process ends.
pub(super) async fn watch_forever() {
    let mut alarms: Option<Alarms> = None;
    loop {
        let current = Settings::current().filter(|s| !s.config.monitors.is_empty());
        let Some(s) = current else {
            // Without monitors, a look a second is enough to notice a reload that adds some.
            alarms = None;
            tokio::time::sleep(IDLE_TICK).await;
            continue;
        };
        let now = now_ms();
        match &mut alarms {
            Some(a) if a.generation == s.generation => a.check(now),
            // A new configuration: its alarms start cleared, and the old ones end silently.
            _ => alarms = Alarms::new(&s, now),
        }
        tokio::time::sleep(TICK).await;
    }
}
