//! The floor: the least work any SOCKS5 server must do per session, to show what the kernel's
//! TCP work alone costs on this machine. The bench binary re-executed as
//! `--role floor --listen 127.0.0.1:PORT`: one thread, one epoll set, no authentication (method
//! 00 only), CONNECT to IPv4 targets only. Per session it does nothing but accept4, epoll_ctl
//! ADD, read the greeting, write `05 00`, read the request, socket + nonblocking connect,
//! epoll_ctl ADD the target, write the reply once the connect completes, then relay both
//! directions with read/write through one shared 64 KiB buffer, pass each EOF on as
//! shutdown(SHUT_WR), and close both sockets when both directions have ended. No rules, no
//! logging, no process hand-off, no getsockname, no TCP_NODELAY, no keep-alive, no timeouts.
//!
//! The descriptors are edge-triggered so that no session needs an EPOLL_CTL_MOD: the target is
//! registered for EPOLLOUT from the start (connect completion, after which ET reports it again
//! only when a full send buffer drains), the client only once a write to it comes up short.
//! Each side remembers whether it is worth a read or a write. A read shorter than the buffer
//! means the socket was drained (every arrival after it raises a new edge), as nginx assumes,
//! unless the peer's FIN is already known (EPOLLRDHUP), whose edge has passed: then reading
//! goes on until read returns 0.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rsockd_sys::epoll::Epoll;
use rsockd_sys::fdio;

use crate::args::opt;

/// The one relay buffer, shared by every session and both directions.
const BUF: usize = 64 * 1024;
/// The listener's epoll token; sessions use `slot << 1 | side`.
const LISTENER: u64 = u64::MAX;
const CLIENT: u64 = 0;
const TARGET: u64 = 1;
/// How long accepting stops when the process (or system) is out of descriptors.
const EMFILE_PAUSE: Duration = Duration::from_millis(100);

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const ET: u32 = libc::EPOLLET as u32;

/// `--listen IP:PORT`; serves until killed.
pub fn main(args: &[String]) -> Result<(), String> {
    let v = opt(args, "--listen")?;
    let addr: SocketAddrV4 = v.parse().map_err(|_| format!("bad --listen: {v}"))?;
    let l = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    // std listens with a backlog of 128; 50 workers reconnect as fast as they can.
    fdio::listen(l.as_fd(), 4096).map_err(|e| format!("listen: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    // Edge-triggered: a pause for EMFILE leaves the listener readable, and level-triggered it
    // would wake us at once, again and again. Each edge is answered by accepting until EAGAIN.
    ep.add(l.as_fd(), IN | ET, LISTENER)
        .map_err(|e| format!("epoll: {e}"))?;
    let mut f = Floor {
        ep,
        listener: l,
        slots: Vec::new(),
        free: Vec::new(),
        closed: Vec::new(),
        paused_until: None,
    };
    let mut buf = vec![0u8; BUF];
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        let timeout = f.paused_until.map_or(-1, |t| {
            // Rounded up: waking a millisecond early would find the pause not over yet.
            let left = t.saturating_duration_since(Instant::now());
            left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
        });
        let n = match f.ep.wait(&mut evs, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        };
        if f.paused_until.is_some_and(|t| Instant::now() >= t) {
            f.paused_until = None;
            f.accept_all();
        }
        for ev in &evs[..n] {
            let (token, events) = (ev.u64, ev.events);
            if token == LISTENER {
                if f.paused_until.is_none() {
                    f.accept_all();
                }
            } else {
                f.event((token >> 1) as usize, token & 1, events, &mut buf);
            }
        }
        // Slots freed in this batch are reused only now: a later event of the same batch for
        // a closed session then finds its slot empty instead of a newcomer in it.
        f.free.append(&mut f.closed);
    }
}

struct Floor {
    ep: Epoll,
    listener: TcpListener,
    /// The sessions, indexed by the slot in their epoll token.
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Emptied in this batch of events; free after it.
    closed: Vec<usize>,
    /// Out of descriptors: no accepting until then.
    paused_until: Option<Instant>,
}

impl Floor {
    /// Accepts until EAGAIN; out of descriptors (or memory), pauses accepting for a moment.
    fn accept_all(&mut self) {
        loop {
            // Without the peer's address: the floor does not want it.
            let fd = match fdio::accept4_nonblocking(self.listener.as_fd()) {
                Ok(fd) => fd,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: the listener stays readable,
                    // so trying again at once would spin.
                    _ => {
                        self.paused_until = Some(Instant::now() + EMFILE_PAUSE);
                        return;
                    }
                },
            };
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let token = ((slot as u64) << 1) | CLIENT;
            // EPOLLOUT only once a write to the client comes up short (`Side::arm`).
            if self.ep.add(fd.as_fd(), IN | RDHUP | ET, token).is_err() {
                // `fd` closes here.
                self.free.push(slot);
                continue;
            }
            self.slots[slot] = Some(Conn {
                phase: Phase::Greeting,
                // A fresh socket has room in its send buffer.
                client: Side::new(fd, token, true, false),
                target: None,
                hs: Vec::new(),
            });
        }
    }

    /// One event of a session's side; closes the session when it ends or fails.
    fn event(&mut self, slot: usize, side: u64, events: u32, buf: &mut [u8]) {
        let Some(Some(c)) = self.slots.get_mut(slot) else {
            return;
        };
        let keep = c.event(&self.ep, slot, side, events, buf).unwrap_or(false);
        if !keep {
            // Dropping the session closes both sockets, which takes them out of the epoll set.
            self.slots[slot] = None;
            self.closed.push(slot);
        }
    }
}

enum Phase {
    Greeting,
    Request,
    Connecting,
    Relay,
}

struct Conn {
    phase: Phase,
    client: Side,
    target: Option<Side>,
    /// Greeting or request bytes received so far, when one read did not bring them whole.
    hs: Vec<u8>,
}

/// One socket of a session, and what the edge-triggered events told about it.
struct Side {
    fd: OwnedFd,
    token: u64,
    /// Worth a read: an event said so, and no read since came back short.
    readable: bool,
    /// The peer's FIN (or an error) is known: a short read does not end the reading.
    rdhup: bool,
    /// Read 0: nothing more comes from this side.
    eof: bool,
    /// Worth a write: no write since came back short.
    writable: bool,
    /// EPOLLOUT is in the interest set.
    armed: bool,
    /// Bytes for this side that a write did not take; written before any other.
    pending: Vec<u8>,
    /// shutdown(SHUT_WR) done: the other side's EOF is passed on.
    shut: bool,
}

impl Side {
    fn new(fd: OwnedFd, token: u64, writable: bool, armed: bool) -> Side {
        Side {
            fd,
            token,
            readable: false,
            rdhup: false,
            eof: false,
            writable,
            armed,
            pending: Vec::new(),
            shut: false,
        }
    }

    fn note(&mut self, events: u32) {
        if events & (IN | RDHUP | HUP | ERR) != 0 {
            self.readable = true;
        }
        if events & (RDHUP | HUP | ERR) != 0 {
            self.rdhup = true;
        }
        // An error is surfaced by the next read or write.
        if events & (OUT | HUP | ERR) != 0 {
            self.writable = true;
        }
    }

    /// Reads into `buf`: Some(0) at EOF, None when there is nothing to read now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match fdio::read(self.fd.as_fd(), buf) {
                Ok(n) => {
                    if n < buf.len() && !self.rdhup {
                        self.readable = false;
                    }
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of `data` as the socket takes now: the bytes taken.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            // MSG_NOSIGNAL: a reset peer gives EPIPE, not SIGPIPE (std ignores SIGPIPE
            // anyway; this does not depend on it).
            match fdio::send_nosignal(self.fd.as_fd(), data) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `data` after what is pending; what the socket does not take now is kept, and
    /// EPOLLOUT asked for.
    fn send(&mut self, ep: &Epoll, data: &[u8]) -> io::Result<()> {
        if !self.pending.is_empty() || !self.writable {
            self.pending.extend_from_slice(data);
            return self.arm(ep);
        }
        let n = self.write(data)?;
        if n < data.len() {
            self.pending.extend_from_slice(&data[n..]);
            self.writable = false;
            return self.arm(ep);
        }
        Ok(())
    }

    /// Writes what is pending; true when nothing is left.
    fn flush(&mut self) -> io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        if !self.writable {
            return Ok(false);
        }
        let pending = std::mem::take(&mut self.pending);
        let n = self.write(&pending)?;
        self.pending = pending;
        self.pending.drain(..n);
        if !self.pending.is_empty() {
            self.writable = false;
        }
        Ok(self.pending.is_empty())
    }

    /// Adds EPOLLOUT to the interest set (once per socket; only the client can lack it).
    fn arm(&mut self, ep: &Epoll) -> io::Result<()> {
        if !self.armed {
            ep.modify(self.fd.as_fd(), IN | OUT | RDHUP | ET, self.token)?;
            self.armed = true;
        }
        Ok(())
    }

    /// shutdown(SHUT_WR): passes the other side's EOF on.
    fn shutdown(&mut self) -> io::Result<()> {
        fdio::shutdown_write(self.fd.as_fd())?;
        self.shut = true;
        Ok(())
    }
}

/// Moves bytes from `src` to `dst` until `src` has nothing more to read now or `dst` takes no
/// more; passes `src`'s EOF on once everything before it is written.
fn pump(ep: &Epoll, src: &mut Side, dst: &mut Side, buf: &mut [u8]) -> io::Result<()> {
    // What a short write left is written first; until then this direction reads nothing.
    if !dst.flush()? {
        return Ok(());
    }
    loop {
        if src.eof {
            if !dst.shut {
                dst.shutdown()?;
            }
            return Ok(());
        }
        if !src.readable {
            return Ok(());
        }
        match src.read(buf)? {
            None => return Ok(()),
            Some(0) => src.eof = true,
            Some(n) => {
                dst.send(ep, &buf[..n])?;
                if !dst.pending.is_empty() {
                    return Ok(());
                }
            }
        }
    }
}

/// A SOCKS5 reply with the bound address 0.0.0.0:0. The floor skips getsockname on purpose:
/// a real server reports the address it connected from, which costs one more system call.
fn reply(rep: u8) -> [u8; 10] {
    [5, rep, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// The reply for a failed connect.
fn reply_code(e: &io::Error) -> u8 {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => 5,
        Some(libc::ENETUNREACH) => 3,
        Some(libc::EHOSTUNREACH | libc::ETIMEDOUT) => 4,
        _ => 1,
    }
}

impl Conn {
    /// Handles one event of `side`; Ok(false) or an error ends the session.
    fn event(
        &mut self,
        ep: &Epoll,
        slot: usize,
        side: u64,
        events: u32,
        buf: &mut [u8],
    ) -> io::Result<bool> {
        if side == CLIENT {
            self.client.note(events);
        } else if let Some(t) = self.target.as_mut() {
            t.note(events);
        }
        match self.phase {
            Phase::Greeting | Phase::Request => {
                self.client.flush()?;
                self.handshake(ep, slot, buf)
            }
            Phase::Connecting => {
                self.client.flush()?;
                if side != TARGET {
                    // The client's data and EOF wait for the relay, in its socket.
                    return Ok(true);
                }
                if events & (ERR | HUP) != 0 {
                    let Some(t) = self.target.as_ref() else {
                        return Ok(false);
                    };
                    // Why the connect failed: asked only on failure, as success needs no
                    // extra system call.
                    let rep = fdio::take_error(t.fd.as_fd()).map_or(1, |e| reply_code(&e));
                    let _ = self.client.send(ep, &reply(rep));
                    return Ok(false);
                }
                if events & OUT == 0 {
                    return Ok(true);
                }
                self.client.send(ep, &reply(0))?;
                self.phase = Phase::Relay;
                self.relay(ep, buf)
            }
            Phase::Relay => self.relay(ep, buf),
        }
    }

    /// Both directions; false once both have ended.
    fn relay(&mut self, ep: &Epoll, buf: &mut [u8]) -> io::Result<bool> {
        let Some(t) = self.target.as_mut() else {
            return Ok(false);
        };
        let c = &mut self.client;
        pump(ep, c, t, buf)?;
        pump(ep, t, c, buf)?;
        Ok(!(c.eof && t.shut && t.eof && c.shut))
    }

    /// Reads the greeting and the request, answering each; starts the connect.
    fn handshake(&mut self, ep: &Epoll, slot: usize, buf: &mut [u8]) -> io::Result<bool> {
        while self.client.readable {
            let n = match self.client.read(buf)? {
                None => break,
                Some(0) => return Ok(false),
                Some(n) => n,
            };
            // Parse straight from the buffer unless an earlier read left a part.
            let mut hs = std::mem::take(&mut self.hs);
            let data: &[u8] = if hs.is_empty() {
                &buf[..n]
            } else {
                hs.extend_from_slice(&buf[..n]);
                &hs
            };
            let mut pos = 0;
            loop {
                let rest = &data[pos..];
                match self.phase {
                    Phase::Greeting => match greeting(rest) {
                        Parsed::More => break,
                        Parsed::Bad => return Ok(false),
                        Parsed::Refuse(_) => {
                            let _ = self.client.send(ep, &[5, 0xff]);
                            return Ok(false);
                        }
                        Parsed::Done(used, _) => {
                            pos += used;
                            self.client.send(ep, &[5, 0])?;
                            self.phase = Phase::Request;
                        }
                    },
                    Phase::Request => match request(rest) {
                        Parsed::More => break,
                        Parsed::Bad => return Ok(false),
                        Parsed::Refuse(rep) => {
                            let _ = self.client.send(ep, &reply(rep));
                            return Ok(false);
                        }
                        Parsed::Done(used, dst) => {
                            // Bytes the client sent after the request go first to the target.
                            return self.connect(ep, slot, dst, &rest[used..]);
                        }
                    },
                    Phase::Connecting | Phase::Relay => break,
                }
            }
            self.hs = data[pos..].to_vec();
        }
        Ok(true)
    }

    /// socket + nonblocking connect, the target into the epoll set; the reply waits for the
    /// connect to complete (EPOLLOUT).
    fn connect(
        &mut self,
        ep: &Epoll,
        slot: usize,
        dst: SocketAddrV4,
        early: &[u8],
    ) -> io::Result<bool> {
        let token = ((slot as u64) << 1) | TARGET;
        match start_connect(dst).and_then(|fd| {
            ep.add(fd.as_fd(), IN | OUT | RDHUP | ET, token)?;
            Ok(fd)
        }) {
            Ok(fd) => {
                // Not writable until the connect completes; EPOLLOUT is registered from the
                // start.
                let mut t = Side::new(fd, token, false, true);
                t.pending.extend_from_slice(early);
                self.target = Some(t);
                self.phase = Phase::Connecting;
                Ok(true)
            }
            Err(e) => {
                let _ = self.client.send(ep, &reply(reply_code(&e)));
                Ok(false)
            }
        }
    }
}

enum Parsed {
    /// Not all there yet.
    More,
    /// Not SOCKS5: close without a word.
    Bad,
    /// Answer this code (or 05 FF for the greeting) and close.
    Refuse(u8),
    /// Bytes used, and the target of a request (unspecified for the greeting).
    Done(usize, SocketAddrV4),
}

/// VER NMETHODS METHODS: method 00 (no authentication) is the only one we take.
fn greeting(d: &[u8]) -> Parsed {
    match d {
        [] => Parsed::More,
        [v, ..] if *v != 5 => Parsed::Bad,
        [_] => Parsed::More,
        [_, n, methods @ ..] => {
            let n = usize::from(*n);
            match methods.get(..n) {
                None => Parsed::More,
                Some(m) if m.contains(&0) => {
                    Parsed::Done(2 + n, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
                }
                Some(_) => Parsed::Refuse(0xff),
            }
        }
    }
}

/// VER CMD RSV ATYP DST.ADDR DST.PORT: CONNECT (07 otherwise) to IPv4 (08 otherwise).
fn request(d: &[u8]) -> Parsed {
    match d {
        [v, ..] if *v != 5 => Parsed::Bad,
        [_, cmd, _, ..] if *cmd != 1 => Parsed::Refuse(7),
        [_, _, _, atyp, ..] if *atyp != 1 => Parsed::Refuse(8),
        [_, _, _, _, a, b, c, e, p0, p1, ..] => Parsed::Done(
            10,
            SocketAddrV4::new([*a, *b, *c, *e].into(), u16::from_be_bytes([*p0, *p1])),
        ),
        _ => Parsed::More,
    }
}

/// A nonblocking socket whose connect to `dst` is under way (or done).
fn start_connect(dst: SocketAddrV4) -> io::Result<OwnedFd> {
    let fd = fdio::tcp4_socket()?;
    fdio::connect4_started(fd.as_fd(), dst)?;
    // Connected at once or not: the epoll ADD with EPOLLOUT reports the completion.
    Ok(fd)
}
