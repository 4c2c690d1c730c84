//! A CONNECT session in a relay: write the reply, send the client's early bytes, relay both
//! directions, log the end.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rsockd_ipc::Handoff;
use tokio::net::TcpStream;

use crate::log;
use crate::log::lines;
use crate::relay::tcp::{self, Stats};
use crate::scoreboard::monitor::ClosedBy;
use crate::scoreboard::pace::Pace;

/// A received descriptor as a tokio TCP stream.
pub(super) fn to_stream(fd: OwnedFd) -> std::io::Result<TcpStream> {
    let s = std::net::TcpStream::from(fd);
    s.set_nonblocking(true)?;
    TcpStream::from_std(s)
}

/// A CONNECT session's descriptor as a tokio TCP stream, without the ioctl: the mother made
/// both sockets non-blocking (accepted by tokio, created by tokio's TcpSocket with
/// SOCK_NONBLOCK), and that flag belongs to the open file, which is what SCM_RIGHTS passes.
fn to_nonblocking_stream(fd: OwnedFd) -> std::io::Result<TcpStream> {
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

/// How the session ended, for monitors (None: it never began).
pub(super) async fn run(h: &Handoff, fds: Vec<OwnedFd>, stats: &Stats) -> Option<ClosedBy> {
    let mut it = fds.into_iter();
    let (Some(cfd), Some(tfd)) = (it.next(), it.next()) else {
        log::error(&format!(
            "relay: session {} arrived without its descriptors",
            h.id
        ));
        return None;
    };
    let (client, target) = match (to_nonblocking_stream(cfd), to_nonblocking_stream(tfd)) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => {
            log::error(&format!("relay: session {}: bad descriptor: {e}", h.id));
            return None;
        }
    };
    let end = async {
        if let Err(e) = tcp::send_all(&client, &h.reply).await {
            return tcp::End::ClientError(e);
        }
        lines::connect_opened(h);
        if !h.prefetched.is_empty() {
            stats
                .from_client
                .set(stats.from_client.get() + h.prefetched.len() as u64);
            if let Err(e) = tcp::send_all(&target, &h.prefetched).await {
                return tcp::End::TargetError(e);
            }
            stats
                .to_target
                .set(stats.to_target.get() + h.prefetched.len() as u64);
        }
        let opts = tcp::Options {
            io_timeout: (h.io_timeout > 0).then(|| Duration::from_secs(h.io_timeout.into())),
            fin_wait: (h.fin_wait_timeout > 0)
                .then(|| Duration::from_secs(h.fin_wait_timeout.into())),
            see_bytes: h.socks_rule.log.data || h.socks_rule.log.iooperation,
            pace: h
                .pace
                .and_then(|(word, rate)| Pace::of(h.board, word, rate))
                .map(std::rc::Rc::new),
        };
        let on_data = |dir, bytes: &[u8]| lines::io_operation(h, dir, bytes);
        tcp::relay(&client, &target, stats, opts, &on_data).await
    }
    .await;
    let tcpinfo = h
        .socks_rule
        .log
        .tcpinfo
        .then(|| lines::tcp_info(client.as_fd(), target.as_fd()));
    lines::closed(h, stats, &end, tcpinfo.as_deref());
    if let (Some((side, code)), Some(s)) = (end.errno(), crate::settings::Settings::current()) {
        crate::log::by_errno::session_error(
            &s.config,
            h.socks_rule.number,
            side,
            code,
            [&h.client, &h.internal],
            [&h.target, &h.external],
        );
    }
    Some(end.closed_by())
}
