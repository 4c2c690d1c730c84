//! Shared memory every rsockd process maps: a memfd of fixed size, mapped `MAP_SHARED`, seen
//! only as a slice of `AtomicU64` words. The scoreboard (DESIGN §5) is built on it: the lead
//! process creates the memfd, hands it to each child beside the configuration, and each maps
//! it. Nothing but atomics ever touches the words, so no process can see a torn value and
//! none holds a lock another could die with.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::fs::{fstat, ftruncate, memfd_create, MemfdFlags};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// A shared mapping of `len` 64-bit words, unmapped on drop. The memfd stays open so it can be
/// handed on to children.
pub struct SharedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
    fd: OwnedFd,
}

impl SharedWords {
    /// A new zeroed region of `words` words (at least one).
    pub fn create(name: &str, words: usize) -> io::Result<SharedWords> {
        let words = words.max(1);
        let bytes = words
            .checked_mul(8)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, bytes as u64)?;
        Self::map(fd, words)
    }

    /// Maps a region received from the parent; its size is the memfd's.
    pub fn adopt(fd: OwnedFd) -> io::Result<SharedWords> {
        let size = fstat(&fd)?.st_size;
        let bytes = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad region size"))?;
        if bytes == 0 || bytes % 8 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared region of {bytes} bytes is not a whole number of words"),
            ));
        }
        Self::map(fd, bytes / 8)
    }

    fn map(fd: OwnedFd, words: usize) -> io::Result<SharedWords> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of exactly the memfd's
        // size, so no existing memory is aliased and every byte of it is backed by the file.
        let raw = unsafe {
            mmap(
                std::ptr::null_mut(),
                words * 8,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(raw.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedWords {
            ptr,
            len: words,
            fd,
        })
    }

    /// The words. Other processes change them at any time: only atomic operations are
    /// offered, which is why the slice is of `AtomicU64`.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is a live mapping of `len` words (page-aligned, so aligned for
        // AtomicU64) until drop; AtomicU64 has the layout of u64 and allows shared mutation,
        // so concurrent writers in other processes are sound.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A duplicate of the memfd, to hand to a child.
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

// SAFETY: the mapping is plain memory shared with other processes, reached only through
// `words()` as `AtomicU64`s, which any thread may use at once; the pointer is never handed out
// mutably and the memfd is an ordinary descriptor. So the region may move between threads and
// be shared by them, as it is shared by processes.
unsafe impl Send for SharedWords {}
// SAFETY: see `Send` above: every access is atomic.
unsafe impl Sync for SharedWords {}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, of this size, and no reference from `words()` can
        // outlive `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len * 8) };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_memfd_see_each_others_writes() {
        let a = SharedWords::create("test", 3).unwrap();
        let b = SharedWords::adopt(a.dup_fd().unwrap()).unwrap();
        assert_eq!(b.words().len(), 3);
        a.words()[2].store(42, Ordering::SeqCst);
        assert_eq!(b.words()[2].load(Ordering::SeqCst), 42);
        assert_eq!(
            b.words()[0].load(Ordering::SeqCst),
            0,
            "a new region is zeroed"
        );
    }

    #[test]
    fn a_region_of_odd_size_is_refused() {
        let fd = memfd_create("odd", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 12).unwrap();
        assert!(SharedWords::adopt(fd).is_err());
    }
}
