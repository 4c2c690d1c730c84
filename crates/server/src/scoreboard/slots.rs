//! Concurrency slots: a run of words, each free (0) or holding the pid of the process that
//! holds a session in it. A slot is taken, handed on and given back with compare-and-swap, so
//! racing processes can never both take the last one, and a process that dies holding slots
//! is found by its pid alone.

use std::sync::atomic::{AtomicU64, Ordering};

/// Takes a free slot for `pid`, looking from `hint` on (so racing takers spread out); the
/// index in `run`, or None when every slot is held.
pub fn take(run: &[AtomicU64], hint: usize, pid: u32) -> Option<usize> {
    let n = run.len();
    (0..n).map(|i| (hint + i) % n).find(|&i| {
        run[i]
            .compare_exchange(0, u64::from(pid), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Moves a slot from `from` to `to` (a session handed to another process). False if `from`
/// did not hold it.
pub fn give(slot: &AtomicU64, from: u32, to: u32) -> bool {
    slot.compare_exchange(
        u64::from(from),
        u64::from(to),
        Ordering::AcqRel,
        Ordering::Relaxed,
    )
    .is_ok()
}

/// Frees a slot `pid` holds. False if it did not hold it (already freed for it as dead).
pub fn release(slot: &AtomicU64, pid: u32) -> bool {
    give(slot, pid, 0)
}

/// How many slots are held.
pub fn in_use(run: &[AtomicU64]) -> usize {
    run.iter()
        .filter(|w| w.load(Ordering::Relaxed) != 0)
        .count()
}

/// Frees every slot held by `pid` (a process that died); how many.
pub fn clear(run: &[AtomicU64], pid: u32) -> usize {
    run.iter().filter(|w| release(w, pid)).count()
}

/// Frees the slots of every holder `alive` says is gone; how many. Run before refusing a
/// session for want of slots, so that holders nobody reaped (a process re-parented to init)
/// cannot keep a limit full.
pub fn sweep(run: &[AtomicU64], alive: &dyn Fn(u32) -> bool) -> usize {
    run.iter()
        .filter(|w| {
            let v = w.load(Ordering::Acquire);
            let Ok(pid) = u32::try_from(v) else {
                return false;
            };
            pid != 0 && !alive(pid) && release(w, pid)
        })
        .count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn takes_until_full_then_refuses() {
        let r = run(3);
        let got: Vec<_> = (0..4).map(|i| take(&r, i, 100)).collect();
        assert!(got[..3].iter().all(Option::is_some));
        assert_eq!(got[3], None);
        assert_eq!(in_use(&r), 3);
    }

    #[test]
    fn give_and_release_need_the_holder() {
        let r = run(2);
        let i = take(&r, 0, 100).unwrap();
        assert!(!give(&r[i], 200, 300), "only the holder hands a slot on");
        assert!(give(&r[i], 100, 200));
        assert!(!release(&r[i], 100));
        assert!(release(&r[i], 200));
        assert_eq!(in_use(&r), 0);
    }

    #[test]
    fn a_dead_holders_slots_are_cleared_and_swept() {
        let r = run(4);
        take(&r, 0, 7).unwrap();
        take(&r, 0, 7).unwrap();
        take(&r, 0, 8).unwrap();
        take(&r, 0, 9).unwrap();
        assert_eq!(clear(&r, 7), 2);
        assert_eq!(sweep(&r, &|pid| pid != 9), 1);
        assert_eq!(in_use(&r), 1);
    }

    #[test]
    fn racing_threads_never_take_more_than_there_are() {
        let r = std::sync::Arc::new(run(10));
        let won = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (r, won) = (r.clone(), won.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        if take(&r, i, t + 1).is_some() {
                            won.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(won.load(Ordering::SeqCst), 10);
    }
}
