//! What every request shares once it is read, whatever its command: the client as log lines
//! name it, resolving the target, the socks rules for each of its addresses, admission, the
//! refusals (logged and answered) and the hand-off to a relay. `connect`, `bind` and `udp`
//! add only what their command does.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{SystemTime, UNIX_EPOCH};

use rsockd_config::{Method, Rotation, Rule, StateKey};
use rsockd_ipc::{Handoff, LogFlags, RuleRef};
use rsockd_proto::{Reply, TargetAddr};
use rsockd_rules::{Dest, SocksQuery};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::Mother;
use crate::log::lines::{self, Subject};
use crate::log::{self, addr, escape};
use crate::negotiate::{self, Cmd, Wire};
use crate::net::resolve::Resolver;
use crate::net::sockopts;
use crate::scoreboard::counters::{self, Outcome, RuleType};
use crate::scoreboard::held::SessionSlots;
use crate::scoreboard::Key;
use crate::settings::Settings;

pub(super) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

pub(super) fn log_flags(rule: Option<&Rule>) -> LogFlags {
    rule.map(|r| r.log).unwrap_or_default()
}

/// Context of one client for its log lines.
pub(super) struct Client {
    /// The client: the TCP peer, or the source a trusted balancer's PROXY header named.
    pub peer: SocketAddr,
    /// The balancer the client came through (`rsockd.proxyprotocol.from`).
    pub via: Option<SocketAddr>,
    /// A balancer's health check (PROXY LOCAL/UNKNOWN): accept lines are debug lines.
    pub probe: bool,
    pub local: SocketAddr,
    pub crule: RuleRef,
    /// The client's reverse-resolved, forward-confirmed names (only when rules need them).
    pub names: Vec<String>,
    /// `method%user@` once the client authenticated, as Dante puts it in request lines.
    pub who: Option<(Method, String)>,
    /// Who the accept-time `clientmethod` said the client is (for the accept lines).
    pub accept_who: Option<(Method, String)>,
    /// PAM still to run with the matched socks rule's service.
    pub pending_pam: Option<super::auth::PendingPam>,
    /// The client's RFC 1929 credentials for routes that forward them.
    pub route_creds: Option<super::auth::RouteCreds>,
    /// The way to `rsockd.route.credentials` (the auth helper), when it is configured.
    pub route_link: Option<std::rc::Rc<crate::auth::link::AuthLink>>,
    /// The scoreboard slots this client holds (its client rule's, then its socks rule's).
    pub slots: RefCell<SessionSlots>,
    /// A duplicate of the client's socket for libwrap, when the configuration uses it.
    pub wrap_fd: Option<OwnedFd>,
    /// Whether the client rule's session limits carry over to the socks rule.
    pub inherits: bool,
    /// What the server's counters say of this client when it leaves us: its request's
    /// command once read, and how it ended (failed until a rule or a hand-off says otherwise).
    pub tally: Tally,
}

/// A client's line in the server's counters, counted once when the client leaves its mother.
pub(super) struct Tally {
    pub cmd: Cell<counters::Cmd>,
    pub outcome: Cell<Outcome>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            cmd: Cell::new(counters::Cmd::None),
            outcome: Cell::new(Outcome::Failed),
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        counters::request_done(self.cmd.get(), self.outcome.get());
    }
}

impl Client {
    /// The hand-off fields every command fills alike, from this client and its request; the
    /// command's own (addresses, timeouts, reply, descriptors) are set by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handoff(
        &self,
        req: &negotiate::Request,
        id: u64,
        command: rsockd_ipc::Command,
        accepted_us: u64,
        socks_rule: RuleRef,
        target_name: Option<String>,
        prefetched: Vec<u8>,
    ) -> Handoff {
        let (board, slots, pace) = self.slots.borrow().wire();
        Handoff {
            board,
            slots,
            pace,
            monitor: 0,
            id,
            command,
            version: req.version,
            accepted_us,
            client: self.peer,
            internal: self.local,
            external: self.local,
            target: self.local,
            target_name,
            user: req.user.clone(),
            groups: req.groups.clone(),
            method: req.method.code(),
            client_rule: self.crule,
            socks_rule,
            io_timeout: 0,
            fin_wait_timeout: 0,
            reply: Vec::new(),
            prefetched,
            via: None,
            nfds: 0,
        }
    }

    /// The client as request lines show it: `username%alice@10.0.0.5.40123`.
    pub fn peer_text(&self) -> String {
        match &self.who {
            Some((m, u)) => log::session_addr(&self.peer, Some(m.name()), Some(u)),
            None => addr(&self.peer),
        }
    }

    /// The client as accept lines name it.
    pub fn accepted(&self) -> lines::Accepted<'_> {
        lines::Accepted {
            peer: &self.peer,
            via: self.via.as_ref(),
            local: &self.local,
            probe: self.probe,
            who: self
                .accept_who
                .as_ref()
                .map(|(m, u)| (m.name(), u.as_str())),
        }
    }

    /// The `tcp/accept ]` line of a client that leaves the mother without a session.
    pub fn accept_closed(&self, pass: bool, reason: &str) {
        lines::accept_refused(&self.crule, pass, &self.accepted(), reason);
    }

    /// This client's request as refusal lines name it.
    pub fn request(&self, subject: Subject) -> lines::Request<'_> {
        lines::Request {
            subject,
            who: self.peer_text(),
            local: &self.local,
        }
    }
}

pub(super) fn choose_source(s: &Settings, target: IpAddr, local: SocketAddr) -> Option<IpAddr> {
    choose_source_for(s, target, local, None)
}

/// [`choose_source`] for a CONNECT by `who` (the authenticated user, else the client's
/// address as text): `external.rotation: random` and `user` pick from an `external:` prefix
/// of the target's family when there is one (our extension), else from the listed addresses.
pub(super) fn choose_source_for(
    s: &Settings,
    target: IpAddr,
    local: SocketAddr,
    who: Option<&str>,
) -> Option<IpAddr> {
    let same_family = |ip: &IpAddr| ip.is_ipv4() == target.is_ipv4();
    let prefix = s
        .config
        .external_prefixes
        .iter()
        .find(|p| p.addr().is_ipv4() == target.is_ipv4());
    match s.config.external_rotation {
        Rotation::Random | Rotation::User => {
            let key = match (s.config.external_rotation, who) {
                (Rotation::User, Some(w)) => crate::net::rotation::stable_hash(w.as_bytes()),
                _ => crate::net::rotation::random(),
            };
            match prefix {
                Some(p) => Some(crate::net::rotation::address_in(p, key)),
                None => {
                    let v: Vec<IpAddr> = s.externals.iter().copied().filter(same_family).collect();
                    (!v.is_empty()).then(|| v[(key % v.len() as u64) as usize])
                }
            }
        }
        Rotation::SameSame => same_family(&local.ip()).then(|| local.ip()),
        Rotation::Route => {
            let probe = std::net::UdpSocket::bind(if target.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            })
            .and_then(|u| u.connect(SocketAddr::new(target, 9)).map(|_| u))
            .and_then(|u| u.local_addr());
            match probe {
                Ok(a) if s.externals.contains(&a.ip()) => Some(a.ip()),
                _ => s.externals.iter().copied().find(same_family),
            }
        }
        Rotation::None => s
            .externals
            .iter()
            .copied()
            .find(same_family)
            .or_else(|| prefix.map(|p| crate::net::rotation::address_in(p, 1))),
    }
}

pub(super) async fn fail<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    version: u8,
    rep: Reply,
) {
    let _ = wire
        .io()
        .write_all(&negotiate::failure_reply(version, rep))
        .await;
}

/// A request's target, resolved.
pub(super) struct Resolved {
    /// The name the client asked for, if it asked for one.
    pub name: Option<String>,
    pub port: u16,
    /// Every address, in resolver order.
    pub candidates: Vec<SocketAddr>,
    /// The target as log lines show it (`name.port` or `a.b.c.d.port`).
    pub text: String,
    /// Reverse names of an IP target, when rules need them.
    pub rev_names: Vec<String>,
    /// The name did not resolve (the reason): with routes, a CONNECT may still go upstream
    /// by name; `candidates` then holds only `0.0.0.0:port` and rules see no address.
    pub unresolved: Option<String>,
}

/// Resolves the request's target. The error is Dante's wording for the refusal lines.
pub(super) async fn resolve_target(
    s: &Settings,
    resolver: &impl Resolver,
    target: &TargetAddr,
) -> Result<Resolved, String> {
    let (name, port, candidates) = match target {
        TargetAddr::Ip(a) => (None, a.port(), vec![*a]),
        TargetAddr::Domain(name, port) => match resolver.forward(name, *port).await {
            Ok(v) => {
                if log::debugging(1) {
                    let all: Vec<String> = v.iter().map(addr).collect();
                    log::debug(&format!(
                        "reqhostisok(): hostname {}.{port} in request resolved to address(es) {}",
                        escape(name.as_bytes()),
                        all.join(", ")
                    ));
                }
                (Some(name.clone()), *port, v)
            }
            Err(e) if s.rules.has_routes() => {
                // An upstream may know the name: the routes decide (see connect.rs).
                let why = format!(
                    "could not resolve hostname \"{}\": {e}",
                    escape(name.as_bytes())
                );
                return Ok(Resolved {
                    name: Some(name.clone()),
                    port: *port,
                    candidates: vec![SocketAddr::from(([0, 0, 0, 0], *port))],
                    text: format!("{}.{port}", escape(name.as_bytes())),
                    rev_names: Vec::new(),
                    unresolved: Some(why),
                });
            }
            Err(e) => {
                let text = e.to_string();
                let lists = log::by_errno::lists(None, &s.config);
                let level = log::by_errno::by_gai_text(lists, &text);
                log::by_errno::write(level, || {
                    log::by_errno::dns_failed(name, &text, &s.externals)
                });
                return Err(format!(
                    "could not resolve hostname \"{}\": {e}",
                    escape(name.as_bytes())
                ));
            }
        },
    };
    let text = match &name {
        Some(n) => format!("{}.{port}", escape(n.as_bytes())),
        None => candidates.first().map(addr).unwrap_or_default(),
    };
    let rev_names = match (&name, candidates.first()) {
        (None, Some(a)) if s.rules.needs_target_names() => resolver.reverse_confirmed(a.ip()).await,
        _ => Vec::new(),
    };
    Ok(Resolved {
        name,
        port,
        candidates,
        text,
        rev_names,
        unresolved: None,
    })
}

/// The socks-rule verdicts for every address of a resolved target.
pub(super) struct Checked {
    /// Addresses a pass rule admits, each with that rule's number and the rule.
    pub passed: Vec<(SocketAddr, u32, Option<Rule>)>,
    /// The first address's match, for the refusal line when none passed.
    pub first: (u32, Option<Rule>),
}

/// Checks each address on its own, so a name that resolves to a blocked address never reaches
/// it through a pass rule that matched another of its addresses.
pub(super) fn check_socks(
    s: &Settings,
    client: &Client,
    req: &negotiate::Request,
    command: rsockd_config::Command,
    t: &Resolved,
) -> Checked {
    let version = if req.version == 4 {
        rsockd_config::ProxyProtocol::SocksV4
    } else {
        rsockd_config::ProxyProtocol::SocksV5
    };
    let mut first: Option<(u32, Option<Rule>)> = None;
    let mut passed = Vec::new();
    for c in &t.candidates {
        let q = SocksQuery {
            src: client.peer,
            version,
            command,
            method: req.method,
            user: req.user.as_deref(),
            groups: &req.groups,
            dst: Dest {
                ip: t.unresolved.is_none().then(|| c.ip()),
                name: t.name.as_deref(),
                port: t.port,
                names: &t.rev_names,
            },
        };
        // Socks rules with a host name in `from:` need the client's confirmed names too.
        let mm = if s.rules.needs_client_names() {
            s.rules.socks_with_src_names(&q, &client.names)
        } else {
            s.rules.socks(&q)
        };
        if first.is_none() {
            first = Some((mm.number, mm.rule.cloned()));
        }
        if mm.verdict == rsockd_config::Verdict::Pass {
            passed.push((*c, mm.number, mm.rule.cloned()));
        }
    }
    Checked {
        passed,
        first: first.unwrap_or((0, None)),
    }
}

/// The first address a pass rule admits, with that rule.
pub(super) struct Admitted {
    pub addr: SocketAddr,
    /// The rule as the hand-off carries it.
    pub rule: RuleRef,
    /// The rule itself, for its timeouts and `udp.portrange`.
    pub cfg: Option<Rule>,
}

/// The request's admission: the first passed address and its rule, or `None` after the
/// request was refused (logged and answered).
pub(super) async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    client: &Client,
    version: u8,
    checked: &Checked,
    subject: Subject,
    target_text: &str,
) -> Option<Admitted> {
    let Some((addr, number, cfg)) = checked.passed.first().cloned() else {
        let first = checked.first.clone();
        refuse_blocked(
            wire,
            client,
            version,
            first,
            subject,
            target_text,
            Refused::Rules,
        )
        .await;
        return None;
    };
    if let Some(p) = &client.pending_pam {
        if let Err(why) = p.check(cfg.as_ref()).await {
            let rule = (number, cfg.clone());
            let why = Refused::Check(&why);
            refuse_blocked(wire, client, version, rule, subject, target_text, why).await;
            return None;
        }
    }
    if let (Some(line), Some(fd)) = (
        cfg.as_ref().and_then(|r| r.libwrap.clone()),
        client.wrap_fd.as_ref().and_then(|f| f.try_clone().ok()),
    ) {
        if !crate::net::libwrap::rule_line(fd, &line).await {
            let rule = (number, cfg.clone());
            let why = Refused::Check("failed libwrap line");
            refuse_blocked(wire, client, version, rule, subject, target_text, why).await;
            return None;
        }
    }
    let key = |k: StateKey| match k {
        StateKey::From => Key::Addr(client.peer.ip()),
        // Clients that did not authenticate share the key of the empty name.
        StateKey::User => Key::User(client.who.as_ref().map(|w| w.1.clone()).unwrap_or_default()),
    };
    let limited = client
        .slots
        .borrow_mut()
        .for_request(number, client.inherits, key);
    if let Err(limit) = limited {
        let rule = (number, cfg.clone());
        let why = Refused::Limit(&limit.to_string());
        refuse_blocked(wire, client, version, rule, subject, target_text, why).await;
        return None;
    }
    counters::rule_matched(RuleType::Socks, number);
    Some(Admitted {
        addr,
        rule: RuleRef {
            number,
            log: log_flags(cfg.as_ref()),
        },
        cfg,
    })
}

/// Why a socks rule turned a request away.
#[derive(Clone, Copy)]
enum Refused<'a> {
    /// No pass rule matched.
    Rules,
    /// The rule matched, its request-time check (PAM with the rule's service) failed.
    Check(&'a str),
    /// The rule matched, its session limits are reached.
    Limit(&'a str),
}

/// Logs and answers a request a socks rule turned away.
async fn refuse_blocked<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    client: &Client,
    version: u8,
    (num, rule): (u32, Option<Rule>),
    subject: Subject,
    target_text: &str,
    refused: Refused<'_>,
) {
    let sref = RuleRef {
        number: num,
        log: log_flags(rule.as_ref()),
    };
    counters::rule_matched(RuleType::Socks, num);
    client.tally.outcome.set(Outcome::Blocked);
    if let (Refused::Check(_), Some(p)) = (refused, &client.pending_pam) {
        counters::auth_failed(p.method);
    }
    let reason = match refused {
        Refused::Rules => None,
        Refused::Check(w) | Refused::Limit(w) => Some(w),
    };
    client.request(subject).refused(&sref, target_text, reason);
    // Dante's client-rule line names the socks rule and, for a limit, the limit too.
    let why = match refused {
        Refused::Check(w) => w.to_string(),
        Refused::Limit(w) => format!("blocked by higher-level socks-rule #{num}: {w}"),
        Refused::Rules if num == 0 => "no rules matched; using default block rule".to_string(),
        Refused::Rules => format!("blocked by higher-level socks-rule #{num}"),
    };
    client.accept_closed(false, &why);
    fail(wire, version, Reply::NotAllowed).await;
}

/// Hands a negotiated session and its descriptors to this mother's relays (with the others
/// that finish in the same turn of the event loop). The pool owns them from here and answers
/// the client if no relay takes the session.
pub(super) fn hand_off(
    m: &Mother,
    client: &Client,
    h: Handoff,
    client_fd: OwnedFd,
    more: Vec<OwnedFd>,
) {
    let mut fds = Vec::with_capacity(1 + more.len());
    fds.push(client_fd);
    fds.extend(more);
    let slots = client.slots.take();
    if log::debugging(1) {
        log::debug(&format!(
            "handing client {} (session {:#x}) to a relay process with {} descriptor(s)",
            addr(&client.peer),
            h.id,
            fds.len()
        ));
    }
    client.tally.outcome.set(Outcome::Ok);
    counters::handshake(now_us().saturating_sub(h.accepted_us));
    m.pool.hand_off(super::pool::Queued { h, fds, slots });
}

/// Sets the socket options of `side` for a socket of a session: the global ones (external
/// side only: the global internal ones are on the listening sockets, which accepted sockets
/// inherit), then the rule's, which win.
pub(super) fn socket_options(
    s: &Settings,
    rule: Option<&Rule>,
    fd: std::os::fd::BorrowedFd<'_>,
    side: rsockd_config::Side,
    kind: sockopts::Kind,
    v6: bool,
) {
    if side == rsockd_config::Side::External || kind == sockopts::Kind::Udp {
        sockopts::apply(fd, &s.config.sockopts, side, kind, v6);
    }
    if let Some(r) = rule.filter(|r| !r.sockopts.is_empty()) {
        sockopts::apply(fd, &r.sockopts, side, kind, v6);
    }
}

/// The rule's `internal.` socket options on the client's TCP socket, once the rule matched
/// (Dante sets them after accept).
pub(super) fn client_options(t: &TcpStream, rule: Option<&Rule>) {
    if let Some(r) = rule.filter(|r| !r.sockopts.is_empty()) {
        let v6 = t.peer_addr().is_ok_and(|a| a.is_ipv6());
        sockopts::apply(
            std::os::fd::AsFd::as_fd(t),
            &r.sockopts,
            rsockd_config::Side::Internal,
            sockopts::Kind::Tcp,
            v6,
        );
    }
}

/// Detaches a tokio TCP stream for the hand-off.
pub(super) fn detach(t: TcpStream) -> std::io::Result<OwnedFd> {
    Ok(t.into_std()?.into())
}

/// Logs and answers a request whose target name does not resolve.
pub(super) async fn refuse_unresolved<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    client: &Client,
    version: u8,
    subject: Subject,
    why: &str,
) {
    client.request(subject).unresolved(&client.crule, why);
    client.accept_closed(
        false,
        &format!("request was not performed due to error: {why}"),
    );
    fail(wire, version, Reply::HostUnreachable).await;
}

/// A request that failed on our side after its rule passed: what its refusal line names.
pub(super) struct Failing<'a> {
    pub version: u8,
    pub rule: &'a RuleRef,
    pub subject: Subject,
    pub target: &'a str,
}

/// Logs and answers a request that failed on our side after its rule passed (no external
/// address of the family, a bind(2) error, ...).
pub(super) async fn refuse_failed<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    client: &Client,
    f: &Failing<'_>,
    why: &str,
    rep: Reply,
) {
    client
        .request(f.subject)
        .refused(f.rule, f.target, Some(why));
    client.accept_closed(false, why);
    fail(wire, f.version, rep).await;
}

/// A request past its opening steps: the target resolved, the rules checked, the first
/// admitted address and its rule.
pub(super) struct Opened {
    pub target: Resolved,
    pub checked: Checked,
    pub admitted: Admitted,
}

/// The opening steps every command shares: resolve the target (refused with `04` when it does
/// not resolve), check the socks rules for each of its addresses, admit the first that passes
/// (refused with `02` when none does). A UDP association is checked as Dante does it, against
/// rules whose `to:` admits 0.0.0.0, since its targets come later, datagram by datagram.
/// None: the request was refused, logged and answered.
pub(super) async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    s: &Settings,
    resolver: &impl Resolver,
    client: &Client,
    req: &negotiate::Request,
) -> Option<Opened> {
    let subject = Subject::of(req.command);
    let command = match req.command {
        Cmd::Connect => rsockd_config::Command::Connect,
        Cmd::Bind => rsockd_config::Command::Bind,
        Cmd::UdpAssociate => rsockd_config::Command::UdpAssociate,
    };
    let target = match resolve_target(s, resolver, &req.target).await {
        Ok(t) => t,
        Err(why) => {
            refuse_unresolved(wire, client, req.version, subject, &why).await;
            return None;
        }
    };
    let checked = if req.command == Cmd::UdpAssociate {
        let anywhere = Resolved {
            name: None,
            port: 0,
            candidates: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            text: "0.0.0.0.0".to_string(),
            rev_names: Vec::new(),
            unresolved: None,
        };
        check_socks(s, client, req, command, &anywhere)
    } else {
        check_socks(s, client, req, command, &target)
    };
    let admitted = admit(wire, client, req.version, &checked, subject, &target.text).await?;
    Some(Opened {
        target,
        checked,
        admitted,
    })
}
