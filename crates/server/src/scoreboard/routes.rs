//! Route health (`route.maxfail`, `route.badexpire`) in the scoreboard: one word per route,
//! shared by every mother, so a route one mother found dead is skipped by all of them, and
//! its bad mark outlives the mother that set it.
//!
//! The word: failures in a row in the low 32 bits; in the high 32 bits, 0 while the route is
//! good, else the Unix second its bad mark ends ([`FOREVER`] with `route.badexpire: 0`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The bad mark of `route.badexpire: 0`: until the next configuration.
pub const FOREVER: u32 = u32::MAX;

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

fn join(fails: u32, until: u32) -> u64 {
    u64::from(fails) | (u64::from(until) << 32)
}

/// Whether the route may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    Yes,
    /// Marked bad (until this Unix second, or [`FOREVER`]).
    Bad(u32),
    /// Its bad mark just expired, and this caller cleared it (and says so in the log).
    Expired,
}

pub fn usable(w: &AtomicU64, now: u64) -> Usable {
    let v = w.load(Ordering::Acquire);
    let (_, until) = split(v);
    if until == 0 {
        return Usable::Yes;
    }
    if until == FOREVER || now < u64::from(until) {
        return Usable::Bad(until);
    }
    // Only one process wins the reset; the others just see a good route.
    match w.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Usable::Expired,
        Err(_) => Usable::Yes,
    }
}

/// Counts a failure; true when this one marked the route bad (after `maxfail` in a row).
pub fn fail(w: &AtomicU64, maxfail: u32, badexpire: u64, now: u64) -> bool {
    if maxfail == 0 {
        return false;
    }
    let mut v = w.load(Ordering::Acquire);
    loop {
        let (fails, until) = split(v);
        if until != 0 {
            // Already bad (another mother got there first).
            return false;
        }
        let fails = fails.saturating_add(1);
        let until = if fails < maxfail {
            0
        } else if badexpire == 0 {
            FOREVER
        } else {
            u32::try_from(now.saturating_add(badexpire))
                .unwrap_or(FOREVER - 1)
                .min(FOREVER - 1)
        };
        match w.compare_exchange_weak(v, join(fails, until), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return until != 0,
            Err(cur) => v = cur,
        }
    }
}

/// A success: the failures in a row are forgotten (a bad mark stays until it expires).
pub fn succeed(w: &AtomicU64) {
    let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        let (fails, until) = split(v);
        (fails != 0 && until == 0).then_some(0)
    });
}

/// The SIGUSR1 text of a route's state, when it is marked bad.
pub fn state(w: &AtomicU64, now: u64) -> Option<String> {
    let (_, until) = split(w.load(Ordering::Acquire));
    match until {
        0 => None,
        FOREVER => Some("bad (route.badexpire 0)".into()),
        t => Some(format!(
            "bad for {}s more",
            u64::from(t).saturating_sub(now)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_after_maxfail_and_expires_once() {
        let w = AtomicU64::new(0);
        assert!(!fail(&w, 2, 10, 100));
        assert_eq!(usable(&w, 100), Usable::Yes);
        assert!(fail(&w, 2, 10, 101));
        assert!(!fail(&w, 2, 10, 102), "already bad");
        assert_eq!(usable(&w, 105), Usable::Bad(111));
        assert_eq!(state(&w, 105).as_deref(), Some("bad for 6s more"));
        assert_eq!(usable(&w, 111), Usable::Expired);
        assert_eq!(usable(&w, 111), Usable::Yes, "one process clears it");
        assert_eq!(state(&w, 111), None);
    }

    #[test]
    fn success_forgets_failures_and_zero_means_never() {
        let w = AtomicU64::new(0);
        assert!(!fail(&w, 2, 10, 1));
        succeed(&w);
        assert!(!fail(&w, 2, 10, 2), "the count started again");
        assert!(!fail(&w, 0, 10, 3), "maxfail 0 never marks");
        let f = AtomicU64::new(0);
        assert!(fail(&f, 1, 0, 5));
        assert_eq!(usable(&f, u64::from(u32::MAX)), Usable::Bad(FOREVER));
        succeed(&f);
        assert_eq!(
            usable(&f, 6),
            Usable::Bad(FOREVER),
            "a success does not lift a mark"
        );
    }
}
