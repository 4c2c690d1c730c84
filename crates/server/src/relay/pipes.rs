//! A per-relay pool of pipes for splice(2).
//!
//! A TCP direction borrows a pipe only while bytes sit in it (socket -> pipe -> socket), so idle
//! sessions hold no pipe, and a relay needs about as many pipes as it has directions moving data
//! at once. Returned pipes are empty by construction and are kept for reuse.
//!
//! The pipe size is the relay's choice (`RSOCKD_RELAY_PIPE`, bytes, default 1 MiB, capped by
//! `/proc/sys/fs/pipe-max-size`); `RSOCKD_RELAY_PIPE=copy` turns splice off and relays with
//! read/write through pooled buffers, which the benchmark uses to compare both engines. Pipe
//! pages are charged to the user only when filled, but the kernel limits how much pipe capacity
//! one user may hold (`pipe-user-pages-soft`); past it, resizing fails and the pipe keeps the
//! default size, which still works, only with more system calls per byte.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{fcntl_setpipe_size, pipe_with, PipeFlags};

/// Default pipe capacity: splice through 1 MiB moved a GiB with about a quarter of the CPU that
/// 64 KiB needed in the study behind the issue (fewer wake-ups and syscalls per byte).
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;
/// Empty pipes kept for reuse beyond this are closed (each costs two descriptors).
const KEEP: usize = 32;

/// How a relay moves TCP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// splice(2) through pipes of this many bytes.
    Splice(usize),
    /// read/write through pooled buffers.
    Copy,
}

thread_local! {
    static ENGINE: Cell<Engine> = const { Cell::new(Engine::Splice(DEFAULT_PIPE_SIZE)) };
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Parses `RSOCKD_RELAY_PIPE`: `copy`, or a size in bytes with an optional `k`/`m` suffix.
pub fn parse_engine(text: &str) -> Result<Engine, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "copy" {
        return Ok(Engine::Copy);
    }
    let (digits, mult) = match t.strip_suffix('k') {
        Some(d) => (d, 1024),
        None => match t.strip_suffix('m') {
            Some(d) => (d, 1024 * 1024),
            None => (t.as_str(), 1),
        },
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("RSOCKD_RELAY_PIPE: \"{text}\" is neither \"copy\" nor a size"))?;
    let size = n
        .checked_mul(mult)
        .filter(|s| (4096..=(256 << 20)).contains(s))
        .ok_or_else(|| format!("RSOCKD_RELAY_PIPE: {text} is outside 4k..256m"))?;
    Ok(Engine::Splice(size))
}

/// Chooses the engine for this process (relays call it once at start).
pub fn set_engine(e: Engine) {
    ENGINE.with(|c| c.set(e));
}

pub fn engine() -> Engine {
    ENGINE.with(|c| c.get())
}

/// One pipe: bytes go in at `write`, out at `read`.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Its capacity: the most one splice into it can move.
    pub size: usize,
}

impl Pipe {
    /// How many buffers (pages) the pipe holds. splice(2) from a socket puts at least one byte
    /// in each, so a read of fewer bytes than this never stopped on a full pipe.
    pub fn slots(&self) -> usize {
        self.size / rustix::param::page_size()
    }

    fn open(want: usize) -> io::Result<Pipe> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // Falls back to the kernel's default (one page per slot, 16 slots) when the user's pipe
        // budget is spent or `want` exceeds pipe-max-size.
        let size = fcntl_setpipe_size(&write, want).unwrap_or(16 * 4096);
        Ok(Pipe { read, write, size })
    }
}

/// Borrows an empty pipe of about `size` bytes (from the pool, or a new one).
pub fn take(size: usize) -> io::Result<Pipe> {
    match POOL.with(|p| p.borrow_mut().pop()) {
        Some(p) => Ok(p),
        None => Pipe::open(size),
    }
}

/// Returns an empty pipe. A pipe that may still hold bytes must be dropped instead, or the
/// next session would receive them.
pub fn give_back(p: Pipe) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(p);
        }
    });
}

/// Pipes waiting in this process's pool (for the state dump and tests).
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_copy() {
        assert_eq!(parse_engine("copy"), Ok(Engine::Copy));
        assert_eq!(parse_engine("65536"), Ok(Engine::Splice(65536)));
        assert_eq!(parse_engine("64k"), Ok(Engine::Splice(65536)));
        assert_eq!(parse_engine("1M"), Ok(Engine::Splice(1 << 20)));
        assert!(parse_engine("12").is_err());
        assert!(parse_engine("lots").is_err());
        assert!(parse_engine("99999999999999999999k").is_err());
    }

    #[test]
    fn pipes_are_reused_and_sized() {
        let p = take(1 << 20).unwrap();
        assert!(p.size >= 4096);
        let before = pooled();
        give_back(p);
        assert_eq!(pooled(), before + 1);
        let _again = take(1 << 20).unwrap();
        assert_eq!(pooled(), before);
    }
}
