//! Logging in Dante's shape.
//!
//! Each process writes its own lines: files are opened `O_APPEND` and every line goes out in a
//! single `write(2)`, so lines from many processes never interleave. `errorlog` outputs get
//! only warnings and worse. A line is formatted once, whatever the number of outputs.

pub mod by_errno;
mod format;
pub mod json;
mod level;
pub mod lines;
mod output;

pub use format::{addr, errno_text, escape, session_addr};
pub use level::Level;
pub use output::{Dest, Outputs};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

struct Logger {
    outputs: Outputs,
    debug: u32,
}

/// One logger per process. Processes are single-threaded apart from the blocking pool, so the
/// lock is uncontended; it exists so that a reload can swap outputs.
static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// The debug level, readable without the lock: call sites test it before formatting a line.
static DEBUG: AtomicU32 = AtomicU32::new(0);

/// Installs the outputs a configuration asks for (or stderr before any config is read).
pub fn install(outputs: Outputs, debug: u32) {
    if let Ok(mut g) = LOGGER.write() {
        *g = Some(Logger { outputs, debug });
        DEBUG.store(debug, Ordering::Relaxed);
    }
}

/// Whether lines of debug level `n` (1: `-d 1`, 2: `-d 2`) are written; test it before
/// building a debug line's text.
pub fn debugging(n: u32) -> bool {
    DEBUG.load(Ordering::Relaxed) >= n
}

/// Names this process in JSON lines (`mother 1/2`, `relay 1.2`, `auth-helper`, ...).
pub fn set_process(name: &str) {
    output::set_process(name);
}

/// Current debug level (`debug:` or `-d`).
pub fn debug_level() -> u32 {
    LOGGER
        .read()
        .ok()
        .and_then(|g| g.as_ref().map(|l| l.debug))
        .unwrap_or(0)
}

/// Writes one line at `level`. Before `install`, lines go to stderr.
pub fn write(level: Level, msg: &str) {
    let guard = LOGGER.read();
    match guard.as_ref().ok().and_then(|g| g.as_ref()) {
        Some(l) => {
            if level == Level::Debug && l.debug == 0 {
                return;
            }
            l.outputs.write(level, msg);
        }
        None => Outputs::stderr().write(level, msg),
    }
}

pub fn debug(msg: &str) {
    write(Level::Debug, msg)
}
pub fn info(msg: &str) {
    write(Level::Info, msg)
}
pub fn notice(msg: &str) {
    write(Level::Notice, msg)
}
pub fn warning(msg: &str) {
    write(Level::Warning, msg)
}
pub fn error(msg: &str) {
    write(Level::Error, msg)
}
pub fn alert(msg: &str) {
    write(Level::Alert, msg)
}
