//! `session.throttle: N/S` on one word: the start of the current window (milliseconds since
//! the epoch, high 42 bits) and the sessions admitted in it (low 22 bits). One word, so one
//! compare-and-swap moves both: no process can see a new window with an old count.

use std::sync::atomic::{AtomicU64, Ordering};

use rsockd_config::Throttle;

const COUNT_BITS: u32 = 22;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// What a refusal reports: the sessions admitted in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub admitted: u64,
}

/// Admits one new session if the window has room; the window starts afresh `S` seconds after
/// it began. A limit above 4,194,303 per window is treated as that.
pub fn admit(word: &AtomicU64, t: Throttle, now_ms: u64) -> Result<(), Full> {
    let limit = u64::from(t.sessions).min(COUNT_MASK);
    let span = u64::from(t.seconds) * 1000;
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let (start, count) = (cur >> COUNT_BITS, cur & COUNT_MASK);
        let next = if now_ms.saturating_sub(start) >= span || now_ms < start {
            (now_ms << COUNT_BITS) | 1
        } else if count < limit {
            cur + 1
        } else {
            return Err(Full { admitted: count });
        };
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(v) => cur = v,
        }
    }
}

/// Sessions admitted in the window that is current at `now_ms` (0 once it has passed).
pub fn admitted(word: &AtomicU64, t: Throttle, now_ms: u64) -> u64 {
    let cur = word.load(Ordering::Acquire);
    let start = cur >> COUNT_BITS;
    if cur == 0 || now_ms.saturating_sub(start) >= u64::from(t.seconds) * 1000 {
        0
    } else {
        cur & COUNT_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Throttle = Throttle {
        sessions: 3,
        seconds: 2,
    };

    #[test]
    fn admits_n_per_window_then_starts_afresh() {
        let w = AtomicU64::new(0);
        let now = 1_765_000_000_000;
        for _ in 0..3 {
            assert_eq!(admit(&w, T, now), Ok(()));
        }
        assert_eq!(admit(&w, T, now + 1999), Err(Full { admitted: 3 }));
        assert_eq!(admitted(&w, T, now + 1999), 3);
        assert_eq!(admit(&w, T, now + 2000), Ok(()));
        assert_eq!(admitted(&w, T, now + 2000), 1);
        assert_eq!(admitted(&w, T, now + 5000), 0);
    }

    #[test]
    fn a_clock_stepped_back_starts_a_new_window() {
        let w = AtomicU64::new(0);
        for _ in 0..3 {
            admit(&w, T, 10_000).ok();
        }
        assert_eq!(admit(&w, T, 9_000), Ok(()));
    }
}
