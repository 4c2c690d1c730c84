//! BIND: socks rules for the address the peer is expected from, a listening socket on the
//! external side (or, through a SOCKS5 route, the upstream's), and the hand-off of client +
//! listener (or upstream connection). The relay writes both replies, checks the peer and the
//! `bindreply` rules, and relays.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use rsockd_ipc::{Command, Handoff};
use rsockd_proto::Reply;
use tokio::net::TcpStream;

use super::request::{
    self, choose_source, client_options, detach, hand_off, refuse_failed, socket_options, Client,
    Failing,
};
use super::routed::{routed, Routed};
use super::state::Mother;
use crate::log::{self, lines::Subject};
use crate::negotiate::{self, Wire};
use crate::net::chain;
use crate::net::sockets;
use crate::net::sockopts;
use crate::settings::Settings;

/// The port to listen on, as Dante 1.4.2 picks it (observed): the one asked for when the
/// request names no address (0.0.0.0), a privileged one only with `compatibility: sameport`;
/// otherwise one the kernel picks.
fn listen_port(s: &Settings, asked: SocketAddr) -> u16 {
    let port = asked.port();
    if asked.ip().is_unspecified() && (port >= 1024 || (s.config.compat_sameport && port != 0)) {
        port
    } else {
        0
    }
}

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
    let (sref, srule) = (adm.rule, adm.cfg);
    let expected = adm.addr;
    let failing = Failing {
        version: req.version,
        rule: &sref,
        subject: Subject::Bind,
        target: &t.text,
    };
    let command = rsockd_config::Command::Bind;
    let extension = negotiate::is_bind_extension(expected);
    if extension && !s.config.extension_bind {
        let why = "client requested disabled Dante extension: bind";
        refuse_failed(&mut wire, &client, &failing, why, Reply::NotAllowed).await;
        return;
    }
    // The extension's many peers are ours to forward: it is never chained.
    if extension
        && !super::routed::direct_route_ok(&mut wire, s, &client, &failing, command, expected).await
    {
        return;
    }
    let session = Session {
        m: &m,
        s,
        client: &client,
        req: &req,
        accepted_us,
        expected,
        target_name: t.name,
        sref,
        srule: srule.as_ref(),
    };
    if s.rules.has_routes() && !extension {
        let dst = rsockd_rules::Dest {
            ip: Some(expected.ip()),
            name: None,
            port: expected.port(),
            names: &[],
        };
        let ask = |_, _| Ok(chain::Ask::Bind(expected));
        let routed = routed(
            &mut wire,
            s,
            &resolver,
            &client,
            &failing,
            command,
            &dst,
            srule.as_ref(),
            ask,
        )
        .await;
        match routed {
            Routed::Refused => return,
            Routed::Direct => {}
            Routed::Chained(c, _) => {
                // The upstream listens for the peer: our client learns its address, and the
                // relay reads the upstream's second reply.
                let reply = negotiate::success_reply(req.version, c.bound);
                let via = Some((c.upstream, c.bound));
                match detach(c.stream) {
                    Ok(ufd) => session.hand_off(wire, c.bound, reply, via, ufd),
                    Err(e) => log::error(&format!(
                        "{} {}: cannot detach the upstream connection for hand-off: {e}",
                        log::addr(&client.peer),
                        log::addr(&client.local)
                    )),
                }
                return;
            }
        }
    }
    // `redirect from:` names the address (and port) to listen on.
    let from = srule.as_ref().and_then(|r| r.redirect_from);
    let fam = if expected.is_ipv6() { "IPv6" } else { "IPv4" };
    let ip = match from {
        Some(f) if f.ip.is_ipv4() == expected.is_ipv4() => Some(f.ip),
        Some(f) => {
            let why = format!(
                "bind to {fam} address requested, but 'redirect from: {}' of socks-rule #{} is of the other family",
                f.ip, sref.number
            );
            let rep = Reply::AddressTypeNotSupported;
            refuse_failed(&mut wire, &client, &failing, &why, rep).await;
            return;
        }
        None => choose_source(s, expected.ip(), client.local),
    };
    let Some(ip) = ip else {
        let why = format!(
            "bind to {fam} address requested, but no {fam} address configured for our usage on the external interface"
        );
        let rep = Reply::AddressTypeNotSupported;
        refuse_failed(&mut wire, &client, &failing, &why, rep).await;
        return;
    };
    let fixed_port = from.and_then(|f| f.port);
    // With the extension Dante tries the port the client's control connection comes from.
    let port = if extension {
        let p = client.peer.port();
        if p >= 1024 || s.config.compat_sameport {
            p
        } else {
            0
        }
    } else {
        listen_port(s, expected)
    };
    let want = SocketAddr::new(ip, fixed_port.unwrap_or(port));
    // A port the client asked for that is taken falls back to one the kernel picks: the client
    // learns the real port from the reply either way. A port the rule fixes does not.
    let bound = sockets::bind_listener(want).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse && want.port() != 0 && fixed_port.is_none() {
            sockets::bind_listener(SocketAddr::new(ip, 0))
        } else {
            Err(e)
        }
    });
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let why = format!("bind(2) of {} failed: {e}", log::addr(&want));
            let rep = e
                .raw_os_error()
                .map_or(Reply::GeneralFailure, Reply::from_errno);
            refuse_failed(&mut wire, &client, &failing, &why, rep).await;
            return;
        }
    };
    let bound = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(want);
    let announced = s
        .config
        .announce_bind
        .filter(|a| a.is_ipv4() == bound.is_ipv4() || req.version == 5)
        .map_or(bound, |a: IpAddr| SocketAddr::new(a, bound.port()));
    // The peer's connection is accepted from this socket and inherits its options.
    socket_options(
        s,
        srule.as_ref(),
        std::os::fd::AsFd::as_fd(&listener),
        rsockd_config::Side::External,
        sockopts::Kind::Tcp,
        bound.is_ipv6(),
    );
    let reply = negotiate::success_reply(req.version, announced);
    session.hand_off(wire, bound, reply, None, listener.into());
}

/// What a BIND's hand-off carries, direct or chained.
struct Session<'a> {
    m: &'a Mother,
    s: &'a Settings,
    client: &'a Client,
    req: &'a negotiate::Request,
    accepted_us: u64,
    expected: SocketAddr,
    target_name: Option<String>,
    sref: rsockd_ipc::RuleRef,
    srule: Option<&'a rsockd_config::Rule>,
}

impl Session<'_> {
    /// Hands client + `second` (our listener, or the upstream connection when `via` names
    /// the upstream and what it bound) to a relay.
    fn hand_off(
        self,
        wire: Wire<TcpStream>,
        external: SocketAddr,
        reply: Vec<u8>,
        via: Option<(SocketAddr, SocketAddr)>,
        second: std::os::fd::OwnedFd,
    ) {
        let (s, client, req) = (self.s, self.client, self.req);
        let (client_stream, prefetched) = wire.into_parts();
        let id = self.m.next_session_id();
        let (accepted_us, sref) = (self.accepted_us, self.sref);
        let h = Handoff {
            monitor: s
                .rules
                .monitor(client.peer, rsockd_config::Command::Bind, self.expected)
                .unwrap_or(0),
            external,
            target: self.expected,
            io_timeout: s.io_timeout(self.srule),
            fin_wait_timeout: s.fin_wait_timeout(self.srule),
            reply,
            via,
            nfds: 2,
            ..client.handoff(
                req,
                id,
                Command::Bind,
                accepted_us,
                sref,
                self.target_name,
                prefetched,
            )
        };
        client_options(&client_stream, self.srule);
        match detach(client_stream) {
            Ok(cfd) => hand_off(self.m, client, h, cfd, vec![second]),
            Err(e) => log::error(&format!(
                "{} {}: cannot detach the client socket for hand-off: {e}",
                log::addr(&client.peer),
                log::addr(&client.local)
            )),
        }
    }
}
