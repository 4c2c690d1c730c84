//! Dante's BIND extension (`extension: bind`, a BIND naming 255.255.255.255): the listening
//! socket takes every peer until the client closes its control connection. Each peer that a
//! `bindreply` rule admits is forwarded on a connection of its own from our internal address
//! to the address the client's control connection comes from (where Dante's client library
//! listens, on the same port as its control connection); the
//! client then asks on the control connection, with a SOCKS request naming the address it
//! saw that connection come from, who the peer is, and the answer (the peer's address, or
//! 0.0.0.0:0 for a connection we did not make) starts the relay between peer and forwarded
//! connection. Dante's client library (socksify) speaks this; see Raccept/sockd_request in
//! Dante 1.4.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rsockd_config::{Command, Verdict};
use rsockd_ipc::{Handoff, RuleRef};
use rsockd_proto::{socks4, socks5, Reply, TargetAddr};
use rsockd_rules::{Dest, SocksQuery};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::query::{method_of, version_of};
use crate::log::lines::{self, Subject, View};
use crate::log::{self, addr};
use crate::relay::tcp::{self, End, Stats};

/// How long connecting back to the client may take (Dante: the rule's `timeout.connect`).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// A query is one SOCKS request; more unanswered bytes than this end the session.
const QUERY_MAX: usize = 1024;

/// What became of a peer.
enum Admitted {
    Forwarded(Pending),
    /// Refused by the rules (logged).
    Refused,
    /// The connection back to the client failed: the BIND ends, as in Dante.
    Failed(View, String),
}

/// A forwarded peer waiting for the client's query.
struct Pending {
    peer: TcpStream,
    peer_addr: SocketAddr,
    forward: TcpStream,
    view: View,
}

/// The whole extended BIND, once the first reply is sent; returns when the client closed its
/// control connection and every forwarded session it started has ended.
pub(super) async fn run(
    h: &Handoff,
    client: TcpStream,
    listener: TcpListener,
    bind_view: &View,
    stats: &Stats,
) {
    // Dante 1.4.2 connects back to the address the control connection comes from (its
    // client library listens there), not to the port in the request (observed).
    let fwd_dst = h.client;
    let mut pending: HashMap<SocketAddr, Pending> = HashMap::new();
    let mut relays: JoinSet<Stats> = JoinSet::new();
    let mut query = Vec::new();
    let end = loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((peer, peer_addr)) => {
                    let peer_addr = SocketAddr::new(peer_addr.ip().to_canonical(), peer_addr.port());
                    match admit(h, peer, peer_addr, fwd_dst).await {
                        Admitted::Forwarded(p) => {
                            if let Ok(local) = p.forward.local_addr() {
                                pending.insert(local, p);
                            }
                        }
                        Admitted::Refused => {}
                        Admitted::Failed(view, why) => {
                            lines::bind_forward_failed(h, bind_view, &view, &why);
                            drop(listener);
                            drop(pending);
                            while let Some(done) = relays.join_next().await {
                                add(stats, done.ok());
                            }
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => break End::TargetError(e),
            },
            r = client.readable() => {
                if let Err(e) = r {
                    break End::ClientError(e);
                }
                let mut buf = [0u8; 512];
                match client.try_read(&mut buf) {
                    Ok(0) => break End::ClientClosed,
                    Ok(n) => query.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => break End::ClientError(e),
                }
                match answer(h, &client, &mut query, &mut pending).await {
                    Ok(Some(p)) => start(&mut relays, h, p),
                    Ok(None) => {}
                    Err(e) => break e,
                }
            }
            Some(done) = relays.join_next(), if !relays.is_empty() => add(stats, done.ok()),
        }
    };
    // No more peers; those not yet asked for are closed with the listening socket.
    drop(listener);
    drop(pending);
    lines::bind_ended(h, bind_view, &end);
    while let Some(done) = relays.join_next().await {
        add(stats, done.ok());
    }
}

fn add(total: &Stats, s: Option<Stats>) {
    if let Some(s) = s {
        for (t, v) in [
            (&total.from_client, &s.from_client),
            (&total.to_client, &s.to_client),
            (&total.from_target, &s.from_target),
            (&total.to_target, &s.to_target),
        ] {
            t.set(t.get() + v.get());
        }
    }
}

/// The peer's `bindreply` rule check and the connection back to the client.
async fn admit(
    h: &Handoff,
    peer: TcpStream,
    peer_addr: SocketAddr,
    fwd_dst: SocketAddr,
) -> Admitted {
    let Some(settings) = crate::settings::Settings::current() else {
        return Admitted::Refused;
    };
    let q = SocksQuery {
        src: peer_addr,
        version: version_of(h),
        command: Command::BindReply,
        method: method_of(h.method),
        user: h.user.as_deref(),
        groups: &h.groups,
        dst: Dest {
            ip: Some(fwd_dst.ip()),
            name: None,
            port: fwd_dst.port(),
            names: &[],
        },
    };
    let m = settings.rules.socks(&q);
    let rule = RuleRef {
        number: m.number,
        log: m.rule.map(|r| r.log).unwrap_or_default(),
    };
    let mut view = View {
        subject: Subject::BindReply,
        rule,
        path: [
            addr(&peer_addr),
            addr(&h.external),
            addr(&SocketAddr::new(h.internal.ip(), 0)),
            addr(&fwd_dst),
        ],
    };
    if m.verdict != Verdict::Pass {
        lines::bind_reply_blocked(&view, &peer_addr);
        tcp::reset_on_close(&peer);
        return Admitted::Refused;
    }
    let sock = if fwd_dst.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let from = SocketAddr::new(h.internal.ip(), 0);
    let sock = match sock.and_then(|s| s.bind(from).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            tcp::reset_on_close(&peer);
            return Admitted::Failed(view, format!("bind(2) of {} failed: {e}", addr(&from)));
        }
    };
    let local = sock.local_addr().unwrap_or(from);
    // Dante's words name the socket that failed: `0.0.0.0.0 local` in the path.
    view.path[2] = addr(&SocketAddr::from(([0, 0, 0, 0], 0)));
    view.path[3] = addr(&local);
    let connected = tokio::time::timeout(FORWARD_TIMEOUT, sock.connect(fwd_dst))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)));
    let forward = match connected {
        Ok(f) => f,
        Err(e) => {
            tcp::reset_on_close(&peer);
            let why = format!(
                "connect(2) to {} from {} failed: {}",
                addr(&fwd_dst),
                addr(&local),
                log::errno_text(&e)
            );
            return Admitted::Failed(view, why);
        }
    };
    // Once connected, the lines name the forwarded connection: `peer bound -> local client`.
    view.path[2] = addr(&local);
    view.path[3] = addr(&fwd_dst);
    let _ = forward.set_nodelay(true);
    Admitted::Forwarded(Pending {
        peer,
        peer_addr,
        forward,
        view,
    })
}

/// Answers a complete query on the control connection; the pending peer it names, if any.
async fn answer(
    h: &Handoff,
    client: &TcpStream,
    query: &mut Vec<u8>,
    pending: &mut HashMap<SocketAddr, Pending>,
) -> Result<Option<Pending>, End> {
    let bad = |what: String| End::ClientError(std::io::Error::other(what));
    let decoded = if h.version == 4 {
        socks4::decode_request(query)
            .map(|r| r.map(|(r, n)| (r.dst, n)))
            .map_err(|e| e.to_string())
    } else {
        socks5::decode_request(query)
            .map(|r| r.map(|(r, n)| (r.dst, n)))
            .map_err(|e| e.to_string())
    };
    let asked = match decoded {
        Ok(Some((dst, n))) => {
            query.drain(..n);
            Some(match dst {
                TargetAddr::Ip(a) => SocketAddr::new(a.ip().to_canonical(), a.port()),
                // A name cannot be one of our connections.
                TargetAddr::Domain(..) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            })
        }
        Ok(None) => None,
        Err(e) => return Err(bad(format!("bad bind query: {e}"))),
    };
    let Some(asked) = asked else {
        if query.len() > QUERY_MAX {
            return Err(bad("bind query too long".into()));
        }
        return Ok(None);
    };
    let found = pending.remove(&asked);
    let peer = found
        .as_ref()
        .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |p| {
            p.peer_addr
        });
    let reply = if h.version == 4 {
        let v4 = match peer {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        };
        socks4::encode_reply(socks4::Socks4Reply::Granted, v4).to_vec()
    } else {
        socks5::encode_reply(Reply::Succeeded, &TargetAddr::Ip(peer))
    };
    tcp::send_all(client, &reply)
        .await
        .map_err(End::ClientError)?;
    Ok(found)
}

/// Relays a peer and its forwarded connection until either ends, with the bindreply lines.
fn start(relays: &mut JoinSet<Stats>, h: &Handoff, p: Pending) {
    let h = h.clone();
    relays.spawn_local(async move {
        let stats = Stats::default();
        p.view.opened();
        let io_timeout = (h.io_timeout > 0).then(|| Duration::from_secs(h.io_timeout.into()));
        let opts = tcp::Options {
            io_timeout,
            fin_wait: (h.fin_wait_timeout > 0)
                .then(|| Duration::from_secs(h.fin_wait_timeout.into())),
            see_bytes: p.view.rule.log.data || p.view.rule.log.iooperation,
            pace: None,
        };
        // The forwarded connection plays the client's part: the lines run peer -> client.
        let on_data = |dir, bytes: &[u8]| p.view.io(dir == tcp::Dir::TargetToClient, bytes);
        let end = tcp::relay(&p.forward, &p.peer, &stats, opts, &on_data).await;
        lines::bind_forward_closed(&h, &p.view, &stats, end);
        stats
    });
}
