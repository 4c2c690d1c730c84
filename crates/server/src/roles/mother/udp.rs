//! UDP ASSOCIATE: the request-time socks rules, the client-side relay socket (on the address
//! the client connected to, port from `udp.portrange`), one external socket per address family
//! we have an `external:` address of, and the hand-off of control connection + sockets. The
//! relay checks every datagram against the rules. Through a SOCKS5 route, the one external
//! socket sends to the upstream's UDP relay, and the upstream's control connection goes to the
//! relay with the rest (its end ends the association).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use rsockd_ipc::{Command, Handoff};
use rsockd_proto::Reply;
use tokio::net::TcpStream;

use super::request::{
    self, choose_source, detach, hand_off, refuse_failed, socket_options, Client, Failing,
};
use super::routed::{routed, Routed};
use super::state::Mother;
use crate::log::{self, lines::Subject};
use crate::negotiate::{self, Wire};
use crate::net::chain;
use crate::net::sockets;
use crate::net::sockopts;
use crate::settings::Settings;
use rsockd_config::Side;

pub(super) async fn run(
    m: Rc<Mother>,
    s: &Rc<Settings>,
    mut wire: Wire<TcpStream>,
    client: Client,
    req: negotiate::Request,
    accepted_us: u64,
) {
    let resolver = crate::net::resolve::SystemResolver;
    let Some(request::Opened {
        target: t,
        admitted: adm,
        ..
    }) = request::open(&mut wire, s, &resolver, &client, &req).await
    else {
        return;
    };
    let Some(&expected) = t.candidates.first() else {
        return;
    };
    let (sref, srule) = (adm.rule, adm.cfg);
    let failing = Failing {
        version: req.version,
        rule: &sref,
        subject: Subject::UdpAssociate,
        target: &t.text,
    };
    let seed = m.next_session_id();
    let range = srule.as_ref().and_then(|r| r.udp_portrange);
    let csock = match sockets::bind_udp(SocketAddr::new(client.local.ip(), 0), range, seed) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot create the client-side UDP socket: {e}");
            let rep = e
                .raw_os_error()
                .map_or(Reply::GeneralFailure, Reply::from_errno);
            refuse_failed(&mut wire, &client, &failing, &why, rep).await;
            return;
        }
    };
    socket_options(
        s,
        srule.as_ref(),
        std::os::fd::AsFd::as_fd(&csock),
        Side::Internal,
        sockopts::Kind::Udp,
        client.local.is_ipv6(),
    );
    let relay_addr = csock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(client.local);
    let session = Session {
        m: &m,
        s,
        client: &client,
        req: &req,
        accepted_us,
        seed,
        expected,
        target_name: t.name,
        sref,
        srule: srule.as_ref(),
    };
    if s.rules.has_routes() {
        match through_upstream(&mut wire, &session, &failing, &resolver).await {
            Through::Refused => return,
            Through::Direct => {}
            Through::Upstream { ext, upstream, via } => {
                let external = ext
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(via.0);
                let fds = vec![csock.into(), ext.into(), upstream];
                let reply = negotiate::success_reply(req.version, announced(s, relay_addr));
                session.hand_off(wire, external, reply, Some(via), fds);
                return;
            }
        }
    }
    // One external socket per family: targets of either family can be reached from one
    // association, as a host name in a datagram may resolve to either.
    let mut exts = Vec::new();
    let probes = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    // `redirect from:` picks the external address (and port) of its family.
    let from = srule.as_ref().and_then(|r| r.redirect_from);
    for probe in probes {
        let fixed = from.filter(|f| f.ip.is_ipv4() == probe.is_ipv4());
        let Some(ip) = fixed
            .map(|f| f.ip)
            .or_else(|| choose_source(s, probe, client.local))
        else {
            continue;
        };
        let bound = match fixed.and_then(|f| f.port) {
            Some(port) => sockets::udp_on(SocketAddr::new(ip, port)),
            // draft-05's USECLIENTSPORT: the client's port when it is free, else any.
            None => match draft505_port(s, &req, expected) {
                Some(port) if ip.is_ipv4() == expected.is_ipv4() => {
                    sockets::udp_on(SocketAddr::new(ip, port))
                        .or_else(|_| sockets::bind_udp_fixed(ip))
                }
                _ => sockets::bind_udp_fixed(ip),
            },
        };
        match bound {
            Ok(x) => {
                let fd = std::os::fd::AsFd::as_fd(&x);
                let v6 = ip.is_ipv6();
                socket_options(
                    s,
                    srule.as_ref(),
                    fd,
                    Side::External,
                    sockopts::Kind::Udp,
                    v6,
                );
                exts.push(x);
            }
            Err(e) => {
                let why = format!("cannot create the external UDP socket on {ip}: {e}");
                let rep = e
                    .raw_os_error()
                    .map_or(Reply::GeneralFailure, Reply::from_errno);
                refuse_failed(&mut wire, &client, &failing, &why, rep).await;
                return;
            }
        }
    }
    let Some(external) = exts
        .first()
        .and_then(|x| x.local_addr().ok())
        .and_then(|a| a.as_socket())
    else {
        let why = "no address configured for our usage on the external interface";
        let rep = Reply::GeneralFailure;
        refuse_failed(&mut wire, &client, &failing, why, rep).await;
        return;
    };
    let mut fds = vec![csock.into()];
    fds.extend(exts.into_iter().map(Into::into));
    let mut reply = negotiate::success_reply(req.version, announced(s, relay_addr));
    // Dante sets the flag in the reply when the client's port was got.
    if draft505_port(s, &req, expected).is_some_and(|p| p == external.port()) {
        if let Some(b) = reply.get_mut(2) {
            *b = rsockd_proto::socks5::FLAG_USECLIENTSPORT;
        }
    }
    session.hand_off(wire, external, reply, None, fds);
}

/// Where a UDP ASSOCIATE goes when routes exist.
enum Through {
    Direct,
    Refused,
    /// Through a SOCKS5 upstream: our external socket (its address told to the upstream), the
    /// upstream's control connection, and the upstream with its UDP relay.
    Upstream {
        ext: socket2::Socket,
        upstream: std::os::fd::OwnedFd,
        via: (SocketAddr, SocketAddr),
    },
}

/// The routes' way for an association: the external socket is bound before each upstream is
/// asked, so that the upstream is told where our datagrams come from.
async fn through_upstream(
    wire: &mut Wire<TcpStream>,
    session: &Session<'_>,
    failing: &Failing<'_>,
    resolver: &crate::net::resolve::SystemResolver,
) -> Through {
    let (s, client, expected) = (session.s, session.client, session.expected);
    let dst = rsockd_rules::Dest {
        ip: Some(expected.ip()),
        name: None,
        port: expected.port(),
        names: &[],
    };
    let mut ext: Option<socket2::Socket> = None;
    let ask = |upstream: SocketAddr, source: Option<IpAddr>| {
        let ip = source.unwrap_or(if upstream.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let x = sockets::bind_udp_fixed(ip).map_err(|e| chain::ChainError {
            reply: e
                .raw_os_error()
                .map_or(Reply::GeneralFailure, Reply::from_errno),
            text: format!("cannot create the external UDP socket on {ip}: {e}"),
            upstream_failed: false,
        })?;
        let a = x
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(SocketAddr::new(ip, 0));
        ext = Some(x);
        Ok(chain::Ask::Udp(a))
    };
    let command = rsockd_config::Command::UdpAssociate;
    let routed = routed(
        wire,
        s,
        resolver,
        client,
        failing,
        command,
        &dst,
        session.srule,
        ask,
    )
    .await;
    let why = match (routed, ext) {
        (Routed::Refused, _) => return Through::Refused,
        (Routed::Direct, _) => return Through::Direct,
        // Our socket is of the control connection's family, as the address we told it is.
        (Routed::Chained(c, _), Some(_)) if c.bound.is_ipv4() != c.upstream.is_ipv4() => (
            format!(
                "serverchain failed: proxy server {} named a UDP relay of the other address \
                 family, {}",
                log::addr(&c.upstream),
                log::addr(&c.bound)
            ),
            Reply::AddressTypeNotSupported,
        ),
        (Routed::Chained(c, _), Some(x)) => {
            socket_options(
                s,
                session.srule,
                std::os::fd::AsFd::as_fd(&x),
                Side::External,
                sockopts::Kind::Udp,
                c.upstream.is_ipv6(),
            );
            match detach(c.stream) {
                Ok(upstream) => {
                    return Through::Upstream {
                        ext: x,
                        upstream,
                        via: (c.upstream, c.bound),
                    }
                }
                Err(e) => (
                    format!("cannot detach the upstream connection for hand-off: {e}"),
                    Reply::GeneralFailure,
                ),
            }
        }
        // Cannot happen: a chained request was asked for with the socket made.
        (Routed::Chained(..), None) => (
            "serverchain failed: no external UDP socket for the upstream".to_string(),
            Reply::GeneralFailure,
        ),
    };
    refuse_failed(wire, client, failing, &why.0, why.1).await;
    Through::Refused
}

/// The address our reply names for the client's datagrams.
fn announced(s: &Settings, relay_addr: SocketAddr) -> SocketAddr {
    s.config
        .announce_udp
        .map_or(relay_addr, |a| SocketAddr::new(a, relay_addr.port()))
}

/// What an association's hand-off carries, direct or chained.
struct Session<'a> {
    m: &'a Mother,
    s: &'a Settings,
    client: &'a Client,
    req: &'a negotiate::Request,
    accepted_us: u64,
    seed: u64,
    expected: SocketAddr,
    target_name: Option<String>,
    sref: rsockd_ipc::RuleRef,
    srule: Option<&'a rsockd_config::Rule>,
}

impl Session<'_> {
    /// Hands the control connection and `fds` (client-side socket, external sockets, and the
    /// upstream's control connection when `via` names the upstream and its relay) to a relay.
    fn hand_off(
        self,
        wire: Wire<TcpStream>,
        external: SocketAddr,
        reply: Vec<u8>,
        via: Option<(SocketAddr, SocketAddr)>,
        fds: Vec<std::os::fd::OwnedFd>,
    ) {
        let (s, client, req) = (self.s, self.client, self.req);
        let (control, prefetched) = wire.into_parts();
        let (accepted_us, sref) = (self.accepted_us, self.sref);
        let h = Handoff {
            // Monitors watch TCP sessions (the config refuses `protocol: udp` in one).
            monitor: 0,
            external,
            // The address the client said it will send from (0.0.0.0.0: the first sender).
            target: self.expected,
            io_timeout: s.io_udp_timeout(self.srule),
            fin_wait_timeout: 0,
            reply,
            via,
            nfds: 1 + fds.len() as u8,
            ..client.handoff(
                req,
                self.seed,
                Command::UdpAssociate,
                accepted_us,
                sref,
                self.target_name,
                prefetched,
            )
        };
        match detach(control) {
            Ok(cfd) => hand_off(self.m, client, h, cfd, fds),
            Err(e) => log::error(&format!(
                "{} {}: cannot detach the control connection for hand-off: {e}",
                log::addr(&client.peer),
                log::addr(&client.local)
            )),
        }
    }
}

/// With `compatibility: draft-5.05`, the port a SOCKS5 client flagged USECLIENTSPORT asks
/// for on the external side: the one it says it sends from (a privileged one only with
/// `compatibility: sameport`). Dante reads the flag only then: other clients (NEC's) use the
/// same bit for something else.
fn draft505_port(s: &Settings, req: &negotiate::Request, from: SocketAddr) -> Option<u16> {
    let flagged = req.version == 5 && req.flag & rsockd_proto::socks5::FLAG_USECLIENTSPORT != 0;
    let port = from.port();
    (s.config.compat_draft505 && flagged && port != 0 && (port >= 1024 || s.config.compat_sameport))
        .then_some(port)
}
