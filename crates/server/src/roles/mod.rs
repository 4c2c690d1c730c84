//! The processes of rsockd, one module per role. Every role is started by exec'ing our own
//! binary with a hidden `--role` argument (DESIGN.md §1); `main` dispatches here.

pub mod mother;
pub mod relay;
mod session_log;
pub mod supervisor;

/// The descriptor number a child finds its control channel on.
pub const CTL_FD: i32 = 3;

static PARENT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Remembers the process that started us; call first thing in a child role.
pub(crate) fn remember_parent() {
    let _ = PARENT.set(rsockd_sys::process::parent());
}

/// Our parent is gone: we were adopted (by mother 1 as subreaper, the supervisor or init).
/// Dante then adds `: mother unexpectedly exited` to its alert. A dying process closes its
/// descriptors before its children are re-parented, so after EOF on the control channel we
/// give the kernel a moment to finish.
pub(crate) async fn parent_gone() -> bool {
    let Some(original) = PARENT.get().copied() else {
        return false;
    };
    for _ in 0..50 {
        if rsockd_sys::process::parent() != original {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}
