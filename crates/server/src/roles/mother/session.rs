//! One client, from accept to hand-off: client rules, negotiation, socks rules, resolution,
//! the outgoing connect, and the hand-off of the finished session to a relay process.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use rsockd_config::{Method, Rotation, Rule};
use rsockd_ipc::{Command, Handoff, LogFlags, RuleRef};
use rsockd_proto::{Reply, TargetAddr};
use rsockd_rules::{ClientQuery, Dest, SocksQuery};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Mother;
use crate::log::{self, addr, escape, Line};
use crate::negotiate::{self, Cmd, Wire};
use crate::net::connect::{self, Attempt};
use crate::net::resolve;
use crate::settings::Settings;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn log_flags(rule: Option<&Rule>) -> LogFlags {
    rule.map(|r| r.log).unwrap_or_default()
}

/// Refusal lines are written when the rule logs anything about sessions ending; lines of the
/// implicit rule 0 only at debug level, as Dante does.
fn log_refusal(rule: &RuleRef, line: String) {
    let f = rule.log;
    if rule.number == 0 {
        log::debug(&line);
    } else if f.connect || f.disconnect || f.error {
        log::info(&line);
    }
}

/// Context of one client for its log lines.
struct Client {
    peer: SocketAddr,
    local: SocketAddr,
    crule: RuleRef,
    /// The client's reverse-resolved, forward-confirmed names (only when rules need them).
    names: Vec<String>,
}

impl Client {
    fn accept_closed(&self, pass: bool, reason: &str) {
        log_refusal(
            &self.crule,
            format!(
                "{}{} {}: {reason}",
                Line::verdict(pass, self.crule.number, "tcp", "accept", ']'),
                addr(&self.peer),
                addr(&self.local)
            ),
        );
    }
}

pub async fn handle(m: Rc<Mother>, stream: TcpStream, peer: SocketAddr) {
    let accepted_us = now_us();
    let s = m.settings();
    let Ok(local) = stream.local_addr() else {
        return;
    };
    if s.keepalive() {
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    }
    let names = if s.rules.needs_client_names() {
        resolve::reverse_confirmed(peer.ip()).await
    } else {
        Vec::new()
    };
    let cm = s.rules.client(&ClientQuery {
        src: peer,
        dst: local,
        src_names: &names,
    });
    let crule_cfg = cm.rule.cloned();
    let client = Client {
        peer,
        local,
        crule: RuleRef {
            number: cm.number,
            log: log_flags(cm.rule),
        },
        names,
    };
    if cm.verdict != rsockd_config::Verdict::Pass {
        let why = if cm.number == 0 {
            "no rules matched; using default block rule".to_string()
        } else {
            format!("blocked by client-rule #{}", cm.number)
        };
        client.accept_closed(false, &why);
        return;
    }
    if client.crule.log.connect {
        log::info(&format!(
            "{}{} {}",
            Line::verdict(true, cm.number, "tcp", "accept", '['),
            addr(&peer),
            addr(&local)
        ));
    }
    let methods: Vec<Method> = match &crule_cfg {
        Some(r) if !r.socksmethod.is_empty() => r.socksmethod.clone(),
        _ => s.config.socksmethod.clone(),
    };
    let mut wire = Wire::new(stream);
    let neg = negotiate::negotiate(&mut wire, &methods);
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
    let req = match res {
        Ok(r) => r,
        Err(e) => {
            // Dante reads the version byte on its own, so it reports 1 byte for a bad version.
            let n = if matches!(e, negotiate::NegError::UnknownVersion(_)) {
                1
            } else {
                wire.read_total()
            };
            client.accept_closed(
                false,
                &format!(
                    "error after reading {n} byte{} in {} seconds: {e}",
                    if n == 1 { "" } else { "s" },
                    wire.elapsed_secs()
                ),
            );
            return;
        }
    };
    if req.command != Cmd::Connect {
        let what = match req.command {
            Cmd::Bind => "bind",
            _ => "udpassociate",
        };
        let _ = wire
            .io()
            .write_all(&negotiate::failure_reply(
                req.version,
                Reply::CommandNotSupported,
            ))
            .await;
        client.accept_closed(
            false,
            &format!("command {what} is not supported by rsockd yet"),
        );
        return;
    }
    connect(m, &s, wire, client, req, accepted_us).await;
}

fn choose_source(s: &Settings, target: IpAddr, local: SocketAddr) -> Option<IpAddr> {
    let same_family = |ip: &IpAddr| ip.is_ipv4() == target.is_ipv4();
    match s.config.external_rotation {
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
        Rotation::None => s.externals.iter().copied().find(same_family),
    }
}

async fn fail(wire: &mut Wire<TcpStream>, version: u8, rep: Reply) {
    let _ = wire
        .io()
        .write_all(&negotiate::failure_reply(version, rep))
        .await;
}

async fn connect(
    m: Rc<Mother>,
    s: &Rc<Settings>,
    mut wire: Wire<TcpStream>,
    client: Client,
    req: negotiate::Request,
    accepted_us: u64,
) {
    let cpath = format!("{} {}", addr(&client.peer), addr(&client.local));
    let (name, port, candidates): (Option<String>, u16, Vec<SocketAddr>) = match &req.target {
        TargetAddr::Ip(a) => (None, a.port(), vec![*a]),
        TargetAddr::Domain(name, port) => match resolve::forward(name, *port).await {
            Ok(v) => (Some(name.clone()), *port, v),
            Err(e) => {
                let why = format!(
                    "could not resolve hostname \"{}\": {e}",
                    escape(name.as_bytes())
                );
                log_refusal(
                    &client.crule,
                    format!(
                        "{}{cpath}: {why}",
                        Line::verdict(false, client.crule.number, "tcp", "connect", ']')
                    ),
                );
                client.accept_closed(
                    false,
                    &format!("request was not performed due to error: {why}"),
                );
                fail(&mut wire, req.version, Reply::HostUnreachable).await;
                return;
            }
        },
    };
    let target_text = match &name {
        Some(n) => format!("{}.{port}", escape(n.as_bytes())),
        None => candidates.first().map(addr).unwrap_or_default(),
    };
    let rev_names = match (&name, candidates.first()) {
        (None, Some(a)) if s.rules.needs_target_names() => resolve::reverse_confirmed(a.ip()).await,
        _ => Vec::new(),
    };
    let version = if req.version == 4 {
        rsockd_config::ProxyProtocol::SocksV4
    } else {
        rsockd_config::ProxyProtocol::SocksV5
    };
    // Each address is checked on its own, so a name that resolves to a blocked address never
    // reaches it through a pass rule that matched another of its addresses.
    let mut first_match: Option<(u32, Option<Rule>)> = None;
    let mut passed: Vec<(SocketAddr, u32, Option<Rule>)> = Vec::new();
    for c in &candidates {
        let q = SocksQuery {
            src: client.peer,
            version,
            command: rsockd_config::Command::Connect,
            method: req.method,
            user: req.user.as_deref(),
            dst: Dest {
                ip: Some(c.ip()),
                name: name.as_deref(),
                port,
                names: &rev_names,
            },
        };
        // Socks rules with a host name in `from:` need the client's confirmed names too.
        let mm = if s.rules.needs_client_names() {
            s.rules.socks_with_src_names(&q, &client.names)
        } else {
            s.rules.socks(&q)
        };
        if first_match.is_none() {
            first_match = Some((mm.number, mm.rule.cloned()));
        }
        if mm.verdict == rsockd_config::Verdict::Pass {
            passed.push((*c, mm.number, mm.rule.cloned()));
        }
    }
    let Some((_, snum, srule)) = passed.first().cloned() else {
        let (num, rule) = first_match.unwrap_or((0, None));
        let sref = RuleRef {
            number: num,
            log: log_flags(rule.as_ref()),
        };
        log_refusal(
            &sref,
            format!(
                "{}{cpath} -> 0.0.0.0.0 {target_text}",
                Line::verdict(false, num, "tcp", "connect", ']')
            ),
        );
        let why = if num == 0 {
            "no rules matched; using default block rule".to_string()
        } else {
            format!("blocked by higher-level socks-rule #{num}")
        };
        client.accept_closed(false, &why);
        fail(&mut wire, req.version, Reply::NotAllowed).await;
        return;
    };
    let sref = RuleRef {
        number: snum,
        log: log_flags(srule.as_ref()),
    };
    let attempts: Vec<Attempt> =
        connect::interleave(&passed.iter().map(|p| p.0).collect::<Vec<_>>())
            .into_iter()
            .filter_map(|t| {
                choose_source(s, t.ip(), client.local).map(|src| Attempt {
                    target: t,
                    source: (!src.is_unspecified()).then_some(src),
                })
            })
            .collect();
    if attempts.is_empty() {
        let fam = if passed[0].0.is_ipv6() {
            "IPv6"
        } else {
            "IPv4"
        };
        let why = format!(
            "connect to {fam} address requested, but no {fam} address configured for our usage on the external interface"
        );
        log_refusal(
            &sref,
            format!(
                "{}{cpath} -> 0.0.0.0.0 {target_text}: {why}",
                Line::verdict(false, snum, "tcp", "connect", ']')
            ),
        );
        client.accept_closed(false, &why);
        fail(&mut wire, req.version, Reply::AddressTypeNotSupported).await;
        return;
    }
    let keepalive = s.keepalive();
    let attempt = connect::happy_eyeballs(&attempts, keepalive);
    let result = match s.connect_timeout(srule.as_ref()) {
        Some(t) => match tokio::time::timeout(t, attempt).await {
            Ok(r) => r,
            Err(_) => Err(connect::ConnectError {
                target: attempts[0].target,
                source: attempts[0].source,
                error: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            }),
        },
        None => attempt.await,
    };
    let (target_stream, won) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let ext = SocketAddr::new(e.source.unwrap_or(IpAddr::from([0, 0, 0, 0])), 0);
            let rep = e
                .error
                .raw_os_error()
                .map_or(Reply::GeneralFailure, Reply::from_errno);
            let end = crate::relay::tcp::End::TargetError(e.error);
            let f = sref.log;
            if f.disconnect || f.error {
                log::info(&format!(
                    "{}0 -> {cpath} -> 0, 0 -> {} {} -> 0: {end}.  Session duration: 0s",
                    Line::verdict(true, snum, "tcp", "connect", ']'),
                    addr(&ext),
                    addr(&e.target)
                ));
            }
            if client.crule.log.disconnect || client.crule.log.error {
                log::info(&format!(
                    "{}0 -> {cpath} -> 0: {end}.  Session duration: 0s",
                    Line::verdict(true, client.crule.number, "tcp", "accept", ']'),
                ));
            }
            fail(&mut wire, req.version, rep).await;
            return;
        }
    };
    let external = target_stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(won.source.unwrap_or(IpAddr::from([0, 0, 0, 0])), 0));
    let reply = negotiate::success_reply(req.version, external);
    let (client_stream, prefetched) = wire.into_parts();
    let h = Handoff {
        id: m.next_session_id(),
        command: Command::Connect,
        version: req.version,
        accepted_us,
        client: client.peer,
        internal: client.local,
        external,
        target: won.target,
        target_name: name,
        user: req.user.clone(),
        method: negotiate::wire_method(req.method).unwrap_or(0),
        client_rule: client.crule,
        socks_rule: sref,
        io_timeout: s.io_timeout(srule.as_ref()),
        fin_wait_timeout: s.fin_wait_timeout(srule.as_ref()),
        reply,
        prefetched,
        nfds: 2,
    };
    let to_fd = |t: TcpStream| -> std::io::Result<OwnedFd> { Ok(t.into_std()?.into()) };
    let (cfd, tfd) = match (to_fd(client_stream), to_fd(target_stream)) {
        (Ok(c), Ok(t)) => (c, t),
        _ => {
            log::error(&format!(
                "{cpath}: cannot detach session sockets for hand-off"
            ));
            return;
        }
    };
    if let Err(e) = m.pool.handoff(h, &[cfd.as_fd(), tfd.as_fd()]).await {
        log::error(&format!("{cpath}: session not handed to a relay: {e}"));
        let std_client = std::net::TcpStream::from(cfd);
        let _ = std::io::Write::write_all(
            &mut &std_client,
            &negotiate::failure_reply(req.version, Reply::GeneralFailure),
        );
    }
    // Our copies close here; the relay owns the session now.
}
