//! systemd's readiness protocol (`NOTIFY_SOCKET`, `sd_notify(3)`), std-only. Tests use it too:
//! they wait for `READY=1` instead of sleeping. Only the process the service manager started
//! (mother 1 or the supervisor) speaks it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) if the service manager asked for notifications.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(abs) = path.strip_prefix('@') {
        SocketAddr::from_abstract_name(abs.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    let (Ok(addr), Ok(sock)) = (addr, UnixDatagram::unbound()) else {
        return;
    };
    let _ = sock.send_to_addr(state.as_bytes(), &addr);
}

/// `RELOADING=1` with the `MONOTONIC_USEC=` that `Type=notify-reload` requires.
pub fn reloading() {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// `STATUS=` text shown by `systemctl status`.
pub fn status(text: &str) {
    notify(&format!("STATUS={text}"));
}

/// The watchdog interval asked for (`WATCHDOG_USEC`, for us if `WATCHDOG_PID` says so).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval for as long as the calling event loop turns: a
/// stuck loop stops the pings and the service manager restarts us.
pub async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    loop {
        notify("WATCHDOG=1");
        tokio::time::sleep(every / 2).await;
    }
}
