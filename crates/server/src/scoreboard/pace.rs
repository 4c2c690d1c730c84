//! `bandwidth: BYTES` per second, shared by every session of a rule in every relay: one word
//! per rule holds the time (µs since the epoch) by which the bytes charged so far are due at
//! that rate (a generic cell rate algorithm). A session charges each chunk it has read and
//! waits until the chunk is due before it writes, so the rule's sessions take turns in the
//! order they charge: a busy session cannot starve the others, and an idle rule costs
//! nothing.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Scoreboard;

/// Charges `bytes` at `rate` bytes per second at `now_us`; how long (µs) the caller must wait
/// for them to be due.
pub fn charge(word: &AtomicU64, rate: u64, bytes: u64, now_us: u64) -> u64 {
    let rate = rate.max(1);
    let cost =
        (u128::from(bytes) * 1_000_000 / u128::from(rate)).min(u128::from(u64::MAX / 4)) as u64;
    let mut cur = word.load(Ordering::Acquire);
    loop {
        // Time not used is not saved up: an idle rule starts again from now.
        let due = cur.max(now_us).saturating_add(cost);
        match word.compare_exchange_weak(cur, due, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return due.saturating_sub(now_us),
            Err(v) => cur = v,
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// One session's share of its rule's bandwidth.
pub struct Pace {
    board: Rc<Scoreboard>,
    word: usize,
    rate: u64,
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pace({} bytes/s, word {})", self.rate, self.word)
    }
}

impl Pace {
    /// The pace a hand-off names (word `word` of generation `generation`'s scoreboard), if
    /// this process has that scoreboard.
    pub fn of(generation: u64, word: u32, rate: u64) -> Option<Pace> {
        let board = super::held::of_generation(generation)?;
        board.words().get(word as usize)?;
        Some(Pace {
            board,
            word: word as usize,
            rate,
        })
    }

    /// The most a session reads at once: a twentieth of a second's worth (at least 4 KiB),
    /// so no chunk holds the others back for long.
    pub fn chunk(&self) -> usize {
        (self.rate / 20).clamp(4096, 1 << 20) as usize
    }

    /// Charges `bytes` just read and waits until they are due.
    pub async fn pay(&self, bytes: usize) {
        let Some(w) = self.board.words().get(self.word) else {
            return;
        };
        let wait = charge(w, self.rate, bytes as u64, now_us());
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_queue_up_at_the_rate_and_idle_time_is_not_saved() {
        let w = AtomicU64::new(0);
        // 1,000 bytes/s: 500 bytes are due in 0.5 s, the next 500 in 1 s.
        assert_eq!(charge(&w, 1000, 500, 10_000_000), 500_000);
        assert_eq!(charge(&w, 1000, 500, 10_000_000), 1_000_000);
        // Later than everything due: start from now.
        assert_eq!(charge(&w, 1000, 100, 20_000_000), 100_000);
    }
}
