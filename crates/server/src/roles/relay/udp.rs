//! A UDP association in a relay: the reply, then the association engine with the socks rules
//! (`udpassociate` out, `udpreply` in) and Dante's per-datagram and closing lines.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_config::{Command, Verdict as RuleVerdict};
use rsockd_ipc::Handoff;
use rsockd_rules::{Dest, SocksQuery};
use tokio::net::UdpSocket;

use super::connect::to_stream;
use super::query::{method_of, version_of};
use crate::log::{self, lines};
use crate::relay::tcp::{self, End, Stats};
use crate::relay::udp::{self as engine, Dropped, Packets, Policy, Summary, Verdict, Way};
use crate::settings::Settings;

/// The rules and log lines of one association.
struct Rules<'a> {
    h: &'a Handoff,
    /// Our client-side UDP address (`relay` in Dante's lines).
    relay_addr: SocketAddr,
}

impl Rules<'_> {
    fn settings(&self) -> Option<Rc<Settings>> {
        Settings::current()
    }

    fn lines(&self) -> lines::Udp<'_> {
        lines::Udp {
            h: self.h,
            relay: self.relay_addr,
        }
    }
}

impl Policy for Rules<'_> {
    fn generation(&self) -> u64 {
        self.settings().map_or(0, |s| s.generation)
    }

    fn check(
        &self,
        way: Way,
        client: SocketAddr,
        remote: SocketAddr,
        name: Option<&str>,
    ) -> Verdict {
        let Some(s) = self.settings() else {
            return Verdict {
                pass: false,
                rule: 0,
                log: Default::default(),
            };
        };
        let (src, dst, command) = match way {
            Way::Out => (client, remote, Command::UdpAssociate),
            Way::In => (remote, client, Command::UdpReply),
        };
        let q = SocksQuery {
            src,
            version: version_of(self.h),
            command,
            method: method_of(self.h.method),
            user: self.h.user.as_deref(),
            groups: &self.h.groups,
            dst: Dest {
                ip: Some(dst.ip()),
                name: if way == Way::Out { name } else { None },
                port: dst.port(),
                names: &[],
            },
        };
        let m = s.rules.socks(&q);
        Verdict {
            pass: m.verdict == RuleVerdict::Pass,
            rule: m.number,
            log: m.rule.map(|r| r.log).unwrap_or_default(),
        }
    }

    fn datagram(
        &self,
        way: Way,
        v: &Verdict,
        client: SocketAddr,
        remote: SocketAddr,
        via: Option<SocketAddr>,
        payload: &[u8],
    ) {
        self.lines().datagram(way, v, client, remote, via, payload);
    }

    fn dropped(&self, way: Way, from: SocketAddr, why: &Dropped) {
        self.lines().dropped(way, from, why);
    }
}

pub(super) async fn run(h: &Handoff, fds: Vec<OwnedFd>, stats: &Stats) {
    let mut it = fds.into_iter();
    let Some(control) = it.next().map(to_stream) else {
        log::error(&format!("relay: UDP session {} without descriptors", h.id));
        return;
    };
    let to_udp = |fd: OwnedFd| -> std::io::Result<UdpSocket> {
        let s = std::net::UdpSocket::from(fd);
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s)
    };
    let mut rest: Vec<OwnedFd> = it.collect();
    // A chained association's last descriptor is the upstream's control connection.
    let upstream = match h.via.and_then(|_| rest.pop()).map(to_stream) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => {
            log::error(&format!("relay: session {}: bad descriptor: {e}", h.id));
            return;
        }
    };
    let socks: std::io::Result<Vec<UdpSocket>> = rest.into_iter().map(to_udp).collect();
    let (control, mut socks) = match (control, socks) {
        (Ok(c), Ok(s)) if s.len() >= 2 => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            log::error(&format!("relay: session {}: bad descriptor: {e}", h.id));
            return;
        }
        _ => {
            log::error(&format!(
                "relay: UDP session {} arrived without its sockets",
                h.id
            ));
            return;
        }
    };
    let client_sock = socks.remove(0);
    let relay_addr = client_sock.local_addr().unwrap_or(h.internal);
    let rules = Rules { h, relay_addr };
    let packets = Packets::default();
    if let Err(e) = tcp::send_all(&control, &h.reply).await {
        let end = End::ClientError(e);
        rules
            .lines()
            .closed(stats, &packets, &end, &Summary::default());
        return;
    }
    rules.lines().opened();
    let opts = engine::Options {
        expected: h.target,
        connectdst: rules.settings().is_none_or(|s| s.config.udp_connectdst),
        io_timeout: (h.io_timeout > 0).then(|| Duration::from_secs(h.io_timeout.into())),
        pace: h
            .pace
            .and_then(|(word, rate)| crate::scoreboard::pace::Pace::of(h.board, word, rate))
            .map(std::rc::Rc::new),
        upstream: h.via.map(|(_, relay)| relay),
    };
    let (end, sum) = engine::relay(
        &control,
        upstream.as_ref(),
        &client_sock,
        socks,
        opts,
        &rules,
        stats,
        &packets,
    )
    .await;
    rules.lines().closed(stats, &packets, &end, &sum);
}
