//! The UDP relay of one association: datagrams from the client (with a SOCKS UDP header) go out
//! on the external socket of the target's family; datagrams back are given a header and sent to
//! the client. The association ends when its TCP control connection does.
//!
//! Dante's rules, kept here:
//! - Source locking: if the request named an address (and port), only datagrams from it pass;
//!   unnamed parts are taken from the first datagram, which locks the association.
//! - Replies pass only from remotes the client has sent to.
//! - Fragments (`FRAG != 0`) are dropped.
//! - Each datagram is checked against the socks rules (`udpassociate` out, `udpreply` in); the
//!   verdict is cached per remote until the configuration changes.
//! - `udp.connectdst`: the external socket is connected while the client uses one destination,
//!   so the kernel filters everything else.
//!
//! Through a SOCKS5 upstream (a chained association), every datagram goes to the upstream's
//! UDP relay with the client's header as it came (a name stays a name), and replies come only
//! from that relay, their header naming the remote; the rules and the remotes the client may
//! hear from are ours, as without an upstream.
//!
//! Policy (rules, log lines) stays outside, behind [`Policy`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_proto::udp::{decode_udp, encode_udp_header};
use rsockd_proto::TargetAddr;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::buffers::PooledBuf;
use super::tcp::{End, Stats};
use crate::scoreboard::pace::Pace;
use rsockd_sys::udp::Received;
use tokio::io::Interest;

/// Room kept in front of a received reply for the longest header we prepend (IPv6).
const HEAD_ROOM: usize = 22;
/// Datagrams taken per recvmmsg(2) call.
const MMSG: usize = rsockd_sys::udp::BATCH;
/// recvmmsg(2) calls per wake-up of one socket before the others get a turn.
const ROUNDS: usize = 4;
const NO_DATAGRAM: Received = Received {
    len: 0,
    from: SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::UNSPECIFIED,
        0,
    )),
};
/// Remotes remembered per association; beyond this the least useful half is forgotten.
const MAX_REMOTES: usize = 4096;

/// Which way a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Client to target: `udpassociate`.
    Out,
    /// Target to client: `udpreply`.
    In,
}

/// A socks-rule verdict as the engine caches it; the policy reads `rule` and `log` back for
/// its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    pub rule: u32,
    pub log: rsockd_config::LogFlags,
}

/// Why a datagram was not relayed (the verdict cases aside).
#[derive(Debug)]
pub enum Dropped {
    /// Not from the client's address: the one locked, else the one the request named.
    Stranger { expected: SocketAddr },
    /// From a remote the client never sent to.
    UnknownRemote,
    /// `FRAG != 0`, to the target named in its header.
    Fragment(TargetAddr),
    /// The SOCKS UDP header did not decode (datagram length, error).
    BadHeader(usize, rsockd_proto::udp::UdpError),
    /// The header's host name did not resolve.
    Unresolved(String, u16, io::Error),
    /// No external socket of the target's family.
    NoFamily,
    /// sendto(2) failed.
    SendError(io::Error),
}

/// What the association needs from the role that runs it: rule checks and log lines.
pub trait Policy {
    /// Configuration generation; cached verdicts of an older one are checked again.
    fn generation(&self) -> u64;
    /// The verdict for datagrams between the client (`client`) and `remote` (`name`: the host
    /// name the client used, if any).
    fn check(
        &self,
        way: Way,
        client: SocketAddr,
        remote: SocketAddr,
        name: Option<&str>,
    ) -> Verdict;
    /// A datagram relayed (or blocked, with `v.pass` false); `payload` without header. `via`
    /// is our external socket's address, `None` while that socket has sent nothing.
    fn datagram(
        &self,
        way: Way,
        v: &Verdict,
        client: SocketAddr,
        remote: SocketAddr,
        via: Option<SocketAddr>,
        payload: &[u8],
    );
    /// A datagram dropped for another reason.
    fn dropped(&self, way: Way, from: SocketAddr, why: &Dropped);
}

/// Packet counters of an association, beside the byte counters of [`Stats`].
#[derive(Debug, Default)]
pub struct Packets {
    pub from_client: std::cell::Cell<u64>,
    pub to_client: std::cell::Cell<u64>,
    pub from_target: std::cell::Cell<u64>,
    pub to_target: std::cell::Cell<u64>,
}

fn bump(c: &std::cell::Cell<u64>, n: usize) {
    c.set(c.get() + n as u64);
}

/// One remote the client has sent to.
struct Remote {
    /// The SOCKS UDP header of replies from it, encoded once.
    header: Vec<u8>,
    out: Option<(u64, Verdict)>,
    into: Option<(u64, Verdict)>,
    /// Datagrams exchanged, to choose what to forget when the table is full.
    uses: u64,
    /// A datagram to it passed the rules: only then may it answer.
    sent: bool,
}

/// An external socket and what it is connected to (`udp.connectdst`).
struct External {
    sock: UdpSocket,
    connected: Option<SocketAddr>,
    /// Set once a second destination was seen: the socket stays unconnected from then on.
    shared: bool,
    /// Its address, once it has sent something (Dante shows `0.0.0.0.0` until then).
    used: Option<SocketAddr>,
    family_v4: bool,
}

/// What the closing line needs to know about an association.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// The client's UDP address, if a datagram locked it.
    pub client: Option<SocketAddr>,
    /// The one remote the client sent to, if it sent to exactly one.
    pub only_remote: Option<SocketAddr>,
    /// Whether the client sent to any remote.
    pub any_remote: bool,
    /// The external address used first.
    pub external: Option<SocketAddr>,
}

/// Settings of one association.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address the client said it sends from; unspecified parts are locked by the first
    /// datagram.
    pub expected: SocketAddr,
    pub connectdst: bool,
    pub io_timeout: Option<Duration>,
    /// The control connection's rule's `bandwidth:`: datagrams both ways pay.
    pub pace: Option<Rc<Pace>>,
    /// The upstream's UDP relay of a chained association.
    pub upstream: Option<SocketAddr>,
}

/// Unmaps `::ffff:a.b.c.d` so that IPv4 peers on a dual socket compare and encode as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

struct Assoc<'a, P: Policy> {
    policy: &'a P,
    opts: Options,
    client_sock: &'a UdpSocket,
    externals: Vec<External>,
    /// The client's UDP address, once locked.
    locked: Option<SocketAddr>,
    remotes: HashMap<SocketAddr, Remote>,
    /// Every remote sent to, counted apart from `remotes`, which forgets.
    sent_to: Option<SocketAddr>,
    several: bool,
    first_external: Option<SocketAddr>,
    /// A chained association sent a datagram to a name we could not resolve (the upstream
    /// may): replies from remotes we cannot know in advance then pass, rules permitting.
    unresolved_sent: bool,
    /// Host names the client used, resolved once per association.
    names: HashMap<String, IpAddr>,
    stats: &'a Stats,
    packets: &'a Packets,
}

impl<P: Policy> Assoc<'_, P> {
    fn admits_source(&self, from: SocketAddr) -> bool {
        if let Some(l) = self.locked {
            return l == from;
        }
        let e = self.opts.expected;
        (e.ip().is_unspecified() || canonical(e).ip() == from.ip())
            && (e.port() == 0 || e.port() == from.port())
    }

    fn verdict(
        &mut self,
        way: Way,
        client: SocketAddr,
        remote: SocketAddr,
        name: Option<&str>,
    ) -> Verdict {
        let gen = self.policy.generation();
        let cached = self.remotes.get(&remote).and_then(|r| match way {
            Way::Out => r.out,
            Way::In => r.into,
        });
        if let Some((g, v)) = cached {
            if g == gen {
                return v;
            }
        }
        let v = self.policy.check(way, client, remote, name);
        if let Some(r) = self.remotes.get_mut(&remote) {
            match way {
                Way::Out => r.out = Some((gen, v)),
                Way::In => r.into = Some((gen, v)),
            }
        }
        v
    }

    fn remember(&mut self, remote: SocketAddr) {
        match self.sent_to {
            None => self.sent_to = Some(remote),
            Some(r) if r != remote => self.several = true,
            Some(_) => {}
        }
        self.add_remote(remote);
    }

    /// An entry for `remote` in the table (without counting it as a remote sent to).
    fn add_remote(&mut self, remote: SocketAddr) {
        if self.remotes.contains_key(&remote) {
            return;
        }
        if self.remotes.len() >= MAX_REMOTES {
            // Forget the less used half; a forgotten remote's replies are dropped until the
            // client sends to it again, as for a remote never sent to.
            let mut uses: Vec<u64> = self.remotes.values().map(|r| r.uses).collect();
            uses.sort_unstable();
            let cut = uses[uses.len() / 2];
            self.remotes.retain(|_, r| r.uses > cut);
        }
        let mut header = Vec::with_capacity(HEAD_ROOM);
        encode_udp_header(&TargetAddr::Ip(remote), &mut header);
        self.remotes.insert(
            remote,
            Remote {
                header,
                out: None,
                into: None,
                uses: 0,
                sent: false,
            },
        );
    }

    /// Resolves a host name from a datagram header (once per association and name).
    async fn resolve(&mut self, name: &str, port: u16) -> Result<SocketAddr, io::Error> {
        if let Some(ip) = self.names.get(name) {
            return Ok(SocketAddr::new(*ip, port));
        }
        let addrs = crate::net::resolve::forward(name, port).await?;
        // Prefer a family we have an external socket for.
        let have = |a: &SocketAddr| self.externals.iter().any(|x| x.family_v4 == a.is_ipv4());
        let pick = addrs
            .iter()
            .copied()
            .find(have)
            .or_else(|| addrs.first().copied())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        if self.names.len() < MAX_REMOTES {
            self.names.insert(name.to_string(), pick.ip());
        }
        Ok(pick)
    }

    /// A datagram from the client: `buf[..n]`, header included.
    async fn outbound(&mut self, buf: &[u8], from: SocketAddr) {
        let from = canonical(from);
        if !self.admits_source(from) {
            let expected = self.locked.unwrap_or(self.opts.expected);
            self.policy
                .dropped(Way::Out, from, &Dropped::Stranger { expected });
            return;
        }
        let (h, off) = match decode_udp(buf) {
            Ok(x) => x,
            Err(e) => {
                self.policy
                    .dropped(Way::Out, from, &Dropped::BadHeader(buf.len(), e));
                return;
            }
        };
        if h.frag != 0 {
            self.policy
                .dropped(Way::Out, from, &Dropped::Fragment(h.dst));
            return;
        }
        // As Dante, only datagrams with a usable header count as read from the client (those a
        // rule blocks included).
        bump(&self.stats.from_client, buf.len());
        bump(&self.packets.from_client, 1);
        // Only a well-formed datagram locks the association.
        self.locked = Some(from);
        let (target, name) = match &h.dst {
            TargetAddr::Ip(a) => (canonical(*a), None),
            TargetAddr::Domain(n, port) => match self.resolve(n, *port).await {
                Ok(a) => (canonical(a), Some(n.as_str())),
                Err(_) if self.opts.upstream.is_some() => {
                    // The upstream may resolve what we cannot: the name goes on as a name.
                    self.outbound_unresolved(buf, off, from, n, *port);
                    return;
                }
                Err(e) => {
                    self.policy
                        .dropped(Way::Out, from, &Dropped::Unresolved(n.clone(), *port, e));
                    return;
                }
            },
        };
        let payload = &buf[off..];
        self.remember(target);
        // Through an upstream the datagram goes to its relay, header and all; a name we
        // resolved goes as the address our rules checked (and the answers will come from).
        let readdressed;
        let (dest, data) = match (self.opts.upstream, name) {
            (Some(up), None) => (up, buf),
            (Some(up), Some(_)) => {
                let mut d = Vec::with_capacity(HEAD_ROOM + payload.len());
                encode_udp_header(&TargetAddr::Ip(target), &mut d);
                d.extend_from_slice(payload);
                readdressed = d;
                (up, readdressed.as_slice())
            }
            (None, _) => (target, payload),
        };
        let ext = self
            .externals
            .iter()
            .position(|x| x.family_v4 == dest.is_ipv4());
        let v = self.verdict(Way::Out, from, target, name);
        // Dante names our external address once the datagram goes out on it, and shows
        // 0.0.0.0.0 for a blocked one while that socket has sent nothing.
        let via = ext.and_then(|i| {
            let x = &self.externals[i];
            if v.pass {
                x.sock.local_addr().ok()
            } else {
                x.used
            }
        });
        self.policy
            .datagram(Way::Out, &v, from, target, via, payload);
        if !v.pass {
            return;
        }
        let Some(i) = ext else {
            self.policy.dropped(Way::Out, from, &Dropped::NoFamily);
            return;
        };
        if let Some(r) = self.remotes.get_mut(&target) {
            r.uses += 1;
            r.sent = true;
        }
        let connectdst = self.opts.connectdst;
        let x = &mut self.externals[i];
        let sent = if connectdst && !x.shared && x.connected.is_none_or(|c| c == dest) {
            if x.connected.is_none() {
                if let Err(e) = x.sock.connect(dest).await {
                    self.policy.dropped(Way::Out, from, &Dropped::SendError(e));
                    return;
                }
                x.connected = Some(dest);
            }
            x.sock.try_send(data)
        } else {
            if x.connected.take().is_some() {
                // A second destination: back to an unconnected socket for good.
                let _ = rsockd_sys::sockopt::udp_disconnect(x.sock.as_fd());
                x.shared = true;
            }
            x.sock.try_send_to(data, dest)
        };
        match sent {
            Ok(n) => {
                if x.used.is_none() {
                    x.used = x.sock.local_addr().ok();
                    self.first_external.get_or_insert(x.used.unwrap_or(target));
                }
                bump(&self.stats.to_target, n);
                bump(&self.packets.to_target, 1);
                self.stats.last_io.set(Instant::now());
            }
            // A full socket buffer drops the datagram, as a router would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.policy.dropped(Way::Out, from, &Dropped::SendError(e)),
        }
    }

    /// A chained datagram to a name we could not resolve: checked against the rules by name
    /// alone (not cached: the port is all the address we have) and sent to the upstream's
    /// relay as it came.
    fn outbound_unresolved(
        &mut self,
        buf: &[u8],
        off: usize,
        from: SocketAddr,
        name: &str,
        port: u16,
    ) {
        let Some(up) = self.opts.upstream else {
            return;
        };
        let remote = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port);
        let v = self.policy.check(Way::Out, from, remote, Some(name));
        let Some(x) = self
            .externals
            .iter_mut()
            .find(|x| x.family_v4 == up.is_ipv4())
        else {
            self.policy.dropped(Way::Out, from, &Dropped::NoFamily);
            return;
        };
        let via = if v.pass {
            x.sock.local_addr().ok()
        } else {
            x.used
        };
        self.policy
            .datagram(Way::Out, &v, from, remote, via, &buf[off..]);
        if !v.pass {
            return;
        }
        let sent = match x.connected {
            Some(c) if c == up => x.sock.try_send(buf),
            _ => x.sock.try_send_to(buf, up),
        };
        match sent {
            Ok(n) => {
                self.unresolved_sent = true;
                if x.used.is_none() {
                    x.used = x.sock.local_addr().ok();
                    self.first_external.get_or_insert(x.used.unwrap_or(up));
                }
                bump(&self.stats.to_target, n);
                bump(&self.packets.to_target, 1);
                self.stats.last_io.set(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.policy.dropped(Way::Out, from, &Dropped::SendError(e)),
        }
    }

    /// A datagram from a remote (or from the upstream's relay, header first): at
    /// `buf[HEAD_ROOM..HEAD_ROOM + n]`.
    fn inbound(&mut self, buf: &mut [u8], n: usize, from: SocketAddr) {
        let from = canonical(from);
        bump(&self.stats.from_target, n);
        bump(&self.packets.from_target, 1);
        let (remote, body) = match self.opts.upstream {
            None => (from, HEAD_ROOM..HEAD_ROOM + n),
            Some(up) if canonical(up) != from => {
                self.policy.dropped(Way::In, from, &Dropped::UnknownRemote);
                return;
            }
            Some(_) => match decode_udp(&buf[HEAD_ROOM..HEAD_ROOM + n]) {
                Ok((h, off)) => match h.dst {
                    TargetAddr::Ip(a) if h.frag == 0 => {
                        (canonical(a), HEAD_ROOM + off..HEAD_ROOM + n)
                    }
                    TargetAddr::Ip(_) => {
                        self.policy
                            .dropped(Way::In, from, &Dropped::Fragment(h.dst));
                        return;
                    }
                    // A relay names the remote that sent; a name is not an answer.
                    TargetAddr::Domain(..) => {
                        self.policy.dropped(Way::In, from, &Dropped::UnknownRemote);
                        return;
                    }
                },
                Err(e) => {
                    self.policy
                        .dropped(Way::In, from, &Dropped::BadHeader(n, e));
                    return;
                }
            },
        };
        let mut sent = self.remotes.get(&remote).is_some_and(|r| r.sent);
        if !sent && self.unresolved_sent && self.opts.upstream.is_some() {
            // Perhaps the answer of a name only the upstream could resolve: rules decide.
            self.add_remote(remote);
            if let Some(r) = self.remotes.get_mut(&remote) {
                r.sent = true;
            }
            sent = true;
        }
        let (Some(client), true) = (self.locked, sent) else {
            self.policy
                .dropped(Way::In, remote, &Dropped::UnknownRemote);
            return;
        };
        let v = self.verdict(Way::In, client, remote, None);
        let payload = &buf[body.clone()];
        let via = self
            .externals
            .iter()
            .find(|x| x.family_v4 == from.is_ipv4())
            .and_then(|x| x.used);
        self.policy
            .datagram(Way::In, &v, client, remote, via, payload);
        if !v.pass {
            return;
        }
        let Some(r) = self.remotes.get_mut(&remote) else {
            return;
        };
        r.uses += 1;
        let hl = r.header.len();
        let start = body.start - hl;
        buf[start..body.start].copy_from_slice(&r.header);
        match self.client_sock.try_send_to(&buf[start..body.end], client) {
            Ok(sent) => {
                bump(&self.stats.to_client, sent);
                bump(&self.packets.to_client, 1);
                self.stats.last_io.set(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.policy.dropped(Way::In, from, &Dropped::SendError(e)),
        }
    }
}

/// Errors on a UDP socket that concern one datagram, not the socket: ICMP errors reported
/// late on a connected socket, and the like.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EMSGSIZE)
}

async fn readable_tcp(x: Option<&TcpStream>) -> io::Result<()> {
    match x {
        Some(x) => x.readable().await,
        None => std::future::pending().await,
    }
}

async fn readable_opt(x: Option<&External>) -> io::Result<()> {
    match x {
        Some(x) => x.sock.readable().await,
        None => std::future::pending().await,
    }
}

/// Runs the association until the control connection ends (or the upstream's, or the idle
/// timeout).
#[allow(clippy::too_many_arguments)]
pub async fn relay<P: Policy>(
    control: &TcpStream,
    upstream: Option<&TcpStream>,
    client: &UdpSocket,
    externals: Vec<UdpSocket>,
    opts: Options,
    policy: &P,
    stats: &Stats,
    packets: &Packets,
) -> (End, Summary) {
    let mut a = new_assoc(client, externals, opts.clone(), policy, stats, packets);
    let end = run_assoc(&mut a, control, upstream, client, opts, stats).await;
    let summary = Summary {
        client: a.locked,
        only_remote: a.sent_to.filter(|_| !a.several),
        any_remote: a.sent_to.is_some(),
        external: a.first_external,
    };
    (end, summary)
}

fn new_assoc<'a, P: Policy>(
    client: &'a UdpSocket,
    externals: Vec<UdpSocket>,
    opts: Options,
    policy: &'a P,
    stats: &'a Stats,
    packets: &'a Packets,
) -> Assoc<'a, P> {
    Assoc {
        policy,
        opts,
        client_sock: client,
        externals: externals
            .into_iter()
            .map(|sock| External {
                family_v4: sock.local_addr().is_ok_and(|a| a.is_ipv4()),
                sock,
                connected: None,
                shared: false,
                used: None,
            })
            .collect(),
        locked: None,
        remotes: HashMap::new(),
        sent_to: None,
        several: false,
        first_external: None,
        unresolved_sent: false,
        names: HashMap::new(),
        stats,
        packets,
    }
}

async fn run_assoc<P: Policy>(
    a: &mut Assoc<'_, P>,
    control: &TcpStream,
    upstream: Option<&TcpStream>,
    client: &UdpSocket,
    opts: Options,
    stats: &Stats,
) -> End {
    let far_future = Instant::now() + Duration::from_secs(86400 * 365);
    let idle = tokio::time::sleep_until(match opts.io_timeout {
        Some(t) => stats.last_io.get() + t,
        None => far_future,
    });
    tokio::pin!(idle);
    let mut scratch = [0u8; 512];
    loop {
        tokio::select! {
            r = control.readable() => {
                if let Err(e) = r {
                    return End::ClientError(e);
                }
                // The control connection carries nothing after the reply; anything the client
                // sends there is read and ignored, EOF ends the association.
                match control.try_read(&mut scratch) {
                    Ok(0) => return End::ClientClosed,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return End::ClientError(e),
                }
            }
            r = readable_tcp(upstream) => {
                if let Err(e) = r {
                    return End::TargetError(e);
                }
                // The upstream's control connection: its end is the association's.
                match upstream.map(|u| u.try_read(&mut scratch)) {
                    Some(Ok(0)) => return End::TargetClosed,
                    Some(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                        return End::TargetError(e)
                    }
                    _ => {}
                }
            }
            r = client.readable() => {
                if let Err(e) = r {
                    return End::ClientError(e);
                }
                let mut bufs: [PooledBuf; MMSG] = std::array::from_fn(|_| PooledBuf::take());
                let mut got = [NO_DATAGRAM; MMSG];
                for _ in 0..ROUNDS {
                    match recv_many(client, &mut bufs, 0, &mut got) {
                        Ok(n) => {
                            for (b, d) in bufs.iter().zip(&got[..n]) {
                                a.outbound(&b[..d.len], d.from).await;
                                if let Some(p) = &opts.pace {
                                    p.pay(d.len).await;
                                }
                            }
                            if n < MMSG {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if transient(&e) => continue,
                        Err(e) => return End::ClientError(e),
                    }
                }
            }
            r = readable_opt(a.externals.first()) => {
                let before = stats.from_target.get();
                if let Some(end) = drain_external(a, 0, r) { return end; }
                pay(&opts, stats.from_target.get() - before).await;
            }
            r = readable_opt(a.externals.get(1)) => {
                let before = stats.from_target.get();
                if let Some(end) = drain_external(a, 1, r) { return end; }
                pay(&opts, stats.from_target.get() - before).await;
            }
            _ = &mut idle => {
                let t = opts.io_timeout.unwrap_or(Duration::ZERO);
                let deadline = stats.last_io.get() + t;
                if Instant::now() >= deadline {
                    return End::IoTimeout;
                }
                idle.as_mut().reset(deadline);
            }
        }
    }
}

/// Datagrams from targets are drained in batches; their bytes pay afterwards.
async fn pay(opts: &Options, bytes: u64) {
    if let (Some(p), true) = (&opts.pace, bytes > 0) {
        p.pay(bytes as usize).await;
    }
}

/// Receives a batch with recvmmsg(2) into `bufs[i][offset..]`, clearing tokio's readiness
/// when the socket is drained.
fn recv_many(
    sock: &UdpSocket,
    bufs: &mut [PooledBuf; MMSG],
    offset: usize,
    out: &mut [Received; MMSG],
) -> io::Result<usize> {
    let mut slices = bufs.each_mut().map(|b| &mut b[offset..]);
    sock.try_io(Interest::READABLE, || {
        rsockd_sys::udp::recv_batch(sock.as_fd(), &mut slices, out)
    })
}

fn drain_external<P: Policy>(a: &mut Assoc<'_, P>, i: usize, ready: io::Result<()>) -> Option<End> {
    if let Err(e) = ready {
        return Some(End::TargetError(e));
    }
    let mut bufs: [PooledBuf; MMSG] = std::array::from_fn(|_| PooledBuf::take());
    let mut got = [NO_DATAGRAM; MMSG];
    for _ in 0..ROUNDS {
        let r = match a.externals.get(i) {
            Some(x) => recv_many(&x.sock, &mut bufs, HEAD_ROOM, &mut got),
            None => return None,
        };
        match r {
            Ok(n) => {
                for (b, d) in bufs.iter_mut().zip(&got[..n]) {
                    a.inbound(b, d.len, d.from);
                }
                if n < MMSG {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if transient(&e) => continue,
            Err(e) => return Some(End::TargetError(e)),
        }
    }
    None
}
