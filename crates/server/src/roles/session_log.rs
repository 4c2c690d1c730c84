//! The session lines of relays: `[` when a session starts, `-` per i/o operation, `]` with the
//! four byte counts when it ends, exactly in Dante 1.4's shape.

use rsockd_ipc::Handoff;

use crate::log::{self, addr, escape, Line};
use crate::relay::tcp::{Dir, End, Stats};

/// `client internal -> external target`, with the user in front of the client if any.
fn path(h: &Handoff) -> (String, String, String, String) {
    let method = h.user.as_ref().map(|_| "username");
    (
        log::session_addr(&h.client, method, h.user.as_deref()),
        addr(&h.internal),
        addr(&h.external),
        addr(&h.target),
    )
}

pub fn connect_opened(h: &Handoff) {
    if !h.socks_rule.log.connect {
        return;
    }
    let (c, i, e, t) = path(h);
    log::info(&format!(
        "{}{c} {i} -> {e} {t}",
        Line::verdict(true, h.socks_rule.number, "tcp", "connect", '[')
    ));
}

/// One i/o operation (`log: data` adds the bytes, `log: iooperation` only the count).
pub fn io_operation(h: &Handoff, dir: Dir, bytes: &[u8]) {
    let flags = h.socks_rule.log;
    if !flags.data && !flags.iooperation {
        return;
    }
    let (c, i, e, t) = path(h);
    let route = match dir {
        Dir::ClientToTarget => format!("{c} {i} -> {e} {t}"),
        Dir::TargetToClient => format!("{t} {e} -> {i} {c}"),
    };
    let head = Line::verdict(true, h.socks_rule.number, "tcp", "connect", '-');
    if flags.data && !bytes.is_empty() {
        log::info(&format!(
            "{head}{route} ({}): {}",
            bytes.len(),
            escape(bytes)
        ));
    } else {
        log::info(&format!("{head}{route} ({})", bytes.len()));
    }
}

pub fn duration_secs(h: &Handoff) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    now.saturating_sub(h.accepted_us) / 1_000_000
}

/// `log: tcpinfo`: the kernel's view of both connections, `client <-> target`, read just before
/// they are closed.
pub fn tcp_info(
    client: std::os::fd::BorrowedFd<'_>,
    target: std::os::fd::BorrowedFd<'_>,
) -> String {
    use rsockd_sys::sockopt::tcp_info;
    let c = tcp_info(client).unwrap_or_default().fields();
    let t = tcp_info(target).unwrap_or_default().fields();
    let body: Vec<String> = c
        .iter()
        .zip(t.iter())
        .map(|((name, cv), (_, tv))| format!("{name}: {cv} <-> {tv}"))
        .collect();
    format!("TCP_INFO: {}", body.join(", "))
}

/// The closing lines: `tcp/connect ]` (socks rule) and `tcp/accept ]` (client rule).
/// `tcpinfo` is appended to the socks-rule line when that rule logs `tcpinfo`.
pub fn closed(h: &Handoff, stats: &Stats, end: &End, tcpinfo: Option<&str>) {
    let secs = duration_secs(h);
    let (c, i, e, t) = path(h);
    let f = h.socks_rule.log;
    if f.disconnect || (f.error && matches!(end, End::ClientError(_) | End::TargetError(_))) {
        log::info(&format!(
            "{}{} -> {c} {i} -> {}, {} -> {e} {t} -> {}: {end}.  Session duration: {secs}s{}",
            Line::verdict(true, h.socks_rule.number, "tcp", "connect", ']'),
            stats.to_client.get(),
            stats.from_client.get(),
            stats.to_target.get(),
            stats.from_target.get(),
            tcpinfo.map(|t| format!(" {t}")).unwrap_or_default(),
        ));
    }
    accept_closed(
        h,
        stats.to_client.get(),
        stats.from_client.get(),
        &end.to_string(),
    );
}

/// `pass(N): tcp/accept ]: W -> client internal -> R: reason.  Session duration: Ns`
pub fn accept_closed(h: &Handoff, written: u64, read: u64, reason: &str) {
    let f = h.client_rule.log;
    if !f.disconnect {
        return;
    }
    let (c, i, _, _) = path(h);
    log::info(&format!(
        "{}{written} -> {c} {i} -> {read}: {reason}.  Session duration: {}s",
        Line::verdict(true, h.client_rule.number, "tcp", "accept", ']'),
        duration_secs(h)
    ));
}

/// SIGUSR1 line for one session, in Dante's shape.
pub fn dump_line(h: &Handoff, stats: &Stats) -> String {
    let (c, i, e, t) = path(h);
    let idle = stats.last_io.get().elapsed().as_secs();
    format!(
        "tcp: {c} {i} <-> {e} {t}: age: {}s, idle: {idle}s, bytes transferred: {} (+ 0 buffered (0 + 0 + 0)) <-> {} (+ 0 buffered (0 + 0 + 0))",
        duration_secs(h),
        stats.from_client.get(),
        stats.from_target.get()
    )
}
