//! Process titles (`rsockd: relay 1.2: 812 sessions`), as `ps` shows them.
//!
//! Linux shows `/proc/PID/cmdline`, which is the argv area on the initial stack. We overwrite
//! that area in place. The area cannot grow, so a title longer than the original command line
//! is cut; processes we exec ourselves get a padded argv so their titles fit.

use std::fs;
use std::sync::{Mutex, OnceLock};

/// The argv area never moves, and relays retitle on every session: read it once.
static AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();
/// The thread name last set, so an unchanged name costs no prctl(2).
static NAME: Mutex<String> = Mutex::new(String::new());

/// Where the argv area is, read from `/proc/self/stat` (fields 48 and 49, see proc(5)).
fn argv_area() -> Option<(usize, usize)> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field N is at index N - 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// The name this program was started as (the last part of argv[0]), kept before the first
/// title overwrites argv: libwrap matches hosts.allow lines against it (Dante's `__progname`).
static PROGRAM: OnceLock<String> = OnceLock::new();

fn program_from_args() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "rsockd".to_string())
}

/// See [`PROGRAM`].
pub fn program_name() -> &'static str {
    PROGRAM.get_or_init(program_from_args)
}

/// Sets the title shown by `ps` and the thread name shown by `top`/`pgrep`.
///
/// Call only after the program has read its arguments: `std::env::args` reads the same memory.
pub fn set(title: &str) {
    program_name();
    let name: String = title.chars().take(15).collect();
    let changed = match NAME.lock() {
        Ok(last) if *last == name => false,
        Ok(mut last) => {
            last.clone_from(&name);
            true
        }
        Err(_) => true,
    };
    if changed {
        if let Ok(c) = std::ffi::CString::new(name) {
            let _ = rustix::thread::set_name(&c);
        }
    }
    let Some((start, end)) = *AREA.get_or_init(argv_area) else {
        return;
    };
    let cap = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(cap.saturating_sub(1));
    // SAFETY: [start, end) is this process's own argv area as reported by the kernel for the
    // running process; it is mapped, writable (it lies on the initial stack) and nothing else
    // in the process refers to it once the arguments have been parsed. We write exactly `cap`
    // bytes inside it, the title then NULs.
    unsafe {
        let dst = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
        std::ptr::write_bytes(dst.add(n), 0, cap - n);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn area_is_found() {
        assert!(super::argv_area().is_some());
    }
}
