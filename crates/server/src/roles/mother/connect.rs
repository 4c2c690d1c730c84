//! CONNECT: the outgoing connect to the admitted addresses (Happy Eyeballs from the chosen
//! external address), and the hand-off of the connected pair.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use rsockd_config::Rule;
use rsockd_ipc::{Command, Handoff, RuleRef};
use rsockd_proto::Reply;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::request::{
    self, choose_source_for, client_options, detach, fail, hand_off, refuse_failed, Client,
    Failing, Resolved,
};
use super::routed::{routed, Routed};
use super::state::Mother;
use crate::log::lines::Subject;
use crate::log::{self, addr};
use crate::negotiate::{self, Wire};
use crate::net::chain;
use crate::net::connect::{self, Attempt, Connector, HappyEyeballs};
use crate::net::resolve::{Resolver, SystemResolver};
use crate::settings::Settings;
use rsockd_config::Side;

/// A CONNECT that reached its target.
pub(super) struct Connected {
    pub target: TcpStream,
    pub won: Attempt,
    pub rule: RuleRef,
    pub rule_cfg: Option<Rule>,
    pub resolved: Resolved,
    /// Through an upstream proxy: it and the address it bound (the reply announces that).
    pub via: Option<(SocketAddr, SocketAddr)>,
}

pub(super) async fn run(
    m: Rc<Mother>,
    s: &Rc<Settings>,
    mut wire: Wire<TcpStream>,
    client: Client,
    req: negotiate::Request,
    accepted_us: u64,
) {
    let resolver = SystemResolver;
    let Some(c) = establish(&mut wire, s, &resolver, &HappyEyeballs, &client, &req).await else {
        return;
    };
    let Connected {
        target: target_stream,
        won,
        rule: sref,
        rule_cfg: srule,
        resolved: t,
        via,
    } = c;
    let external = target_stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(won.source.unwrap_or(IpAddr::from([0, 0, 0, 0])), 0));
    // A chained session announces what the upstream bound, as Dante does.
    let reply = negotiate::success_reply(req.version, via.map_or(external, |(_, b)| b));
    let (client_stream, prefetched) = wire.into_parts();
    let id = m.next_session_id();
    let h = Handoff {
        monitor: s
            .rules
            .monitor(client.peer, rsockd_config::Command::Connect, won.target)
            .unwrap_or(0),
        external,
        target: if via.is_some() {
            t.candidates
                .first()
                .copied()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], t.port)))
        } else {
            won.target
        },
        io_timeout: s.io_timeout(srule.as_ref()),
        fin_wait_timeout: s.fin_wait_timeout(srule.as_ref()),
        reply,
        via,
        nfds: 2,
        ..client.handoff(
            &req,
            id,
            Command::Connect,
            accepted_us,
            sref,
            t.name,
            prefetched,
        )
    };
    client_options(&client_stream, srule.as_ref());
    let lists = log::by_errno::lists(srule.as_ref(), &s.config);
    if log::by_errno::watches_tcp_options(lists) {
        use std::os::fd::AsFd;
        let sides = [
            (Side::Internal, &client_stream, client.peer, client.local),
            (Side::External, &target_stream, external, won.target),
        ];
        for (side, stream, a, b) in sides {
            if let Ok(ti) = rsockd_sys::sockopt::tcp_info(stream.as_fd()) {
                let who = format!("the connection {} -> {}", addr(&a), addr(&b));
                log::by_errno::tcp_options(lists, side, ti.options, &who);
            }
        }
    }
    let (cfd, tfd) = match (detach(client_stream), detach(target_stream)) {
        (Ok(c), Ok(t)) => (c, t),
        _ => {
            log::error(&format!(
                "{} {}: cannot detach session sockets for hand-off",
                client.peer_text(),
                addr(&client.local)
            ));
            return;
        }
    };
    hand_off(&m, &client, h, cfd, vec![tfd]);
}

/// Resolve, rules, connect: the target connection of a CONNECT, or None after the request was
/// refused (logged and answered on `wire`).
pub(super) async fn establish<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    s: &Settings,
    resolver: &impl Resolver,
    connector: &impl Connector,
    client: &Client,
    req: &negotiate::Request,
) -> Option<Connected> {
    let request::Opened {
        target: t,
        checked,
        admitted: adm,
    } = request::open(wire, s, resolver, client, req).await?;
    let (sref, srule) = (adm.rule, adm.cfg);
    if s.rules.has_routes() {
        let first = checked.passed.first().map(|p| p.0);
        let dst = rsockd_rules::Dest {
            ip: if t.unresolved.is_none() {
                first.map(|a| a.ip())
            } else {
                None
            },
            name: t.name.as_deref(),
            port: t.port,
            names: &t.rev_names,
        };
        let target = match (&t.name, first) {
            (Some(n), _) => chain::Target::Name(n.clone(), t.port),
            (None, Some(a)) => chain::Target::Addr(a),
            (None, None) => chain::Target::Addr(SocketAddr::from(([0, 0, 0, 0], t.port))),
        };
        let failing = Failing {
            version: req.version,
            rule: &sref,
            subject: Subject::Connect,
            target: &t.text,
        };
        let command = rsockd_config::Command::Connect;
        let ask = |_, _| Ok(chain::Ask::Connect(target.clone()));
        match routed(
            wire,
            s,
            resolver,
            client,
            &failing,
            command,
            &dst,
            srule.as_ref(),
            ask,
        )
        .await
        {
            Routed::Refused => return None,
            Routed::Chained(c, won) => {
                return Some(Connected {
                    target: c.stream,
                    won,
                    rule: sref,
                    rule_cfg: srule,
                    resolved: t,
                    via: Some((c.upstream, c.bound)),
                })
            }
            Routed::Direct => {}
        }
    }
    if let Some(why) = &t.unresolved {
        // Only an upstream could have resolved it.
        request::refuse_unresolved(wire, client, req.version, Subject::Connect, why).await;
        return None;
    }
    let (redirect_from, redirect_to) = srule
        .as_ref()
        .map_or((None, None), |r| (r.redirect_from, r.redirect_to));
    // Rules were checked against the requested target; `redirect to:` replaces it after.
    let targets = match redirect_to {
        Some(r) => vec![SocketAddr::new(r.ip, r.port.unwrap_or(t.port))],
        None => connect::interleave(&checked.passed.iter().map(|p| p.0).collect::<Vec<_>>()),
    };
    // Who the session is, for `external.rotation: user`.
    let who = client
        .who
        .as_ref()
        .map_or_else(|| client.peer.ip().to_string(), |w| w.1.clone());
    let attempts: Vec<Attempt> = targets
        .iter()
        .filter_map(|&t| match redirect_from {
            Some(f) => (f.ip.is_ipv4() == t.is_ipv4()).then_some(Attempt {
                target: t,
                source: Some(f.ip),
                source_port: f.port.unwrap_or(0),
            }),
            None => choose_source_for(s, t.ip(), client.local, Some(&who)).map(|src| Attempt {
                target: t,
                source: (!src.is_unspecified()).then_some(src),
                source_port: 0,
            }),
        })
        .collect();
    if attempts.is_empty() {
        let fam = if targets.first().is_some_and(|t| t.is_ipv6()) {
            "IPv6"
        } else {
            "IPv4"
        };
        let why = match redirect_from {
            Some(f) => format!(
                "connect to {fam} address requested, but 'redirect from: {}' of socks-rule #{} is of the other family",
                f.ip, sref.number
            ),
            None => format!(
                "connect to {fam} address requested, but no {fam} address configured for our usage on the external interface"
            ),
        };
        let failing = Failing {
            version: req.version,
            rule: &sref,
            subject: Subject::Connect,
            target: &t.text,
        };
        let rep = Reply::AddressTypeNotSupported;
        refuse_failed(wire, client, &failing, &why, rep).await;
        return None;
    }
    if redirect_from.is_some() || redirect_to.is_some() {
        let from = redirect_from.map(|f| SocketAddr::new(f.ip, f.port.unwrap_or(0)));
        let to = redirect_to.map(|_| attempts[0].target);
        client
            .request(Subject::Connect)
            .redirected(&sref, &t.text, from, to);
    }
    let mut out = connect::Outgoing::new(s.keepalive(), &s.config.sockopts, srule.as_ref());
    out.freebind = !s.config.external_prefixes.is_empty();
    let errlogs = log::by_errno::lists(srule.as_ref(), &s.config);
    let in_progress = log::by_errno::errno_level(errlogs, Side::External, libc::EINPROGRESS);
    for a in &attempts {
        log::by_errno::write(in_progress, || {
            log::by_errno::connect_in_progress(&a.target)
        });
    }
    if log::debugging(1) {
        for a in &attempts {
            log::debug(&format!(
                "socks_connecthost(): connect to {} from {}, for client {}",
                log::addr(&a.target),
                a.source
                    .map_or_else(|| "any address".to_string(), |ip| ip.to_string()),
                log::addr(&client.peer)
            ));
        }
    }
    let attempt = connector.connect(&attempts, &out);
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
        Ok(ok) => {
            if log::debugging(1) {
                let local = ok.0.local_addr().map(|a| log::addr(&a)).unwrap_or_default();
                let peer = ok.0.peer_addr().map(|a| log::addr(&a)).unwrap_or_default();
                log::debug(&format!(
                    "connectstatus(): connect to {peer} from {local} completed successfully"
                ));
            }
            ok
        }
        Err(e) => {
            if let Some(code) = e.error.raw_os_error() {
                let level = log::by_errno::errno_level(errlogs, Side::External, code);
                log::by_errno::write(level, || {
                    let text = nix::errno::Errno::from_raw(code).desc();
                    log::by_errno::connect_failed(&e.target, text)
                });
            }
            let ext = SocketAddr::new(e.source.unwrap_or(IpAddr::from([0, 0, 0, 0])), 0);
            let rep = e
                .error
                .raw_os_error()
                .map_or(Reply::GeneralFailure, Reply::from_errno);
            let end = crate::relay::tcp::End::TargetError(e.error);
            client.request(Subject::Connect).connect_failed(
                &sref,
                &client.crule,
                &ext,
                &e.target,
                &end,
            );
            fail(wire, req.version, rep).await;
            return None;
        }
    };
    Some(Connected {
        target: target_stream,
        won,
        rule: sref,
        rule_cfg: srule,
        resolved: t,
        via: None,
    })
}
