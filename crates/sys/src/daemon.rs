//! `-D`: detach from the terminal, as daemon(3) does, keeping the working directory so that
//! relative log file names keep working (Dante does the same).

use std::io;

use nix::unistd::{fork, setsid, ForkResult};

/// Forks twice and starts a new session. Must run before any thread exists.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called from main() before any thread or runtime is started, so the child is an
    // exact single-threaded copy and may do anything.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(io::Error::from)?;
    // SAFETY: as above; still single-threaded.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: `devnull` is an open descriptor and 0..=2 are the standard descriptors, which
        // no Rust object owns; replacing them with /dev/null is what daemon(3) does.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&devnull), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
