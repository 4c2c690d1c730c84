//! A BIND session in a relay: the first reply (our listening address, or a SOCKS5 upstream's
//! when the BIND is chained), the wait for the peer (on our listener, or for the upstream's
//! second reply), the peer's address and `bindreply` rule checks, the second reply, then a TCP
//! relay between client and peer (or upstream).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rsockd_config::{Command, Verdict};
use rsockd_ipc::{Handoff, RuleRef};
use rsockd_proto::Reply;
use rsockd_rules::{Dest, SocksQuery};
use tokio::net::{TcpListener, TcpStream};

use super::connect::to_stream;
use super::query::{method_of, version_of};
use crate::log;
use crate::log::lines::{self, View};
use crate::negotiate;
use crate::net::chain;
use crate::relay::tcp::{self, End, Stats};
use crate::scoreboard::monitor::ClosedBy;
use crate::scoreboard::pace::Pace;

/// Client bytes kept while waiting for the peer; a client that sends more waits unread.
const EARLY_MAX: usize = 64 * 1024;

/// `::ffff:a.b.c.d` as `a.b.c.d`, so that peers compare by address whatever the socket family.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Waits for `peer`, watching the client: its EOF or error ends the BIND, its bytes are kept
/// for the peer.
async fn wait_for<T>(
    client: &TcpStream,
    peer: impl std::future::Future<Output = Result<T, End>>,
    io_timeout: Option<Duration>,
    early: &mut Vec<u8>,
) -> Result<T, End> {
    let deadline = io_timeout.map(|t| tokio::time::Instant::now() + t);
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    tokio::pin!(peer);
    loop {
        tokio::select! {
            r = &mut peer => return r,
            r = client.readable(), if early.len() < EARLY_MAX => {
                if let Err(e) = r {
                    return Err(End::ClientError(e));
                }
                let mut buf = [0u8; 4096];
                let room = (EARLY_MAX - early.len()).min(buf.len());
                match client.try_read(&mut buf[..room]) {
                    Ok(0) => return Err(End::ClientClosed),
                    Ok(n) => early.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(End::ClientError(e)),
                }
            }
            _ = &mut timeout => return Err(End::IoTimeout),
        }
    }
}

/// The peer's connection on our listener.
async fn accept_peer(listener: &TcpListener) -> Result<(TcpStream, SocketAddr), End> {
    loop {
        match listener.accept().await {
            Ok(x) => return Ok(x),
            // A peer that reset before we took it; wait for the next.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(End::TargetError(e)),
        }
    }
}

/// The upstream's second reply: the peer's address, or its refusal.
async fn upstream_peer(
    upstream: &mut TcpStream,
) -> Result<Result<SocketAddr, chain::ChainError>, End> {
    Ok(chain::read_socks5_reply(upstream)
        .await
        .and_then(|b| chain::socks5_reply_addr(&b)))
}

/// What the BIND waits on: our listener, or the upstream that listens for us.
enum Second {
    Listener(TcpListener),
    Upstream(TcpStream),
}

/// How the session ended, for monitors: None when it ended before the peer's session began.
pub(super) async fn run(h: &Handoff, fds: Vec<OwnedFd>, stats: &Stats) -> Option<ClosedBy> {
    let mut it = fds.into_iter();
    let (Some(cfd), Some(fd)) = (it.next(), it.next()) else {
        log::error(&format!(
            "relay: BIND session {} arrived without its descriptors",
            h.id
        ));
        return None;
    };
    let second = if h.via.is_some() {
        to_stream(fd).map(Second::Upstream)
    } else {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
            .map(Second::Listener)
    };
    let (client, second) = match (to_stream(cfd), second) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => {
            log::error(&format!("relay: session {}: bad descriptor: {e}", h.id));
            return None;
        }
    };
    let bv = View::bind(h);
    // Two replies back to back on an otherwise quiet connection: without this, Nagle holds the
    // second until the client's delayed ACK of the first, 40 ms later.
    let _ = client.set_nodelay(true);
    if let Err(e) = tcp::send_all(&client, &h.reply).await {
        lines::bind_ended(h, &bv, &End::ClientError(e));
        return None;
    }
    bv.opened();
    let mut early = h.prefetched.clone();
    let io_timeout = (h.io_timeout > 0).then(|| Duration::from_secs(h.io_timeout.into()));
    let (peer_stream, peer) = match second {
        Second::Listener(listener) => {
            if negotiate::is_bind_extension(h.target) {
                super::bind_extension::run(h, client, listener, &bv, stats).await;
                return None;
            }
            match wait_for(&client, accept_peer(&listener), io_timeout, &mut early).await {
                // One peer per BIND: later ones are refused by the closed socket.
                Ok((s, p)) => (s, canonical(p)),
                Err(end) => {
                    lines::bind_ended(h, &bv, &end);
                    return None;
                }
            }
        }
        Second::Upstream(mut up) => {
            match wait_for(&client, upstream_peer(&mut up), io_timeout, &mut early).await {
                Ok(Ok(p)) => (up, canonical(p)),
                Ok(Err(e)) => {
                    // The upstream's refusal (or broken answer) is ours to pass on.
                    let _ =
                        tcp::send_all(&client, &negotiate::failure_reply(h.version, e.reply)).await;
                    let why = format!("serverchain failed: {}", e.text);
                    lines::bind_ended(h, &bv, &End::TargetError(std::io::Error::other(why)));
                    return None;
                }
                Err(end) => {
                    lines::bind_ended(h, &bv, &end);
                    return None;
                }
            }
        }
    };
    let expected = canonical(h.target);
    if !expected.ip().is_unspecified() && expected.ip() != peer.ip() {
        lines::bind_reply_unexpected(h, &bv, &expected, peer);
        refuse(h, &bv, &client, &peer_stream, peer, 0).await;
        return None;
    }
    let settings = crate::settings::Settings::current()?;
    let q = SocksQuery {
        src: peer,
        version: version_of(h),
        command: Command::BindReply,
        method: method_of(h.method),
        user: h.user.as_deref(),
        groups: &h.groups,
        dst: Dest {
            ip: Some(h.client.ip()),
            name: None,
            port: h.client.port(),
            names: &[],
        },
    };
    let m = settings.rules.socks(&q);
    let rule = RuleRef {
        number: m.number,
        log: m.rule.map(|r| r.log).unwrap_or_default(),
    };
    let rv = View::bind_reply(h, peer, rule);
    if m.verdict != Verdict::Pass {
        lines::bind_reply_blocked(&rv, &peer);
        refuse(h, &bv, &client, &peer_stream, peer, m.number).await;
        return None;
    }
    let reply = negotiate::success_reply(h.version, peer);
    if let Err(e) = tcp::send_all(&client, &reply).await {
        lines::bind_ended(h, &bv, &End::ClientError(e));
        return None;
    }
    rv.opened();
    let end = async {
        if !early.is_empty() {
            rv.io(false, &early);
            stats
                .from_client
                .set(stats.from_client.get() + early.len() as u64);
            if let Err(e) = tcp::send_all(&peer_stream, &early).await {
                return End::TargetError(e);
            }
            stats
                .to_target
                .set(stats.to_target.get() + early.len() as u64);
        }
        let opts = tcp::Options {
            io_timeout,
            fin_wait: (h.fin_wait_timeout > 0)
                .then(|| Duration::from_secs(h.fin_wait_timeout.into())),
            see_bytes: rv.rule.log.data || rv.rule.log.iooperation,
            pace: h
                .pace
                .and_then(|(word, rate)| Pace::of(h.board, word, rate))
                .map(std::rc::Rc::new),
        };
        // The reply's lines run peer -> client, so client-to-peer bytes are its backward way.
        let on_data = |dir, bytes: &[u8]| rv.io(dir == tcp::Dir::TargetToClient, bytes);
        tcp::relay(&client, &peer_stream, stats, opts, &on_data).await
    }
    .await;
    let by = end.closed_by();
    lines::bind_closed(h, &bv, &rv, stats, end);
    Some(by)
}

/// Second reply `02` (`91` for SOCKS v4) naming the refused peer, Dante's closing lines for the
/// BIND and the client, and both connections closed. `rule`: the socks rule that refused the
/// peer (0 for a peer from the wrong address).
async fn refuse(
    h: &Handoff,
    bv: &View,
    client: &TcpStream,
    peer_stream: &TcpStream,
    peer: SocketAddr,
    rule: u32,
) {
    let reply = if h.version == 4 {
        negotiate::failure_reply(4, Reply::NotAllowed)
    } else {
        rsockd_proto::socks5::encode_reply(Reply::NotAllowed, &rsockd_proto::TargetAddr::Ip(peer))
    };
    let _ = tcp::send_all(client, &reply).await;
    tcp::reset_on_close(peer_stream);
    lines::bind_refused(h, bv, &peer, rule);
}
