//! One client, from accept to its request: client rules, method negotiation and
//! authentication; then the request goes to its command's module.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use rsockd_config::{Method, Side};
use rsockd_ipc::RuleRef;
use rsockd_proto::proxy;
use rsockd_rules::ClientQuery;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;

use super::request::{log_flags, now_us, Client, Tally};
use super::state::Mother;
use crate::log::{self, lines};
use crate::negotiate::{self, Cmd, Wire};
use crate::net::libwrap;
use crate::net::resolve::{Resolver, SystemResolver};
use crate::scoreboard::counters::{self, Outcome, RuleType};
use crate::scoreboard::held::SessionSlots;
use crate::settings::Settings;

/// Negotiates with one accepted client. `listening` is the listener's own address: when it is
/// a specific address, it is the client's destination too, and getsockname(2) is saved.
pub async fn handle(m: Rc<Mother>, stream: TcpStream, tcp_peer: SocketAddr, listening: SocketAddr) {
    let accepted_us = now_us();
    let s = m.settings();
    let local = if listening.ip().is_unspecified() {
        match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        }
    } else {
        listening
    };
    let mut wire = Wire::new(stream);
    let (peer, via, probe) = if s.from_balancer(tcp_peer.ip()) {
        match balancer_header(&mut wire, &s).await {
            Ok(Some(client)) => (client, Some(tcp_peer), false),
            // LOCAL / UNKNOWN: the balancer speaks for itself (a health check).
            Ok(None) => (tcp_peer, None, true),
            Err(why) => {
                lines::balancer_refused(&tcp_peer, &local, &why);
                counters::request_done(counters::Cmd::None, Outcome::Failed);
                return;
            }
        }
    } else {
        (tcp_peer, None, false)
    };
    // libwrap looks at the connection itself (a duplicate it may keep while it works).
    let wrap_fd = if libwrap::wanted(&s.config) {
        std::os::fd::AsFd::as_fd(wire.io())
            .try_clone_to_owned()
            .ok()
    } else {
        None
    };
    let dup = |f: &Option<std::os::fd::OwnedFd>| f.as_ref().and_then(|f| f.try_clone().ok());
    // The accept lines' view of this client, before it has a `Client`.
    let accepted_as = |who| lines::Accepted {
        peer: &peer,
        via: via.as_ref(),
        local: &local,
        probe,
        who,
    };
    if s.config.libwrap_hosts_access {
        let allowed = match dup(&wrap_fd) {
            Some(f) => libwrap::hosts_access(f, &s.config).await,
            None => false,
        };
        if !allowed {
            // Dante: the default rule's block, which logs at debug level only.
            let who = accepted_as(None);
            let rule = RuleRef {
                number: 0,
                log: log_flags(None),
            };
            lines::accept_refused(&rule, false, &who, "blocked by libwrap/tcp_wrappers");
            counters::request_done(counters::Cmd::None, Outcome::Blocked);
            return;
        }
    }
    let names = if s.rules.needs_client_names() {
        SystemResolver.reverse_confirmed(peer.ip()).await
    } else {
        Vec::new()
    };
    let local_names = if s.rules.needs_local_names() {
        SystemResolver.reverse_confirmed(local.ip()).await
    } else {
        Vec::new()
    };
    let q = ClientQuery {
        src: peer,
        dst: local,
        src_names: &names,
        dst_names: &local_names,
    };
    let (cm, accepted) = if s.rules.needs_client_auth() {
        super::clientmethod::choose(&m, &s, &q, peer, local).await
    } else {
        (s.rules.client(&q), None)
    };
    let accept_who = accepted
        .as_ref()
        .and_then(|a| a.user.clone().map(|u| (a.method, u)));
    let who_text = accept_who.as_ref().map(|(m, u)| (m.name(), u.as_str()));
    let crule_cfg = cm.rule.cloned();
    counters::rule_matched(RuleType::Client, cm.number);
    let pass = cm.verdict == rsockd_config::Verdict::Pass;
    let crule = RuleRef {
        number: cm.number,
        log: log_flags(cm.rule),
    };
    // The rule's libwrap line; one that jumps blocks the client.
    if let (Some(line), Some(f)) = (
        crule_cfg.as_ref().and_then(|r| r.libwrap.clone()),
        dup(&wrap_fd),
    ) {
        if !libwrap::rule_line(f, &line).await && pass {
            let who = accepted_as(who_text);
            lines::accept_blocked(&crule, &who);
            counters::request_done(counters::Cmd::None, Outcome::Blocked);
            return;
        }
    }
    // Dante checks the client's DNS once a rule has passed it: a refusal is that rule's block.
    if pass {
        if let Some(why) = m.srchost.refusal(s.config.srchost, &peer).await {
            let who = accepted_as(who_text);
            lines::accept_refused(&crule, false, &who, &why);
            counters::request_done(counters::Cmd::None, Outcome::Blocked);
            return;
        }
    }
    // A client rule's session limits are checked at accept, as Dante does: over the limit,
    // the connection is reset with no reply.
    let slots = if pass {
        match SessionSlots::for_client(s.board.as_ref(), cm.number, peer.ip()) {
            Ok(slots) => slots,
            Err(limit) => {
                let who = accepted_as(who_text);
                lines::accept_refused(&crule, false, &who, &limit.to_string());
                counters::request_done(counters::Cmd::None, Outcome::Blocked);
                reset(wire.into_parts().0);
                return;
            }
        }
    } else {
        SessionSlots::default()
    };
    let mut client = Client {
        peer,
        via,
        probe,
        local,
        crule,
        names,
        who: None,
        accept_who: accept_who.clone(),
        pending_pam: None,
        route_creds: None,
        route_link: s.config.route_credentials.as_ref().map(|_| m.auth.clone()),
        slots: RefCell::new(slots),
        wrap_fd,
        inherits: crule_cfg.as_ref().is_none_or(|r| r.session.inherits()),
        tally: Tally::default(),
    };
    if !pass {
        client.tally.outcome.set(Outcome::Blocked);
        if cm.number == 0 {
            client.accept_closed(false, "no rules matched; using default block rule");
        } else {
            lines::accept_blocked(&client.crule, &client.accepted());
        }
        return;
    }
    if log::debugging(1) {
        log::debug(&format!(
            "accepted tcp client {} on address {}, matched by client-rule #{}",
            log::addr(&peer),
            log::addr(&local),
            cm.number
        ));
    }
    lines::accept_opened(&client.crule, &client.accepted());
    super::request::client_options(wire.io(), crule_cfg.as_ref());
    let methods: &[Method] = match &crule_cfg {
        Some(r) if !r.socksmethod.is_empty() => &r.socksmethod,
        _ => &s.config.socksmethod,
    };
    let mut auth = super::auth::MotherAuth::new(&m, &s, crule_cfg.as_ref(), peer, local);
    auth.accepted = accepted;
    let neg = negotiate::negotiate(&mut wire, methods, &auth);
    let res = match s.negotiate_timeout(crule_cfg.as_ref()) {
        Some(t) => match tokio::time::timeout(t, neg).await {
            Ok(r) => r,
            Err(_) => {
                client.accept_closed(
                    false,
                    &format!(
                        "error after reading {} byte{} in {} seconds: negotiate timeout",
                        wire.read_total(),
                        if wire.read_total() == 1 { "" } else { "s" },
                        wire.elapsed_secs()
                    ),
                );
                return;
            }
        },
        None => neg.await,
    };
    let mut req = match res {
        Ok(r) => r,
        Err(e) => {
            if let negotiate::NegError::Io(io) = &e {
                if let Some(code) = io.raw_os_error() {
                    let lists = log::by_errno::lists(crule_cfg.as_ref(), &s.config);
                    let level = log::by_errno::errno_level(lists, Side::Internal, code);
                    log::by_errno::write(level, || {
                        log::by_errno::client_error(&peer, &local, code)
                    });
                }
            }
            // Dante reads the version byte on its own, so it reports 1 byte for a bad version.
            let n = if matches!(e, negotiate::NegError::UnknownVersion(_)) {
                1
            } else {
                wire.read_total()
            };
            let why = format!(
                "error after reading {n} byte{} in {} seconds: {e}",
                if n == 1 { "" } else { "s" },
                wire.elapsed_secs()
            );
            // A health check hangs up (HAProxy with a reset) once it has its method reply.
            let probe_done = matches!(e, negotiate::NegError::Eof | negotiate::NegError::Io(_));
            if client.probe && probe_done {
                lines::probe_ended(&client.crule, &client.accepted(), &why);
            } else {
                client.accept_closed(false, &why);
            }
            return;
        }
    };
    if log::debugging(1) {
        log::debug(&negotiated_line(&peer, &req));
    }
    client.tally.cmd.set(counters::Cmd::of(req.command));
    client.who = req.user.clone().map(|u| (req.method, u));
    client.pending_pam = auth.pending.borrow_mut().take();
    client.route_creds = auth.route_creds.borrow_mut().take();
    drop(auth);
    if s.rules.needs_groups() {
        if let Some(u) = &req.user {
            req.groups = super::auth::groups_of(u).await;
        }
    }
    match req.command {
        Cmd::Connect => super::connect::run(m, &s, wire, client, req, accepted_us).await,
        Cmd::Bind => super::bind::run(m, &s, wire, client, req, accepted_us).await,
        Cmd::UdpAssociate => super::udp::run(m, &s, wire, client, req, accepted_us).await,
    }
}

/// `send_negotiate(): client C finished negotiate phase for command connect using
/// proxyprotocol socks_v5, method username, user alice; target T`, as Dante's debug line (the
/// method the client and we agreed on; never a password).
fn negotiated_line(peer: &SocketAddr, req: &negotiate::Request) -> String {
    let cmd = match req.command {
        Cmd::Connect => "connect",
        Cmd::Bind => "bind",
        Cmd::UdpAssociate => "udpassociate",
    };
    let user = req
        .user
        .as_ref()
        .map(|u| format!(", user {}", log::escape(u.as_bytes())))
        .unwrap_or_default();
    let target = match &req.target {
        rsockd_proto::TargetAddr::Ip(a) => log::addr(a),
        rsockd_proto::TargetAddr::Domain(n, p) => format!("{}.{p}", log::escape(n.as_bytes())),
    };
    format!(
        "send_negotiate(): client {} finished negotiate phase for command {cmd} using \
         proxyprotocol socks_v{}, method {}{user}; target {target}",
        log::addr(peer),
        req.version,
        req.method.name()
    )
}

/// Reads a trusted balancer's PROXY header, within the global `timeout.negotiate` (no client
/// rule applies before we know the client). `Ok(None)`: a header without addresses. Bytes the
/// client sent after the header stay in `wire` for the SOCKS negotiation.
async fn balancer_header<S: AsyncRead + Unpin>(
    wire: &mut Wire<S>,
    s: &Settings,
) -> Result<Option<SocketAddr>, String> {
    let read = wire.next(proxy::decode_header);
    let res = match s.negotiate_timeout(None) {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(r) => r,
            Err(_) => {
                return Err(format!(
                    "no complete header after reading {} byte{} in {} seconds: negotiate timeout",
                    wire.read_total(),
                    if wire.read_total() == 1 { "" } else { "s" },
                    wire.elapsed_secs()
                ))
            }
        },
        None => read.await,
    };
    let header = res.map_err(|e| {
        format!(
            "error after reading {} byte{}: {e}",
            wire.read_total(),
            if wire.read_total() == 1 { "" } else { "s" }
        )
    })?;
    wire.restart_count();
    // HAProxy sends IPv4 clients as IPv4-mapped IPv6 on IPv6 frontends: rules name them as IPv4.
    Ok(header
        .source
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())))
}

/// Closes with a reset (SO_LINGER 0), as Dante turns away a client over a client rule's limit.
fn reset(stream: TcpStream) {
    if let Ok(std) = stream.into_std() {
        let _ = socket2::SockRef::from(&std).set_linger(Some(std::time::Duration::ZERO));
    }
}
