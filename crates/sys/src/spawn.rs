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
