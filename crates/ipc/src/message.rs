//! The messages themselves.

use std::net::SocketAddr;

/// The rule `log:` flags, as the configuration defines them.
pub use rsockd_config::LogFlags;

use crate::codec::{DecodeError, Reader, Writer};

/// Layout version; bump on any change to a message's fields.
pub const VERSION: u8 = 5;

/// Largest encoded message; receivers size their buffer with it. Hand-offs carry at most
/// 16 KiB of client bytes read past the request, plus a few hundred bytes of fields.
pub const MAX_MESSAGE: usize = 20 * 1024;

/// What the session does; mirrors the SOCKS command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
}

impl Command {
    fn code(self) -> u8 {
        match self {
            Command::Connect => 1,
            Command::Bind => 2,
            Command::UdpAssociate => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => Command::Connect,
            2 => Command::Bind,
            3 => Command::UdpAssociate,
            _ => return Err(DecodeError::Field("command")),
        })
    }
}

/// The `log:` keywords of the rule a session matched travel as one byte.
fn log_bits(f: LogFlags) -> u8 {
    (f.connect as u8)
        | (f.disconnect as u8) << 1
        | (f.data as u8) << 2
        | (f.error as u8) << 3
        | (f.iooperation as u8) << 4
        | (f.tcpinfo as u8) << 5
}

fn log_from_bits(b: u8) -> LogFlags {
    LogFlags {
        connect: b & 1 != 0,
        disconnect: b & 2 != 0,
        data: b & 4 != 0,
        error: b & 8 != 0,
        iooperation: b & 16 != 0,
        tcpinfo: b & 32 != 0,
    }
}

/// A matched rule as log lines need it: its number (Dante counts per rule kind from 1; 0 is
/// the implicit block) and its `log:` flags. The relay keeps this even if a reload changes the
/// rules, as Dante keeps established sessions on their old rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleRef {
    pub number: u32,
    pub log: LogFlags,
}

/// A fully negotiated session handed from a mother to a relay process. The descriptors travel
/// beside it: TCP connect = [client, target].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub id: u64,
    pub command: Command,
    /// SOCKS version the client spoke (4 or 5).
    pub version: u8,
    /// When the client was accepted, in microseconds since the epoch (for `Session duration`).
    pub accepted_us: u64,
    pub client: SocketAddr,
    /// Our address the client connected to.
    pub internal: SocketAddr,
    /// Our address on the target side.
    pub external: SocketAddr,
    pub target: SocketAddr,
    /// The name the client asked for, when it asked for one.
    pub target_name: Option<String>,
    pub user: Option<String>,
    /// The user's groups, when rules have `group:` conditions (for bindreply/udpreply checks).
    pub groups: Vec<String>,
    /// The method the session authenticated with (`rsockd_config::Method::code`).
    pub method: u8,
    pub client_rule: RuleRef,
    pub socks_rule: RuleRef,
    /// Idle timeout in seconds, 0 = none.
    pub io_timeout: u32,
    /// Seconds a half-closed session may live, 0 = no limit.
    pub fin_wait_timeout: u32,
    /// The encoded success reply; the relay writes it, so the client never hears success from
    /// a process that will not relay for it.
    pub reply: Vec<u8>,
    /// Client bytes read past the request (clients that send data before the reply).
    pub prefetched: Vec<u8>,
    /// The scoreboard slots the session holds (word indexes), in the scoreboard of
    /// configuration generation `board`; handed to the relay with the session.
    pub board: u64,
    pub slots: Vec<u32>,
    /// The rule's `bandwidth:`: the scoreboard word the session is paced by and the rate in
    /// bytes per second.
    pub pace: Option<(u32, u64)>,
    /// The `monitor { }` watching the session (its number; 0 = none), in the same scoreboard.
    pub monitor: u32,
    /// A chained CONNECT (`route { via: ... }`): the upstream proxy and the address it says
    /// it bound, for the log lines (`local upstream [bound] target`).
    pub via: Option<(SocketAddr, SocketAddr)>,
    /// Descriptors that must come with this message.
    pub nfds: u8,
}

/// Mother (or mother 1) to child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A configuration to use from now on; one descriptor (a memfd holding the text) comes
    /// with it. `file` names the file the text came from, for diagnostics. To a mother, the
    /// listening sockets follow the memfd, one per address in `listen` (the configured
    /// `internal:` address each was bound for); relays get none. With `board`, the
    /// scoreboard's memfd comes right after the configuration's.
    Config {
        generation: u64,
        file: String,
        board: bool,
        listen: Vec<SocketAddr>,
    },
    /// One or more sessions, in the order their descriptors follow (each takes `nfds`). A
    /// mother sends the sessions that finish negotiating in the same turn of its event loop
    /// together: one sendmsg(2), one wake-up of the relay. `batch_sessions` splits them.
    Sessions(Vec<Handoff>),
    /// Log a state dump (SIGUSR1).
    DumpState,
    /// Stop taking work; finish current sessions, then exit (SIGTERM).
    Drain,
    /// A channel to the auth helper (started or re-spawned): one descriptor comes with it.
    Auth,
    /// To a mother: `rsockd --drain` (true) or `--resume` (false); its agent-check answers
    /// follow. Sent to every mother started while draining, too.
    Draining(bool),
    /// The drain after SIGTERM is over (`rsockd.drain.timeout`, or a second SIGTERM): end
    /// every session now, with its line, and exit. Mothers pass it to their relays.
    EndNow,
    /// To a mother: drain as for [`Control::Drain`], and close the agent socket too: a new
    /// family (an upgrade) answers the balancer now.
    HandOver,
}

/// Child to its mother.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The child has applied its first configuration and takes work.
    Ready { pid: u32 },
    /// Sessions ended (the mother balances load by open sessions). A busy relay reports many
    /// in one message, at most `MAX_CLOSED`.
    Closed { ids: Vec<u64> },
    /// A mother's clients in negotiation (sent when it changes, at most a few times a second),
    /// so that mother 1 can say how many were lost when that mother dies.
    Negotiating { count: u32 },
}

/// Most session ends one `Report::Closed` carries (8 KiB of ids, well inside `MAX_MESSAGE`).
pub const MAX_CLOSED: usize = 1024;

/// Most descriptors one `Control::Sessions` carries (the kernel takes 253 per SCM_RIGHTS).
pub const MAX_BATCH_FDS: usize = 240;
/// Most sessions one `Control::Sessions` carries (the count is one byte).
const MAX_BATCH: usize = 255;

/// Encodes hand-offs as few `Control::Sessions` messages as `MAX_MESSAGE`, `MAX_BATCH_FDS` and
/// the one-byte count allow, keeping their order. Each message comes with the range of `hs` it
/// holds, so the caller sends those sessions' descriptors beside it. A hand-off too large for a
/// message of its own is still encoded alone (the sender's send then fails for it alone).
pub fn batch_sessions<H: std::borrow::Borrow<Handoff>>(
    hs: &[H],
) -> Vec<(Vec<u8>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut body = Writer::default();
    let (mut start, mut fds) = (0usize, 0usize);
    let seal = |body: &mut Writer, range: std::ops::Range<usize>| {
        let mut w = Writer::default();
        header(&mut w, K_SESSION);
        w.u8(range.len() as u8);
        w.buf.extend_from_slice(&body.buf);
        body.buf.clear();
        (w.buf, range)
    };
    for (i, h) in hs.iter().enumerate() {
        let h: &Handoff = h.borrow();
        let mut one = Writer::default();
        write_session(&mut one, h);
        let full = 3 + body.buf.len() + one.buf.len() > MAX_MESSAGE
            || fds + usize::from(h.nfds) > MAX_BATCH_FDS
            || i - start == MAX_BATCH;
        if i > start && full {
            out.push(seal(&mut body, start..i));
            start = i;
            fds = 0;
        }
        body.buf.extend_from_slice(&one.buf);
        fds += usize::from(h.nfds);
    }
    if start < hs.len() {
        out.push(seal(&mut body, start..hs.len()));
    }
    out
}

fn write_session(w: &mut Writer, h: &Handoff) {
    w.u64(h.id);
    w.u8(h.command.code());
    w.u8(h.version);
    w.u64(h.accepted_us);
    w.addr(h.client);
    w.addr(h.internal);
    w.addr(h.external);
    w.addr(h.target);
    w.opt_str(h.target_name.as_deref());
    w.opt_str(h.user.as_deref());
    let n = h.groups.len().min(255);
    w.u8(n as u8);
    for g in &h.groups[..n] {
        w.bytes(g.as_bytes());
    }
    w.u8(h.method);
    for r in [h.client_rule, h.socks_rule] {
        w.u32(r.number);
        w.u8(log_bits(r.log));
    }
    w.u32(h.io_timeout);
    w.u32(h.fin_wait_timeout);
    w.bytes(&h.reply);
    w.bytes(&h.prefetched);
    // A session holds at most a client-rule, a socks-rule and a per-key slot; most hold none
    // and have no pace or monitor, and then the scoreboard's generation is left out. One
    // byte says which: the slot count, the top bit for a pace, the next for a monitor.
    let n = h.slots.len().min(63);
    let watched = h.monitor != 0;
    w.u8(n as u8 | if h.pace.is_some() { 0x80 } else { 0 } | if watched { 0x40 } else { 0 });
    if n > 0 || h.pace.is_some() || watched {
        w.u64(h.board);
    }
    for s in &h.slots[..n] {
        w.u32(*s);
    }
    if let Some((word, rate)) = h.pace {
        w.u32(word);
        w.u64(rate);
    }
    if watched {
        w.u32(h.monitor);
    }
    match h.via {
        Some((up, bound)) => {
            w.u8(1);
            w.addr(up);
            w.addr(bound);
        }
        None => w.u8(0),
    }
    w.u8(h.nfds);
}

fn read_session(r: &mut Reader<'_>) -> Result<Handoff, DecodeError> {
    let id = r.u64()?;
    let command = Command::from_code(r.u8()?)?;
    let version = r.u8()?;
    let accepted_us = r.u64()?;
    let client = r.addr("client")?;
    let internal = r.addr("internal")?;
    let external = r.addr("external")?;
    let target = r.addr("target")?;
    let target_name = r.opt_str("target_name")?;
    let user = r.opt_str("user")?;
    let ngroups = r.u8()?;
    let mut groups = Vec::with_capacity(ngroups.into());
    for _ in 0..ngroups {
        groups.push(String::from_utf8(r.bytes()?).map_err(|_| DecodeError::Field("groups"))?);
    }
    let method = r.u8()?;
    let client_rule = RuleRef {
        number: r.u32()?,
        log: log_from_bits(r.u8()?),
    };
    let socks_rule = RuleRef {
        number: r.u32()?,
        log: log_from_bits(r.u8()?),
    };
    let io_timeout = r.u32()?;
    let fin_wait_timeout = r.u32()?;
    let reply = r.bytes()?;
    let prefetched = r.bytes()?;
    let flags = r.u8()?;
    let (nslots, paced, watched) = (flags & 0x3f, flags & 0x80 != 0, flags & 0x40 != 0);
    let board = if nslots > 0 || paced || watched {
        r.u64()?
    } else {
        0
    };
    let mut slots = Vec::with_capacity(nslots.into());
    for _ in 0..nslots {
        slots.push(r.u32()?);
    }
    let pace = if paced {
        Some((r.u32()?, r.u64()?))
    } else {
        None
    };
    let monitor = if watched { r.u32()? } else { 0 };
    let via = if r.u8()? != 0 {
        Some((r.addr("via")?, r.addr("via bound")?))
    } else {
        None
    };
    let nfds = r.u8()?;
    Ok(Handoff {
        id,
        command,
        version,
        accepted_us,
        client,
        internal,
        external,
        target,
        target_name,
        user,
        groups,
        method,
        client_rule,
        socks_rule,
        io_timeout,
        fin_wait_timeout,
        reply,
        prefetched,
        board,
        slots,
        pace,
        monitor,
        via,
        nfds,
    })
}

const K_CONFIG: u8 = 1;
const K_SESSION: u8 = 2;
const K_DUMP: u8 = 3;
const K_DRAIN: u8 = 4;
const K_AUTH: u8 = 5;
const K_DRAINING: u8 = 6;
const K_END_NOW: u8 = 7;
const K_HAND_OVER: u8 = 8;
const K_READY: u8 = 10;
const K_CLOSED: u8 = 11;
const K_NEGOTIATING: u8 = 12;

fn header(w: &mut Writer, kind: u8) {
    w.u8(VERSION);
    w.u8(kind);
}

fn open(buf: &[u8]) -> Result<(Reader<'_>, u8), DecodeError> {
    let mut r = Reader::new(buf);
    let v = r.u8()?;
    if v != VERSION {
        return Err(DecodeError::Version(v));
    }
    let k = r.u8()?;
    Ok((r, k))
}

impl Control {
    /// Number of descriptors that must accompany this message.
    pub fn fds(&self) -> usize {
        match self {
            Control::Config { listen, board, .. } => 1 + usize::from(*board) + listen.len(),
            Control::Sessions(hs) => hs.iter().map(|h| usize::from(h.nfds)).sum(),
            Control::DumpState
            | Control::Drain
            | Control::Draining(_)
            | Control::EndNow
            | Control::HandOver => 0,
            Control::Auth => 1,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Control::Config {
                generation,
                file,
                board,
                listen,
            } => {
                header(&mut w, K_CONFIG);
                w.u64(*generation);
                w.bytes(file.as_bytes());
                w.u8(u8::from(*board));
                // More sockets than fit in one SCM_RIGHTS message cannot be sent anyway.
                let n = listen.len().min(200);
                w.u8(n as u8);
                for a in &listen[..n] {
                    w.addr(*a);
                }
            }
            Control::Sessions(hs) => {
                // What does not fit one message is cut off here; senders use batch_sessions.
                let n = hs.len().min(MAX_BATCH);
                header(&mut w, K_SESSION);
                w.u8(n as u8);
                for h in &hs[..n] {
                    write_session(&mut w, h);
                }
            }
            Control::DumpState => header(&mut w, K_DUMP),
            Control::Drain => header(&mut w, K_DRAIN),
            Control::Auth => header(&mut w, K_AUTH),
            Control::Draining(on) => {
                header(&mut w, K_DRAINING);
                w.u8(u8::from(*on));
            }
            Control::EndNow => header(&mut w, K_END_NOW),
            Control::HandOver => header(&mut w, K_HAND_OVER),
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, kind) = open(buf)?;
        let msg = match kind {
            K_CONFIG => {
                let generation = r.u64()?;
                let file = String::from_utf8(r.bytes()?).map_err(|_| DecodeError::Field("file"))?;
                let board = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Field("board")),
                };
                let n = r.u8()?;
                let mut listen = Vec::with_capacity(n.into());
                for _ in 0..n {
                    listen.push(r.addr("listen")?);
                }
                Control::Config {
                    generation,
                    file,
                    board,
                    listen,
                }
            }
            K_SESSION => {
                let n = r.u8()?;
                if n == 0 {
                    return Err(DecodeError::Field("sessions"));
                }
                let hs = (0..n)
                    .map(|_| read_session(&mut r))
                    .collect::<Result<Vec<_>, _>>()?;
                Control::Sessions(hs)
            }
            K_DUMP => Control::DumpState,
            K_DRAIN => Control::Drain,
            K_AUTH => Control::Auth,
            K_END_NOW => Control::EndNow,
            K_HAND_OVER => Control::HandOver,
            K_DRAINING => match r.u8()? {
                0 => Control::Draining(false),
                1 => Control::Draining(true),
                _ => return Err(DecodeError::Field("draining")),
            },
            k => return Err(DecodeError::Kind(k)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Report::Ready { pid } => {
                header(&mut w, K_READY);
                w.u32(*pid);
            }
            Report::Closed { ids } => {
                header(&mut w, K_CLOSED);
                let n = ids.len().min(MAX_CLOSED);
                w.u16(n as u16);
                for id in &ids[..n] {
                    w.u64(*id);
                }
            }
            Report::Negotiating { count } => {
                header(&mut w, K_NEGOTIATING);
                w.u32(*count);
            }
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, kind) = open(buf)?;
        let msg = match kind {
            K_READY => Report::Ready { pid: r.u32()? },
            K_CLOSED => {
                let n = usize::from(r.u16()?);
                if n == 0 || n > MAX_CLOSED {
                    return Err(DecodeError::Field("closed sessions"));
                }
                let ids = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                Report::Closed { ids }
            }
            K_NEGOTIATING => Report::Negotiating { count: r.u32()? },
            k => return Err(DecodeError::Kind(k)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl crate::Message for Control {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Control::decode(buf)
    }
    fn fds(&self) -> usize {
        Control::fds(self)
    }
}

impl crate::Message for Report {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Report::decode(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv6Addr};

    fn sample() -> Handoff {
        Handoff {
            id: 7,
            command: Command::Connect,
            version: 5,
            accepted_us: 1_700_000_000_000_000,
            client: "127.0.0.1:40000".parse().unwrap(),
            internal: "127.0.0.1:1080".parse().unwrap(),
            external: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5555),
            target: "[::1]:80".parse().unwrap(),
            target_name: Some("example.org".into()),
            user: None,
            groups: vec!["staff".into(), "users".into()],
            method: 0,
            client_rule: RuleRef {
                number: 1,
                log: LogFlags {
                    connect: true,
                    ..Default::default()
                },
            },
            socks_rule: RuleRef {
                number: 3,
                log: LogFlags {
                    disconnect: true,
                    error: true,
                    ..Default::default()
                },
            },
            io_timeout: 0,
            fin_wait_timeout: 10,
            reply: vec![5, 0, 0, 1, 127, 0, 0, 1, 4, 56],
            prefetched: b"GET / HTTP/1.0\r\n".to_vec(),
            board: 2,
            slots: vec![7, 1_000_001],
            pace: Some((9, 1 << 20)),
            monitor: 3,
            via: None,
            nfds: 2,
        }
    }

    #[test]
    fn handoff_round_trip() {
        let m = Control::Sessions(vec![sample()]);
        assert_eq!(Control::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.fds(), 2);
        let mut other = sample();
        other.id = 8;
        other.nfds = 3;
        other.prefetched.clear();
        let two = Control::Sessions(vec![sample(), other]);
        assert_eq!(Control::decode(&two.encode()).unwrap(), two);
        assert_eq!(two.fds(), 5);
        assert!(Control::decode(&Control::Sessions(vec![]).encode()).is_err());
    }

    /// Batches keep the order, and split where a message would pass its size, its descriptor
    /// count or its one-byte session count; each batch decodes to its range.
    #[test]
    fn batches_split_at_every_limit() {
        let check = |hs: &[Handoff], want: &[std::ops::Range<usize>]| {
            let got = batch_sessions(hs);
            let ranges: Vec<_> = got.iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(ranges, want);
            for (msg, r) in got {
                assert!(msg.len() <= MAX_MESSAGE);
                assert_eq!(
                    Control::decode(&msg).unwrap(),
                    Control::Sessions(hs[r].to_vec())
                );
            }
        };
        let many = |n: usize, f: &dyn Fn(&mut Handoff)| {
            (0..n)
                .map(|i| {
                    let mut h = sample();
                    h.id = i as u64;
                    f(&mut h);
                    h
                })
                .collect::<Vec<_>>()
        };
        assert!(batch_sessions::<Handoff>(&[]).is_empty());
        let all_three = std::iter::once(0..3).collect::<Vec<_>>();
        check(&many(3, &|_| {}), &all_three);
        // 16 KiB of early bytes each: one session per message.
        check(
            &many(3, &|h| h.prefetched = vec![1; 16 << 10]),
            &[0..1, 1..2, 2..3],
        );
        // 2 descriptors each: 120 fit MAX_BATCH_FDS.
        check(
            &many(130, &|h| {
                h.prefetched.clear();
                h.pace = None;
                h.monitor = 0;
            }),
            &[0..120, 120..130],
        );
        // No descriptors (not a real hand-off, but the count byte must still bound a batch).
        check(
            &many(300, &|h| {
                h.prefetched.clear();
                h.groups.clear();
                h.target_name = None;
                h.external = h.client;
                h.target = h.client;
                h.reply.clear();
                h.slots.clear();
                h.board = 0;
                h.pace = None;
                h.monitor = 0;
                h.nfds = 0;
            }),
            &[0..255, 255..300],
        );
    }

    #[test]
    fn small_messages_round_trip() {
        for m in [
            Control::DumpState,
            Control::Drain,
            Control::Auth,
            Control::Draining(true),
            Control::Draining(false),
            Control::EndNow,
            Control::HandOver,
            Control::Config {
                generation: 3,
                file: "/etc/rsockd.conf".into(),
                board: false,
                listen: vec![],
            },
            Control::Config {
                generation: 4,
                file: "/etc/rsockd.conf".into(),
                board: true,
                listen: vec![
                    "127.0.0.1:0".parse().unwrap(),
                    "[::1]:1080".parse().unwrap(),
                ],
            },
        ] {
            assert_eq!(Control::decode(&m.encode()).unwrap(), m);
        }
        for r in [
            Report::Ready { pid: 42 },
            Report::Closed { ids: vec![9] },
            Report::Closed {
                ids: (1..=MAX_CLOSED as u64).collect(),
            },
            Report::Negotiating { count: 3 },
        ] {
            assert_eq!(Report::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn refuses_bad_version_kind_and_trailing_bytes() {
        assert_eq!(Control::decode(&[9, 3]), Err(DecodeError::Version(9)));
        assert_eq!(Control::decode(&[VERSION, 99]), Err(DecodeError::Kind(99)));
        assert_eq!(
            Control::decode(&[VERSION, K_DUMP, 0]),
            Err(DecodeError::Trailing(1))
        );
        assert_eq!(Control::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(
            Control::decode(&[VERSION, K_DRAINING, 2]),
            Err(DecodeError::Field("draining"))
        );
    }

    proptest! {
        #[test]
        fn every_prefix_of_a_handoff_is_refused(cut in 0usize..200) {
            let enc = Control::Sessions(vec![sample()]).encode();
            let cut = cut.min(enc.len() - 1);
            prop_assert!(Control::decode(&enc[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Control::decode(&bytes);
            let _ = Report::decode(&bytes);
        }
    }
}
