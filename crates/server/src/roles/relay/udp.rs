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

use super::bind::{method_of, version_of};
use super::connect::to_stream;
use crate::log::{self, addr, escape, Line};
use crate::relay::tcp::{self, End, Stats};
use crate::relay::udp::{self as engine, Dropped, Packets, Policy, Summary, Verdict, Way};
use crate::roles::session_log;
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
}

const UNKNOWN: &str = "0.0.0.0.0";

fn opt_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| UNKNOWN.to_string(), |a| addr(&a))
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
        let f = v.log;
        let wanted = if v.pass {
            f.data || f.iooperation
        } else {
            f.connect || f.disconnect || f.error || v.rule == 0
        };
        if !wanted {
            return;
        }
        let (command, route) = match way {
            Way::Out => (
                "udpassociate",
                format!(
                    "{} {} -> {} {}",
                    session_log::user_addr(self.h, &client),
                    addr(&self.relay_addr),
                    opt_addr(via),
                    addr(&remote)
                ),
            ),
            Way::In => (
                "udpreply",
                format!(
                    "{} {} -> {} {}",
                    addr(&remote),
                    opt_addr(via),
                    addr(&self.relay_addr),
                    session_log::user_addr(self.h, &client),
                ),
            ),
        };
        let head = Line::verdict(v.pass, v.rule, "udp", command, '-');
        let line = if !v.pass {
            format!("{head}{route}")
        } else if f.data && !payload.is_empty() {
            format!("{head}{route} ({}): {}", payload.len(), escape(payload))
        } else {
            format!("{head}{route} ({})", payload.len())
        };
        if v.rule == 0 {
            log::debug(&line);
        } else {
            log::info(&line);
        }
    }

    fn dropped(&self, way: Way, from: SocketAddr, why: &Dropped) {
        let rule = self.h.socks_rule;
        let command = match way {
            Way::Out => "udpassociate",
            Way::In => "udpreply",
        };
        // Dante: `block(N): udp/udpassociate -: from relay -> 0.0.0.0.0 target: why`.
        let (target, text) = match why {
            Dropped::Fragment(t) => (
                target_text(t),
                "fragmented socks udp packets are not supported".to_string(),
            ),
            Dropped::Stranger { expected } => (
                UNKNOWN.to_string(),
                format!(
                    "expected udp packet from clientaddress {}, got it from {}",
                    addr(expected),
                    addr(&from)
                ),
            ),
            Dropped::Unresolved(name, port, e) => {
                let t = format!("{}.{port}", escape(name.as_bytes()));
                let text = format!("could not resolve target address {t}: {e}");
                (t, text)
            }
            // Dante's words, then ours.
            Dropped::BadHeader(len, e) => (
                UNKNOWN.to_string(),
                format!(
                    "SOCKS protocol error in socks udp packet of length {len}.  Could not extract \
                     valid address from SOCKS UDP header ({e})"
                ),
            ),
            Dropped::NoFamily => (
                UNKNOWN.to_string(),
                "no address of that family configured for our usage on the external interface"
                    .to_string(),
            ),
            Dropped::SendError(e) => (UNKNOWN.to_string(), format!("sendto(2) failed: {e}")),
            Dropped::UnknownRemote => {
                // The client never sent to it: dropped as a connected socket's kernel would.
                log::debug(&format!(
                    "udp/{command}: datagram from {} dropped: the client has not sent to it",
                    addr(&from)
                ));
                return;
            }
        };
        if rule.log.error || rule.log.disconnect || rule.log.connect {
            log::info(&format!(
                "{}{} {} -> {UNKNOWN} {target}: {text}",
                Line::verdict(false, rule.number, "udp", command, '-'),
                addr(&from),
                addr(&self.relay_addr)
            ));
        }
    }
}

fn target_text(t: &rsockd_proto::TargetAddr) -> String {
    match t {
        rsockd_proto::TargetAddr::Ip(a) => addr(a),
        rsockd_proto::TargetAddr::Domain(n, p) => format!("{}.{p}", escape(n.as_bytes())),
    }
}

/// `bytes/packets`, as Dante counts UDP.
fn bp(bytes: u64, packets: u64) -> String {
    format!("{bytes}/{packets}")
}

fn closed(h: &Handoff, rules: &Rules<'_>, stats: &Stats, p: &Packets, end: &End, sum: &Summary) {
    let f = h.socks_rule.log;
    let client = sum
        .client
        .map_or_else(|| requested(h), |c| session_log::user_addr(h, &c));
    if f.disconnect || (f.error && matches!(end, End::ClientError(_) | End::TargetError(_))) {
        let view = session_log::View {
            proto: "udp",
            command: "udpassociate",
            rule: h.socks_rule,
            path: [
                client,
                addr(&rules.relay_addr),
                opt_addr(sum.external),
                opt_addr(sum.only_remote),
            ],
        };
        let far = if sum.any_remote {
            [
                bp(stats.to_target.get(), p.to_target.get()),
                bp(stats.from_target.get(), p.from_target.get()),
            ]
        } else {
            [String::new(), String::new()]
        };
        let [w2, r2] = far;
        let counts = [
            bp(stats.to_client.get(), p.to_client.get()),
            bp(stats.from_client.get(), p.from_client.get()),
            w2,
            r2,
        ];
        view.closed(h, counts, &end.to_string(), "");
    }
    session_log::accept_closed(h, stats.to_client.get(), stats.to_target.get(), &end);
}

/// The address the request named, as Dante shows it (`name.port` for a host name).
fn requested(h: &Handoff) -> String {
    match &h.target_name {
        Some(n) => format!("{}.{}", escape(n.as_bytes()), h.target.port()),
        None => addr(&h.target),
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
    let socks: std::io::Result<Vec<UdpSocket>> = it.map(to_udp).collect();
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
        closed(h, &rules, stats, &packets, &end, &Summary::default());
        return;
    }
    if h.socks_rule.log.connect {
        log::info(&format!(
            "{}{} {}",
            Line::verdict(true, h.socks_rule.number, "udp", "udpassociate", '['),
            requested(h),
            addr(&relay_addr)
        ));
    }
    let opts = engine::Options {
        expected: h.target,
        connectdst: rules.settings().is_none_or(|s| s.config.udp_connectdst),
        io_timeout: (h.io_timeout > 0).then(|| Duration::from_secs(h.io_timeout.into())),
    };
    let (end, sum) =
        engine::relay(&control, &client_sock, socks, opts, &rules, stats, &packets).await;
    closed(h, &rules, stats, &packets, &end, &sum);
}
