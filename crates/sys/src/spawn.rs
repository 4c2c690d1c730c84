//! Starting our own roles: fork + immediate exec of our binary with descriptors mapped to fixed
//! numbers. We never fork without exec once a runtime exists (tokio does not survive fork).

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};

use command_fds::{CommandFdExt, FdMapping};

/// The binary to exec: the kernel resolves this to the running executable's inode even if the
/// file was replaced on disk since we started.
pub const SELF_EXE: &str = "/proc/self/exe";

/// Spawns our binary with `arg0` as its title, `args`, and each `(fd, child_fd)` mapped.
/// Standard error is inherited so that `logoutput: stderr` keeps working in children.
pub fn spawn_self(arg0: &str, args: &[String], fds: Vec<(OwnedFd, RawFd)>) -> io::Result<Child> {
    let mut cmd = Command::new(SELF_EXE);
    std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
    cmd.args(args).stdin(Stdio::null());
    let mappings = fds
        .into_iter()
        .map(|(parent_fd, child_fd)| FdMapping {
            parent_fd,
            child_fd,
        })
        .collect();
    cmd.fd_mappings(mappings)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    cmd.spawn()
}

/// Claims descriptor `fd`, which our parent mapped into this process at exec (see
/// `spawn_self`). Returns None if it is not open. Each number can be claimed once.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    use std::sync::Mutex;
    static CLAIMED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());
    let mut claimed = CLAIMED.lock().ok()?;
    if fd < 3 || claimed.contains(&fd) {
        return None;
    }
    // SAFETY: F_GETFD only queries the descriptor table entry; it touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: fd is open (checked above), was placed here by our parent for us, is not owned
    // by any other object in this process (nothing else opens fixed numbers >= 3 before
    // this is called at startup), and can be claimed only once (CLAIMED).
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Mapped descriptors arrive without CLOEXEC; set it so they never leak further.
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    claimed.push(fd);
    Some(owned)
}

/// A sealed-size in-memory file holding `text`, to hand a configuration to a child.
pub fn memfd_with(name: &str, text: &[u8]) -> io::Result<OwnedFd> {
    use std::io::Write;
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(text)?;
    Ok(f.into())
}

/// Reads a whole memfd received from the parent, without moving its shared offset.
pub fn read_memfd(fd: OwnedFd) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::from(fd);
    let len = f.metadata()?.len() as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
