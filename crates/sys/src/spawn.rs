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

/// Spawns another program (our successor in an upgrade: the binary at the path we were
/// started from), with each `(fd, child_fd)` mapped and `env` added.
pub fn spawn_program(
    path: &std::path::Path,
    args: &[String],
    fds: Vec<(OwnedFd, RawFd)>,
    env: &[(&str, String)],
) -> io::Result<Child> {
    let mut cmd = Command::new(path);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
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

/// An in-memory file holding `text`, sealed, to hand a configuration to a child.
///
/// The file is created close-on-exec with MFD_ALLOW_SEALING and, once `text` is written,
/// sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL (fcntl F_ADD_SEALS):
/// from then on no one holding the descriptor, in this process or in any it reaches, nor
/// anyone who opens it again through /proc, can change its size or bytes, and F_SEAL_SEAL
/// keeps the seals from being changed either. A child therefore cannot be handed a
/// configuration that changes under it: the text it reads (see `read_memfd`, which takes the
/// size first, then the bytes) is the text that was validated here.
pub fn memfd_with(name: &str, text: &[u8]) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::io::Write;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(text)?;
    rustix::fs::fcntl_add_seals(
        &f,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rustix::fs::SealFlags;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_configuration_memfd_is_sealed_and_reads_back() {
        let text = b"logoutput: stderr\ninternal: 127.0.0.1 port = 1080\n";
        let fd = memfd_with("rsockd.conf", text).unwrap();
        let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
        let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        assert!(seals.contains(all), "{seals:?}");

        let mut f = std::fs::File::from(fd.try_clone().unwrap());
        let refused = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        // A write at the offset (the end) would grow it; one at 0 would change the bytes.
        assert_eq!(refused(f.write_all(b"x")), Some(libc::EPERM));
        assert_eq!(refused(f.write_all_at(b"X", 0)), Some(libc::EPERM));
        assert_eq!(refused(f.set_len(1)), Some(libc::EPERM));
        assert_eq!(refused(f.set_len(1 << 20)), Some(libc::EPERM));
        // The seals cannot be removed, nor more added (F_SEAL_SEAL).
        let e = rustix::fs::fcntl_add_seals(&f, SealFlags::FUTURE_WRITE).unwrap_err();
        assert_eq!(e.raw_os_error(), libc::EPERM);

        assert_eq!(read_memfd(fd).unwrap(), text);
    }
}
