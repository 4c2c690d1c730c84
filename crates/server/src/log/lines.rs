//! Every session and refusal line rsockd writes, in Dante 1.4's shape: the mother's (`tcp/accept
//! [`, refusals, a CONNECT that failed, sessions lost with a relay) and the relays' (`[` when a
//! session starts, `-` per i/o operation or datagram, `]` with the byte counts when it ends).
//!
//! Users scrape these lines (Dante even ships an awk script for them), so a line that changes
//! here changes for every site: one file answers "who writes this line".

use std::fmt::Display;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rsockd_ipc::{Command, Handoff, RuleRef};
use rsockd_proto::TargetAddr;

use super::{addr, debug, escape, info, session_addr};
use crate::relay::tcp::{Dir, End, Stats};
use crate::relay::udp::{Dropped, Packets, Summary, Verdict, Way};

/// What a line is about, as Dante names it: `proto/command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `tcp/accept`: the client's connection, under its client rule.
    Accept,
    Connect,
    Bind,
    /// `tcp/bindreply`: the peer that connected to a BIND's port.
    BindReply,
    /// `udp/udpassociate`: the association, and datagrams from the client.
    UdpAssociate,
    /// `udp/udpreply`: datagrams to the client.
    UdpReply,
}

impl Subject {
    /// The subject of a request's own lines.
    pub fn of(command: Command) -> Subject {
        match command {
            Command::Connect => Subject::Connect,
            Command::Bind => Subject::Bind,
            Command::UdpAssociate => Subject::UdpAssociate,
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Subject::Accept => ("tcp", "accept"),
            Subject::Connect => ("tcp", "connect"),
            Subject::Bind => ("tcp", "bind"),
            Subject::BindReply => ("tcp", "bindreply"),
            Subject::UdpAssociate => ("udp", "udpassociate"),
            Subject::UdpReply => ("udp", "udpreply"),
        }
    }
}

impl Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (proto, command) = self.words();
        write!(f, "{proto}/{command}")
    }
}

/// A verdict line's head: `pass(3): tcp/connect [: `, followed by the caller's text.
pub fn verdict(pass: bool, rule: u32, subject: Subject, marker: char) -> String {
    format!(
        "{}({rule}): {subject} {marker}: ",
        if pass { "pass" } else { "block" }
    )
}

/// The target a request named that is never reached, in refusal lines.
const NOWHERE: &str = "0.0.0.0.0";

// ---- The mother's lines ---------------------------------------------------------------------

/// Refusal lines are written when the rule logs anything about sessions ending; lines of the
/// implicit rule 0 only at debug level, as Dante does.
fn refusal(rule: &RuleRef, line: String) {
    let f = rule.log;
    if rule.number == 0 {
        debug(&line);
    } else if f.connect || f.disconnect || f.error {
        info(&line);
    }
}

/// A client as the accept lines name it.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    pub peer: &'a SocketAddr,
    /// The load balancer whose PROXY header named `peer`, shown once: `client via balancer`.
    pub via: Option<&'a SocketAddr>,
    pub local: &'a SocketAddr,
    /// A balancer's health check (a PROXY header without addresses): debug lines only, unless
    /// its client rule blocks it.
    pub probe: bool,
    /// Method and name an accept-time `clientmethod` gave (`rfc931%alice@client`).
    pub who: Option<(&'a str, &'a str)>,
}

impl Accepted<'_> {
    fn text(&self) -> String {
        let peer = match self.who {
            Some((m, u)) => crate::log::session_addr(self.peer, Some(m), Some(u)),
            None => addr(self.peer),
        };
        match self.via {
            Some(v) => format!("{peer} via {} {}", addr(v), addr(self.local)),
            None => format!("{peer} {}", addr(self.local)),
        }
    }
}

/// `pass(N): tcp/accept [: client internal`, a client its client rule lets in.
pub fn accept_opened(crule: &RuleRef, c: &Accepted<'_>) {
    if crule.log.connect {
        let line = format!(
            "{}{}",
            verdict(true, crule.number, Subject::Accept, '['),
            c.text()
        );
        if c.probe {
            debug(&line);
        } else {
            info(&line);
        }
    }
}

/// `block(N): tcp/accept ]: client internal: reason`, a client that leaves the mother without a
/// session (blocked, failed negotiation, a refused request). `pass` when its client rule had
/// let it in.
pub fn accept_refused(crule: &RuleRef, pass: bool, c: &Accepted<'_>, reason: &str) {
    let line = format!(
        "{}{}: {reason}",
        verdict(pass, crule.number, Subject::Accept, ']'),
        c.text()
    );
    // A blocked health check is a misconfiguration worth seeing; a passed one is noise.
    if c.probe && pass {
        debug(&line);
    } else {
        refusal(crule, line);
    }
}

/// `block(N): tcp/accept ]: client internal`: a client its client rule blocks. Dante gives
/// no reason here; the rule number says it.
pub fn accept_blocked(crule: &RuleRef, c: &Accepted<'_>) {
    let line = format!(
        "{}{}",
        verdict(false, crule.number, Subject::Accept, ']'),
        c.text()
    );
    refusal(crule, line);
}

/// The end of a balancer's health check that hung up after its method reply: a debug line.
pub fn probe_ended(crule: &RuleRef, c: &Accepted<'_>, reason: &str) {
    debug(&format!(
        "{}{}: health check: {reason}",
        verdict(true, crule.number, Subject::Accept, ']'),
        c.text()
    ));
}

/// `block(0): tcp/accept ]: balancer internal: ...`: a trusted load balancer's connection
/// that did not start with a usable PROXY header. Always logged: it means a balancer is
/// misconfigured (or something else sits in its network).
pub fn balancer_refused(balancer: &SocketAddr, local: &SocketAddr, reason: &str) {
    info(&format!(
        "{}{} {}: load balancer's PROXY protocol header refused: {reason}",
        verdict(false, 0, Subject::Accept, ']'),
        addr(balancer),
        addr(local)
    ));
}

/// A request as the mother's refusal lines name it: its subject, the client (`who`, with
/// `method%user@` once authenticated) and the address it connected to.
pub struct Request<'a> {
    pub subject: Subject,
    pub who: String,
    pub local: &'a SocketAddr,
}

impl Request<'_> {
    /// `block(N): tcp/connect ]: client internal -> 0.0.0.0.0 target[: why]`: no socks rule let
    /// the request through (`rule` is the one that matched its target), or (`why` set) the
    /// matching rule's request-time check failed or the request failed on our side after it
    /// passed (no external address of the family, a bind(2) error, ...).
    pub fn refused(&self, rule: &RuleRef, target: &str, why: Option<&str>) {
        refusal(
            rule,
            format!(
                "{}{} {} -> {NOWHERE} {target}{}",
                verdict(false, rule.number, self.subject, ']'),
                self.who,
                addr(self.local),
                why.map(|w| format!(": {w}")).unwrap_or_default()
            ),
        );
    }

    /// `block(N): tcp/connect ]: client internal: why`, a target name that did not resolve,
    /// under the client rule since no socks rule could be matched.
    pub fn unresolved(&self, crule: &RuleRef, why: &str) {
        refusal(
            crule,
            format!(
                "{}{} {}: {why}",
                verdict(false, crule.number, self.subject, ']'),
                self.who,
                addr(self.local)
            ),
        );
    }

    /// `pass(N): tcp/connect -: client internal -> requested: redirected from E to T`: a socks
    /// rule's `redirect` changed where (`to`) or from where (`from`) the session goes, before
    /// the session's own lines, which name only the real addresses.
    pub fn redirected(
        &self,
        rule: &RuleRef,
        requested: &str,
        from: Option<SocketAddr>,
        to: Option<SocketAddr>,
    ) {
        if !rule.log.connect {
            return;
        }
        let mut how = String::new();
        if let Some(f) = from {
            how.push_str(&format!(" from {}", addr(&f)));
        }
        if let Some(t) = to {
            how.push_str(&format!(" to {}", addr(&t)));
        }
        info(&format!(
            "{}{} {} -> {requested}: redirected{how}",
            verdict(true, rule.number, self.subject, '-'),
            self.who,
            addr(self.local),
        ));
    }

    /// A CONNECT whose outgoing connect failed: Dante writes the relay's closing lines for it,
    /// all counts 0, as a session that ended at once (`tcp/connect ]` from `external` to the
    /// `target` that failed, then `tcp/accept ]`).
    pub fn connect_failed(
        &self,
        srule: &RuleRef,
        crule: &RuleRef,
        external: &SocketAddr,
        target: &SocketAddr,
        end: &End,
    ) {
        let path = format!("{} {}", self.who, addr(self.local));
        let f = srule.log;
        if f.disconnect || f.error {
            info(&format!(
                "{}0 -> {path} -> 0, 0 -> {} {} -> 0: {end}.  Session duration: 0s",
                verdict(true, srule.number, Subject::Connect, ']'),
                addr(external),
                addr(target)
            ));
        }
        if crule.log.disconnect || crule.log.error {
            info(&format!(
                "{}0 -> {path} -> 0: {end}.  Session duration: 0s",
                verdict(true, crule.number, Subject::Accept, ']'),
            ));
        }
    }
}

/// What a mother remembers of a session it handed off, for its line if the relay dies.
pub struct HandedOff {
    pub command: Command,
    pub rule: u32,
    /// client, internal, external, target.
    pub path: [SocketAddr; 4],
    pub accepted_us: u64,
}

/// `pass(N): tcp/connect ]: client internal -> external target: session error (relay process
/// P died).  Session duration: Ns`, for each session a relay took with it.
pub fn relay_died(s: &HandedOff, pid: u32, now_us: u64) {
    let [c, i, e, t] = s.path.each_ref().map(addr);
    info(&format!(
        "{}{c} {i} -> {e} {t}: session error (relay process {pid} died).  Session duration: {}s",
        verdict(true, s.rule, Subject::of(s.command), ']'),
        now_us.saturating_sub(s.accepted_us) / 1_000_000
    ));
}

// ---- The relays' lines ----------------------------------------------------------------------

/// `addr` with the session's user in front, as Dante writes the client.
pub fn user_addr(h: &Handoff, a: &SocketAddr) -> String {
    let method = h.user.as_ref().map(|_| method_name(h.method));
    session_addr(a, method, h.user.as_deref())
}

/// The method name Dante puts before `%user@` in addresses.
fn method_name(code: u8) -> &'static str {
    rsockd_config::Method::from_code(code)
        .map(|m| m.name())
        .unwrap_or("username")
}

/// `client internal -> external target`, with the user in front of the client if any; a
/// chained session's target is `upstream [bound] target`, as Dante writes it, and the target
/// is the name the client asked for when it asked for one.
fn path(h: &Handoff) -> [String; 4] {
    let target = match h.via {
        Some((up, bound)) => {
            let t = match &h.target_name {
                Some(n) => format!("{}.{}", escape(n.as_bytes()), h.target.port()),
                None => addr(&h.target),
            };
            format!("{} [{}] {t}", addr(&up), addr(&bound))
        }
        None => addr(&h.target),
    };
    [
        user_addr(h, &h.client),
        addr(&h.internal),
        addr(&h.external),
        target,
    ]
}

/// How a session's lines name it: its subject, the rule, and the four addresses of its forward
/// direction, `a b -> c d` (the opposite direction is written `d c -> b a`).
pub struct View {
    pub subject: Subject,
    pub rule: RuleRef,
    pub path: [String; 4],
}

impl View {
    /// CONNECT: `client internal -> external target`.
    pub fn connect(h: &Handoff) -> View {
        View {
            subject: Subject::Connect,
            rule: h.socks_rule,
            path: path(h),
        }
    }

    /// A BIND's own lines: `client internal -> bound requested` (Dante's extension BIND, which
    /// takes any peer, names `0.0.0.0.0` there).
    pub fn bind(h: &Handoff) -> View {
        let mut path = path(h);
        if crate::negotiate::is_bind_extension(h.target) {
            path[3] = addr(&SocketAddr::from(([0, 0, 0, 0], 0)));
        }
        View {
            subject: Subject::Bind,
            rule: h.socks_rule,
            path,
        }
    }

    /// A BIND's reply lines, under the `bindreply` rule that let the peer in: `peer bound ->
    /// internal client`.
    pub fn bind_reply(h: &Handoff, peer: SocketAddr, rule: RuleRef) -> View {
        let [client, internal, bound, _] = path(h);
        View {
            subject: Subject::BindReply,
            rule,
            path: [addr(&peer), bound, internal, client],
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
            info(&format!(
                "{}{}",
                verdict(true, self.rule.number, self.subject, '['),
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
        let head = verdict(true, self.rule.number, self.subject, '-');
        if flags.data && !bytes.is_empty() {
            info(&format!(
                "{head}{route} ({}): {}",
                bytes.len(),
                escape(bytes)
            ));
        } else {
            info(&format!("{head}{route} ({})", bytes.len()));
        }
    }

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
        info(&format!(
            "{}{w1} -> {a} {b} -> {r1}{far}: {reason}.  Session duration: {}s{tail}",
            verdict(true, self.rule.number, self.subject, ']'),
            duration_secs(h),
        ));
    }

    /// `verdict(N): proto/command ]: a b -> c d[: why]`, a closing line without counts (Dante's
    /// `tcp/bind ]`).
    pub fn ended(&self, pass: bool, why: Option<&str>) {
        info(&format!(
            "{}{}{}",
            verdict(pass, self.rule.number, self.subject, ']'),
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
pub fn tcp_info(client: BorrowedFd<'_>, target: BorrowedFd<'_>) -> String {
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

/// Whether a rule's closing line is written for this end: `log: disconnect` always, `log:
/// error` when a side failed.
fn logs_end(rule: &RuleRef, end: &End) -> bool {
    let f = rule.log;
    f.disconnect || (f.error && matches!(end, End::ClientError(_) | End::TargetError(_)))
}

/// The closing lines of a CONNECT: `tcp/connect ]` (socks rule) and `tcp/accept ]` (client
/// rule). `tcpinfo` is appended to the socks-rule line when that rule logs `tcpinfo`.
pub fn closed(h: &Handoff, stats: &Stats, end: &End, tcpinfo: Option<&str>) {
    if logs_end(&h.socks_rule, end) {
        let secs = duration_secs(h);
        let [c, i, e, t] = path(h);
        info(&format!(
            "{}{} -> {c} {i} -> {}, {} -> {e} {t} -> {}: {end}.  Session duration: {secs}s{}",
            verdict(true, h.socks_rule.number, Subject::Connect, ']'),
            stats.to_client.get(),
            stats.from_client.get(),
            stats.to_target.get(),
            stats.from_target.get(),
            tcpinfo.map(|t| format!(" {t}")).unwrap_or_default(),
        ));
    }
    accept_closed(h, stats.to_client.get(), stats.from_client.get(), end);
}

/// The closing lines of a BIND that relayed: `tcp/bindreply ]` with the counts (client and
/// peer swap sides in Dante's words), `tcp/bind ]`, `tcp/accept ]`.
pub fn bind_closed(h: &Handoff, bind: &View, reply: &View, stats: &Stats, end: End) {
    let end = bind_forward_closed(h, reply, stats, end);
    if bind.rule.log.disconnect {
        bind.ended(true, None);
    }
    accept_closed(h, stats.to_client.get(), stats.from_client.get(), &end);
}

/// An extended BIND whose peer could not be forwarded (the client's address refused the
/// connection back): Dante ends the whole BIND, with the bindreply, bind and accept lines.
pub fn bind_forward_failed(h: &Handoff, bind: &View, reply: &View, why: &str) {
    let f = reply.rule.log;
    if f.connect || f.disconnect || f.error {
        reply.ended(false, Some(why));
    }
    let f = bind.rule.log;
    if f.connect || f.disconnect || f.error {
        bind.ended(false, Some(why));
    }
    accept_ended(
        h,
        false,
        &format!("request was not performed due to error: {why}"),
    );
}

/// The end of one forwarded peer of an extended BIND: its `tcp/bindreply ]` line only (the
/// BIND and the client's lines come when the control connection closes). Returns the end as
/// the bindreply line saw it.
pub fn bind_forward_closed(h: &Handoff, reply: &View, stats: &Stats, end: End) -> End {
    // In Dante's bindreply lines the peer is the "local client" and the client the "remote
    // peer", so the reasons swap sides.
    let end = match end {
        End::ClientClosed => End::TargetClosed,
        End::TargetClosed => End::ClientClosed,
        End::ClientError(e) => End::TargetError(e),
        End::TargetError(e) => End::ClientError(e),
        other => other,
    };
    if logs_end(&reply.rule, &end) {
        let counts = [
            stats.to_target.get(),
            stats.from_target.get(),
            stats.to_client.get(),
            stats.from_client.get(),
        ]
        .map(|n| n.to_string());
        reply.closed(h, counts, &end.to_string(), "");
    }
    end
}

/// `block(0): tcp/bindreply ]: peer bound -> internal client: expected bindreply from A, but
/// got it from B`: Dante writes it under rule 0 with the BIND rule's log settings.
pub fn bind_reply_unexpected(h: &Handoff, bind: &View, expected: &SocketAddr, peer: SocketAddr) {
    let f = bind.rule.log;
    if f.connect || f.disconnect || f.error {
        let rule = RuleRef {
            number: 0,
            ..h.socks_rule
        };
        View::bind_reply(h, peer, rule).ended(
            false,
            Some(&format!(
                "expected bindreply from {}, but got it from {}",
                addr(expected),
                addr(&peer)
            )),
        );
    }
}

/// A peer the `bindreply` rules refuse: `block(N): tcp/bindreply ]`, or a debug line when no
/// rule matched.
pub fn bind_reply_blocked(reply: &View, peer: &SocketAddr) {
    let f = reply.rule.log;
    if reply.rule.number == 0 {
        debug(&format!(
            "bindreply from {}: no rules matched; using default block rule",
            addr(peer)
        ));
    } else if f.connect || f.disconnect || f.error {
        reply.ended(false, None);
    }
}

/// The lines of a BIND whose peer a rule refused (`rule`: 0 for a peer from the wrong
/// address): `block(N): tcp/bind ]` and `tcp/accept ]`, both with the reason.
pub fn bind_refused(h: &Handoff, bind: &View, peer: &SocketAddr, rule: u32) {
    let why = format!(
        "bind-reply from {} blocked by socks-rule #{rule}",
        addr(peer)
    );
    let f = bind.rule.log;
    if f.connect || f.disconnect || f.error {
        bind.ended(false, Some(&why));
    }
    accept_ended(h, false, &why);
}

/// The lines of a BIND that ended before its peer came: `tcp/bind ]` and `tcp/accept ]` with
/// the reason, no counts.
pub fn bind_ended(h: &Handoff, bind: &View, end: &End) {
    let why = match end {
        End::ClientClosed => "eof from client".to_string(),
        other => other.to_string(),
    };
    if logs_end(&bind.rule, end) {
        bind.ended(true, Some(&why));
    }
    accept_ended(h, true, &why);
}

/// `pass(N): tcp/accept ]: W -> client internal -> R: reason.  Session duration: Ns`
pub fn accept_closed(h: &Handoff, written: u64, read: u64, reason: &dyn Display) {
    let f = h.client_rule.log;
    if !f.disconnect {
        return;
    }
    // Client-rule lines name the bare client, as Dante's do: the user is a socks-rule matter.
    let (c, i) = (addr(&h.client), addr(&h.internal));
    info(&format!(
        "{}{written} -> {c} {i} -> {read}: {reason}.  Session duration: {}s",
        verdict(true, h.client_rule.number, Subject::Accept, ']'),
        duration_secs(h)
    ));
}

/// `pass(N): tcp/accept ]: client internal: reason` (no counts): a session that ended before
/// relaying anything, as a BIND whose client left while waiting for its peer.
fn accept_ended(h: &Handoff, pass: bool, reason: &str) {
    let f = h.client_rule.log;
    if !(f.disconnect || f.error) {
        return;
    }
    let (c, i) = (addr(&h.client), addr(&h.internal));
    info(&format!(
        "{}{c} {i}: {reason}",
        verdict(pass, h.client_rule.number, Subject::Accept, ']'),
    ));
}

/// SIGUSR1 line for one session, in Dante's shape.
pub fn dump_line(h: &Handoff, stats: &Stats) -> String {
    let [c, i, e, t] = path(h);
    let idle = stats.last_io.get().elapsed().as_secs();
    format!(
        "tcp: {c} {i} <-> {e} {t}: age: {}s, idle: {idle}s, bytes transferred: {} (+ 0 buffered (0 + 0 + 0)) <-> {} (+ 0 buffered (0 + 0 + 0))",
        duration_secs(h),
        stats.from_client.get(),
        stats.from_target.get()
    )
}

// ---- A UDP association's lines ----------------------------------------------------------

/// One association as its lines name it: the hand-off and our client-side UDP address
/// (`relay` in Dante's lines).
pub struct Udp<'a> {
    pub h: &'a Handoff,
    pub relay: SocketAddr,
}

fn opt_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| NOWHERE.to_string(), |a| addr(&a))
}

fn target_text(t: &TargetAddr) -> String {
    match t {
        TargetAddr::Ip(a) => addr(a),
        TargetAddr::Domain(n, p) => format!("{}.{p}", escape(n.as_bytes())),
    }
}

/// `bytes/packets`, as Dante counts UDP.
fn bp(bytes: u64, packets: u64) -> String {
    format!("{bytes}/{packets}")
}

fn subject_of(way: Way) -> Subject {
    match way {
        Way::Out => Subject::UdpAssociate,
        Way::In => Subject::UdpReply,
    }
}

impl Udp<'_> {
    /// The address the request named, as Dante shows it (`name.port` for a host name).
    fn requested(&self) -> String {
        match &self.h.target_name {
            Some(n) => format!("{}.{}", escape(n.as_bytes()), self.h.target.port()),
            None => addr(&self.h.target),
        }
    }

    /// `pass(N): udp/udpassociate [: requested relay`.
    pub fn opened(&self) {
        let rule = self.h.socks_rule;
        if rule.log.connect {
            info(&format!(
                "{}{} {}",
                verdict(true, rule.number, Subject::UdpAssociate, '['),
                self.requested(),
                addr(&self.relay)
            ));
        }
    }

    /// One datagram and its verdict: `udp/udpassociate -` out, `udp/udpreply -` in; blocked
    /// ones when the rule logs sessions, passed ones when it logs `data` or `iooperation`.
    pub fn datagram(
        &self,
        way: Way,
        v: &Verdict,
        client: SocketAddr,
        remote: SocketAddr,
        via: Option<SocketAddr>,
        payload: &[u8],
    ) {
        let f = v.log;
        let wanted = if v.pass {
            f.data || f.iooperation
        } else {
            f.connect || f.disconnect || f.error || v.rule == 0
        };
        if !wanted {
            return;
        }
        let route = match way {
            Way::Out => format!(
                "{} {} -> {} {}",
                user_addr(self.h, &client),
                addr(&self.relay),
                opt_addr(via),
                addr(&remote)
            ),
            Way::In => format!(
                "{} {} -> {} {}",
                addr(&remote),
                opt_addr(via),
                addr(&self.relay),
                user_addr(self.h, &client),
            ),
        };
        let head = verdict(v.pass, v.rule, subject_of(way), '-');
        let line = if !v.pass {
            format!("{head}{route}")
        } else if f.data && !payload.is_empty() {
            format!("{head}{route} ({}): {}", payload.len(), escape(payload))
        } else {
            format!("{head}{route} ({})", payload.len())
        };
        if v.rule == 0 {
            debug(&line);
        } else {
            info(&line);
        }
    }

    /// A datagram not relayed for a reason other than a rule: Dante's `block(N):
    /// udp/udpassociate -: from relay -> 0.0.0.0.0 target: why`.
    pub fn dropped(&self, way: Way, from: SocketAddr, why: &Dropped) {
        let rule = self.h.socks_rule;
        let subject = subject_of(way);
        let (target, text) = match why {
            Dropped::Fragment(t) => (
                target_text(t),
                "fragmented socks udp packets are not supported".to_string(),
            ),
            Dropped::Stranger { expected } => (
                NOWHERE.to_string(),
                format!(
                    "expected udp packet from clientaddress {}, got it from {}",
                    addr(expected),
                    addr(&from)
                ),
            ),
            Dropped::Unresolved(name, port, e) => {
                let t = format!("{}.{port}", escape(name.as_bytes()));
                let text = format!("could not resolve target address {t}: {e}");
                (t, text)
            }
            // Dante's words, then ours.
            Dropped::BadHeader(len, e) => (
                NOWHERE.to_string(),
                format!(
                    "SOCKS protocol error in socks udp packet of length {len}.  Could not extract \
                     valid address from SOCKS UDP header ({e})"
                ),
            ),
            Dropped::NoFamily => (
                NOWHERE.to_string(),
                "no address of that family configured for our usage on the external interface"
                    .to_string(),
            ),
            Dropped::SendError(e) => (NOWHERE.to_string(), format!("sendto(2) failed: {e}")),
            Dropped::UnknownRemote => {
                // The client never sent to it: dropped as a connected socket's kernel would.
                debug(&format!(
                    "{subject}: datagram from {} dropped: the client has not sent to it",
                    addr(&from)
                ));
                return;
            }
        };
        if rule.log.error || rule.log.disconnect || rule.log.connect {
            info(&format!(
                "{}{} {} -> {NOWHERE} {target}: {text}",
                verdict(false, rule.number, subject, '-'),
                addr(&from),
                addr(&self.relay)
            ));
        }
    }

    /// The closing lines: `udp/udpassociate ]` with `bytes/packets` both ways (the far half
    /// only when the client sent to a remote), then `tcp/accept ]`.
    pub fn closed(&self, stats: &Stats, p: &Packets, end: &End, sum: &Summary) {
        let h = self.h;
        if logs_end(&h.socks_rule, end) {
            let client = sum
                .client
                .map_or_else(|| self.requested(), |c| user_addr(h, &c));
            let view = View {
                subject: Subject::UdpAssociate,
                rule: h.socks_rule,
                path: [
                    client,
                    addr(&self.relay),
                    opt_addr(sum.external),
                    opt_addr(sum.only_remote),
                ],
            };
            let [w2, r2] = if sum.any_remote {
                [
                    bp(stats.to_target.get(), p.to_target.get()),
                    bp(stats.from_target.get(), p.from_target.get()),
                ]
            } else {
                [String::new(), String::new()]
            };
            let counts = [
                bp(stats.to_client.get(), p.to_client.get()),
                bp(stats.from_client.get(), p.from_client.get()),
                w2,
                r2,
            ];
            view.closed(h, counts, &end.to_string(), "");
        }
        accept_closed(h, stats.to_client.get(), stats.to_target.get(), &end);
    }
}

// ---- Monitors' alarms (mother 1) ------------------------------------------------------------

/// What an alarm watches as its line names it after the addresses: ` internal.recv`, or
/// nothing when every side is summed.
fn alarm_side(what: &str) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!(" {what}")
    }
}

/// `monitor(N): alarm/data [: FROM -> TO internal.recv: B/LIMIT in Ss.  Session count: C`,
/// and on clearing `]` with `.  Alarm duration: Ds`, as Dante writes them.
pub struct AlarmData<'a> {
    pub monitor: &'a rsockd_config::Monitor,
    /// `internal.recv`, `recv`, `internal`, or empty when every counter is summed.
    pub what: String,
    pub raised: bool,
    pub bytes: u64,
    pub limit: u64,
    pub secs: u64,
    pub sessions: u64,
    pub duration: Option<u64>,
}

impl AlarmData<'_> {
    pub fn log(&self) {
        let what = alarm_side(&self.what);
        crate::log::warning(&format!(
            "monitor({}): alarm/data {}: {} -> {}{what}: {}/{} in {}s.  Session count: {}{}",
            self.monitor.number,
            if self.raised { '[' } else { ']' },
            self.monitor.from,
            self.monitor.to,
            self.bytes,
            self.limit,
            self.secs,
            self.sessions,
            self.duration
                .map(|d| format!(".  Alarm duration: {d}s"))
                .unwrap_or_default()
        ));
    }
}

/// `monitor(N): alarm/disconnect ]: FROM -> TO external: D/S disconnects during last Ss.
/// Session count: C`, as Dante writes it.
pub struct AlarmDisconnect<'a> {
    pub monitor: &'a rsockd_config::Monitor,
    /// `internal`, `external`, or empty for both summed.
    pub side: &'static str,
    pub disconnects: u64,
    pub sessions: u64,
    pub secs: u64,
    pub current: u64,
}

impl AlarmDisconnect<'_> {
    pub fn log(&self) {
        let side = alarm_side(self.side);
        crate::log::warning(&format!(
            "monitor({}): alarm/disconnect ]: {} -> {}{side}: {}/{} disconnects during last {}s.  \
             Session count: {}",
            self.monitor.number,
            self.monitor.from,
            self.monitor.to,
            self.disconnects,
            self.sessions,
            self.secs,
            self.current
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_heads() {
        assert_eq!(
            verdict(true, 2, Subject::Connect, '['),
            "pass(2): tcp/connect [: "
        );
        assert_eq!(
            verdict(false, 0, Subject::Accept, ']'),
            "block(0): tcp/accept ]: "
        );
        assert_eq!(
            verdict(false, 7, Subject::UdpReply, '-'),
            "block(7): udp/udpreply -: "
        );
    }

    #[test]
    fn every_command_has_dantes_words() {
        assert_eq!(Subject::of(Command::Connect).to_string(), "tcp/connect");
        assert_eq!(Subject::of(Command::Bind).to_string(), "tcp/bind");
        assert_eq!(
            Subject::of(Command::UdpAssociate).to_string(),
            "udp/udpassociate"
        );
        assert_eq!(Subject::BindReply.to_string(), "tcp/bindreply");
    }
}
