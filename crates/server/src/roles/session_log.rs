//! The session lines of relays: `[` when a session starts, `-` per i/o operation, `]` with the
//! four byte counts when it ends, exactly in Dante 1.4's shape.

use std::net::SocketAddr;

use rsockd_ipc::{Handoff, RuleRef};

use crate::log::{self, addr, escape, Line};
use crate::relay::tcp::{Dir, End, Stats};

/// `addr` with the session's user in front, as Dante writes the client.
pub fn user_addr(h: &Handoff, a: &SocketAddr) -> String {
    let method = h.user.as_ref().map(|_| method_name(h.method));
    log::session_addr(a, method, h.user.as_deref())
}

/// The method name Dante puts before `%user@` in addresses.
fn method_name(code: u8) -> &'static str {
    rsockd_config::Method::from_code(code)
        .map(|m| m.name())
        .unwrap_or("username")
}

/// `client internal -> external target`, with the user in front of the client if any.
fn path(h: &Handoff) -> (String, String, String, String) {
    let method = h.user.as_ref().map(|_| method_name(h.method));
    (
        log::session_addr(&h.client, method, h.user.as_deref()),
        addr(&h.internal),
        addr(&h.external),
        addr(&h.target),
    )
}

/// How a session's lines name it: `proto/command`, the rule, and the four addresses of its
/// forward direction, `a b -> c d` (the opposite direction is written `d c -> b a`).
pub struct View {
    pub proto: &'static str,
    pub command: &'static str,
    pub rule: RuleRef,
    pub path: [String; 4],
}

impl View {
    /// CONNECT: `client internal -> external target`.
    pub fn connect(h: &Handoff) -> View {
        let (c, i, e, t) = path(h);
        View {
            proto: "tcp",
            command: "connect",
            rule: h.socks_rule,
            path: [c, i, e, t],
        }
    }

    fn forward(&self) -> String {
        let [a, b, c, d] = &self.path;
        format!("{a} {b} -> {c} {d}")
    }

    fn backward(&self) -> String {
        let [a, b, c, d] = &self.path;
        format!("{d} {c} -> {b} {a}")
    }

    /// The `[` line, when the rule logs `connect`.
    pub fn opened(&self) {
        if self.rule.log.connect {
            log::info(&format!(
                "{}{}",
                Line::verdict(true, self.rule.number, self.proto, self.command, '['),
                self.forward()
            ));
        }
    }

    /// One i/o operation (`log: data` adds the bytes, `log: iooperation` only the count).
    pub fn io(&self, forward: bool, bytes: &[u8]) {
        let flags = self.rule.log;
        if !flags.data && !flags.iooperation {
            return;
        }
        let route = if forward {
            self.forward()
        } else {
            self.backward()
        };
        let head = Line::verdict(true, self.rule.number, self.proto, self.command, '-');
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
}

impl View {
    /// The `]` line: `W1 -> a b -> R1, W2 -> c d -> R2: reason.  Session duration: Ns`, where
    /// W1/R1 are written to / read from the `a` side and W2/R2 the same for the `d` side. An
    /// empty W2 leaves out the second half (a UDP association that never sent anything).
    pub fn closed(&self, h: &Handoff, counts: [String; 4], reason: &str, tail: &str) {
        let [a, b, c, d] = &self.path;
        let [w1, r1, w2, r2] = counts;
        let far = if w2.is_empty() {
            String::new()
        } else {
            format!(", {w2} -> {c} {d} -> {r2}")
        };
        log::info(&format!(
            "{}{w1} -> {a} {b} -> {r1}{far}: {reason}.  Session duration: {}s{tail}",
            Line::verdict(true, self.rule.number, self.proto, self.command, ']'),
            duration_secs(h),
        ));
    }

    /// `verdict(N): proto/command ]: a b -> c d[: why]`, a closing line without counts (Dante's
    /// `tcp/bind ]`).
    pub fn ended(&self, pass: bool, why: Option<&str>) {
        log::info(&format!(
            "{}{}{}",
            Line::verdict(pass, self.rule.number, self.proto, self.command, ']'),
            self.forward(),
            why.map(|w| format!(": {w}")).unwrap_or_default()
        ));
    }
}

pub fn connect_opened(h: &Handoff) {
    // The flag first: building the view formats four addresses.
    if h.socks_rule.log.connect {
        View::connect(h).opened();
    }
}

/// One i/o operation of a CONNECT session.
pub fn io_operation(h: &Handoff, dir: Dir, bytes: &[u8]) {
    let f = h.socks_rule.log;
    if !f.data && !f.iooperation {
        return;
    }
    View::connect(h).io(dir == Dir::ClientToTarget, bytes);
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
    let f = h.socks_rule.log;
    if f.disconnect || (f.error && matches!(end, End::ClientError(_) | End::TargetError(_))) {
        let secs = duration_secs(h);
        let (c, i, e, t) = path(h);
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
    accept_closed(h, stats.to_client.get(), stats.from_client.get(), end);
}

/// `pass(N): tcp/accept ]: W -> client internal -> R: reason.  Session duration: Ns`
pub fn accept_closed(h: &Handoff, written: u64, read: u64, reason: &dyn std::fmt::Display) {
    let f = h.client_rule.log;
    if !f.disconnect {
        return;
    }
    // Client-rule lines name the bare client, as Dante's do: the user is a socks-rule matter.
    let (c, i) = (addr(&h.client), addr(&h.internal));
    log::info(&format!(
        "{}{written} -> {c} {i} -> {read}: {reason}.  Session duration: {}s",
        Line::verdict(true, h.client_rule.number, "tcp", "accept", ']'),
        duration_secs(h)
    ));
}

/// `pass(N): tcp/accept ]: client internal: reason` (no counts): a session that ended before
/// relaying anything, as a BIND whose client left while waiting for its peer.
pub fn accept_ended(h: &Handoff, pass: bool, reason: &str) {
    let f = h.client_rule.log;
    if !(f.disconnect || f.error) {
        return;
    }
    let (c, i) = (addr(&h.client), addr(&h.internal));
    log::info(&format!(
        "{}{c} {i}: {reason}",
        Line::verdict(pass, h.client_rule.number, "tcp", "accept", ']'),
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
