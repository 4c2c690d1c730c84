//! Per-key tables (`session.state.key: from | user`): an open-addressing table of key
//! entries, each `[key, key, state, throttle?, slots...]` (see layout.rs). An entry's state
//! word is `version << 2 | st`, st 0 = empty, 1 = being written, 2 = in use. Entries are never
//! emptied, so probe chains stay whole; when the table is full, an idle entry (no slot held,
//! its throttle window over) is taken over for a new key, its version bumped, and a taker that
//! raced with the takeover sees the new version and tries again.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::Keys;
use super::{slots, throttle};

const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;
/// How long a taker waits for another process to finish writing an entry's key.
const WRITE_SPINS: u32 = 100_000;

/// What limits are counted per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Addr(IpAddr),
    User(String),
}

impl Key {
    /// Two words: an address as its 128 bits (IPv4 as IPv4-mapped), a user name as two
    /// different 64-bit hashes of it.
    pub fn words(&self) -> [u64; 2] {
        match self {
            Key::Addr(ip) => {
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => *v6,
                };
                let b = u128::from(v6);
                [(b >> 64) as u64, b as u64]
            }
            Key::User(name) => [
                fnv1a(name.as_bytes(), 0xcbf2_9ce4_8422_2325),
                fnv1a(name.as_bytes(), 0x8422_2325_cbf2_9ce4) | 1,
            ],
        }
    }
}

fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn home(k: [u64; 2], entries: usize) -> usize {
    let h = (k[0] ^ k[1].rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 16) as usize % entries
}

/// An entry found or made for a key: its index and the version it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub entry: usize,
    pub version: u64,
}

/// Finds the entry of `k`, making one if the key is new; None when every entry is in use by a
/// key with sessions (or a throttle window) of its own.
pub fn find(
    words: &[AtomicU64],
    t: &Keys,
    th: Option<rsockd_config::Throttle>,
    k: [u64; 2],
    now_ms: u64,
) -> Option<Found> {
    let h = home(k, t.entries);
    for p in 0..t.entries {
        let i = (h + p) % t.entries;
        let base = t.entry(i);
        let state = &words[base + 2];
        let mut spins = 0;
        loop {
            let st = state.load(Ordering::Acquire);
            match st & 3 {
                EMPTY => {
                    if state
                        .compare_exchange(st, st | WRITING, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        words[base].store(k[0], Ordering::Relaxed);
                        words[base + 1].store(k[1], Ordering::Relaxed);
                        state.store((st & !3) | READY, Ordering::Release);
                        return Some(Found {
                            entry: i,
                            version: st >> 2,
                        });
                    }
                }
                WRITING if spins < WRITE_SPINS => {
                    spins += 1;
                    std::hint::spin_loop();
                }
                WRITING => break,
                _ => {
                    if words[base].load(Ordering::Relaxed) == k[0]
                        && words[base + 1].load(Ordering::Relaxed) == k[1]
                    {
                        return Some(Found {
                            entry: i,
                            version: st >> 2,
                        });
                    }
                    break;
                }
            }
        }
    }
    take_over(words, t, th, k, h, now_ms)
}

/// The table is full: takes over the first idle entry from the key's home on.
fn take_over(
    words: &[AtomicU64],
    t: &Keys,
    th: Option<rsockd_config::Throttle>,
    k: [u64; 2],
    h: usize,
    now_ms: u64,
) -> Option<Found> {
    for p in 0..t.entries {
        let i = (h + p) % t.entries;
        let base = t.entry(i);
        let state = &words[base + 2];
        let st = state.load(Ordering::Acquire);
        if st & 3 != READY || !idle(words, t, th, i, now_ms) {
            continue;
        }
        let version = (st >> 2) + 1;
        if state
            .compare_exchange(
                st,
                (version << 2) | WRITING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            continue;
        }
        // A taker may have taken a slot between the check and the claim: keep its key then.
        if idle(words, t, th, i, now_ms) {
            words[base].store(k[0], Ordering::Relaxed);
            words[base + 1].store(k[1], Ordering::Relaxed);
            if let Some(w) = t.throttle_word(i) {
                words[w].store(0, Ordering::Relaxed);
            }
            state.store((version << 2) | READY, Ordering::Release);
            return Some(Found { entry: i, version });
        }
        state.store((version << 2) | READY, Ordering::Release);
    }
    None
}

fn idle(
    words: &[AtomicU64],
    t: &Keys,
    th: Option<rsockd_config::Throttle>,
    i: usize,
    now_ms: u64,
) -> bool {
    let run = t.slot_run(i);
    let free = slots::in_use(&words[run.start..run.start + run.len]) == 0;
    let quiet = match (t.throttle_word(i), th) {
        (Some(w), Some(th)) => throttle::admitted(&words[w], th, now_ms) == 0,
        _ => true,
    };
    free && quiet
}

/// Whether entry `f` still belongs to the key it was found for (no takeover since).
pub fn still(words: &[AtomicU64], t: &Keys, f: Found) -> bool {
    words[t.entry(f.entry) + 2].load(Ordering::Acquire) == (f.version << 2) | READY
}

/// Keys in use (entries written).
pub fn in_use(words: &[AtomicU64], t: &Keys) -> usize {
    (0..t.entries)
        .filter(|&i| words[t.entry(i) + 2].load(Ordering::Relaxed) & 3 == READY)
        .count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(entries: usize, slots: usize) -> (Vec<AtomicU64>, Keys) {
        let stride = super::super::layout::KEY_HEAD + 1 + slots;
        let t = Keys {
            start: 0,
            entries,
            stride,
            has_throttle: true,
            slots,
        };
        (
            (0..entries * stride).map(|_| AtomicU64::new(0)).collect(),
            t,
        )
    }

    fn addr(s: &str) -> [u64; 2] {
        Key::Addr(s.parse().unwrap()).words()
    }

    #[test]
    fn the_same_key_finds_the_same_entry_and_keys_differ() {
        let (w, t) = table(8, 1);
        let a = find(&w, &t, None, addr("10.0.0.1"), 0).unwrap();
        let b = find(&w, &t, None, addr("10.0.0.2"), 0).unwrap();
        assert_ne!(a.entry, b.entry);
        assert_eq!(find(&w, &t, None, addr("10.0.0.1"), 0).unwrap(), a);
        assert_eq!(in_use(&w, &t), 2);
        assert_ne!(
            Key::User("alice".into()).words(),
            Key::User("bob".into()).words()
        );
        assert_eq!(addr("127.0.0.1"), addr("::ffff:127.0.0.1"));
    }

    #[test]
    fn a_full_table_takes_over_idle_entries_only() {
        let (w, t) = table(2, 1);
        let a = find(&w, &t, None, addr("10.0.0.1"), 0).unwrap();
        let b = find(&w, &t, None, addr("10.0.0.2"), 0).unwrap();
        // Both keys hold a session: no room for a third.
        for f in [a, b] {
            let r = t.slot_run(f.entry);
            slots::take(&w[r.start..r.start + r.len], 0, 42).unwrap();
        }
        assert_eq!(find(&w, &t, None, addr("10.0.0.3"), 0), None);
        // One session ends: its entry goes to the new key, and the old finder sees it moved.
        let r = t.slot_run(a.entry);
        slots::release(&w[r.start], 42);
        let c = find(&w, &t, None, addr("10.0.0.3"), 0).unwrap();
        assert_eq!(c.entry, a.entry);
        assert!(!still(&w, &t, a));
        assert!(still(&w, &t, c));
    }
}
