//! One client session: negotiate, stream checksummed data, and say how it ended.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::procs::*;
use crate::holder::*;
use crate::rng::*;

pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every byte came back, in order, and the close was clean.
    Exact,
    /// Connection refused, closed, reset or timed out before the SOCKS reply.
    PreReply(String),
    /// A SOCKS reply other than success.
    Refused(u8),
    /// An i/o error, EOF or timeout after the reply; every byte read before it was right.
    Broken(String),
    /// A wrong byte, an extra byte or a protocol violation.
    Corrupt(String),
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: usize,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) relay: Option<i32>,
    /// Wall-clock start, to match log lines.
    pub(crate) wall: f64,
    /// When it ended, on the log's clock: lines after it are another session's, even with the
    /// same client address (ephemeral ports are reused within seconds under this load).
    pub(crate) wall_end: f64,
    pub(crate) ended: Instant,
    pub(crate) bytes: u64,
    pub(crate) outcome: Outcome,
}

pub(crate) enum Fail {
    Io(String),
    Corrupt(String),
}

/// Reads exactly `want.len()` bytes, comparing as they come, so a truncated stream is told
/// from a corrupted one.
pub(crate) fn read_expect(s: &mut TcpStream, want: &[u8], what: &str) -> Result<(), Fail> {
    let mut buf = vec![0u8; want.len()];
    let mut got = 0;
    while got < want.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Fail::Io(format!(
                    "{what}: EOF after {got} of {} bytes",
                    want.len()
                )))
            }
            Ok(n) => {
                if let Some(i) = (got..got + n).find(|&i| buf[i] != want[i]) {
                    return Err(Fail::Corrupt(format!(
                        "{what}: byte {i} of {} differs",
                        want.len()
                    )));
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Fail::Io(format!(
                    "{what}: {e} after {got} of {} bytes",
                    want.len()
                )))
            }
        }
    }
    Ok(())
}

/// SOCKS5 greeting (method none) and CONNECT in one write, then the method selection and the
/// reply.
pub(crate) fn negotiate(s: &mut TcpStream, target: SocketAddr) -> Result<(), Outcome> {
    let SocketAddr::V4(t) = target else {
        unreachable!("the echo server is on IPv4")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req)
        .map_err(|e| Outcome::PreReply(format!("request: {e}")))?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel)
        .map_err(|e| Outcome::PreReply(format!("method selection: {e}")))?;
    if sel != [5, 0] {
        return Err(Outcome::Corrupt(format!("method selection {sel:?}")));
    }
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .map_err(|e| Outcome::PreReply(format!("reply: {e}")))?;
    if head[0] != 5 {
        return Err(Outcome::Corrupt(format!("reply {head:?}")));
    }
    if head[1] != 0 {
        return Err(Outcome::Refused(head[1]));
    }
    let len = match head[3] {
        1 => 4,
        4 => 16,
        a => return Err(Outcome::Corrupt(format!("reply address type {a}"))),
    };
    let mut rest = vec![0u8; len + 2];
    s.read_exact(&mut rest)
        .map_err(|e| Outcome::PreReply(format!("reply address: {e}")))?;
    Ok(())
}

/// Streams `chunk(id, seq)` for `dur` (1 to 3 chunks in flight, checked as they come back),
/// then half-closes and expects a clean EOF.
pub(crate) fn stream(
    s: &mut TcpStream,
    id: usize,
    dur: Duration,
    rng: &mut Rng,
    stop: &AtomicBool,
    bytes: &mut u64,
) -> Outcome {
    let deadline = Instant::now() + dur;
    let mut seq = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let k = 1 + rng.below(3);
        let mut out = Vec::new();
        for i in 0..k {
            out.extend_from_slice(&chunk(id, seq + i));
        }
        if let Err(e) = s.write_all(&out) {
            return Outcome::Broken(format!("write of chunks {seq}..{}: {e}", seq + k));
        }
        match read_expect(s, &out, &format!("chunks {seq}..{}", seq + k)) {
            Ok(()) => *bytes += out.len() as u64,
            Err(Fail::Io(m)) => return Outcome::Broken(m),
            Err(Fail::Corrupt(m)) => return Outcome::Corrupt(m),
        }
        seq += k;
        thread::sleep(rng.millis(2, 6));
    }
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return Outcome::Broken(format!("shutdown: {e}"));
    }
    let mut extra = [0u8; 256];
    loop {
        match s.read(&mut extra) {
            Ok(0) => return Outcome::Exact,
            Ok(n) => return Outcome::Corrupt(format!("{n} extra bytes after the last chunk")),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Broken(format!("waiting for EOF: {e}")),
        }
    }
}

pub(crate) fn session(
    proxy: SocketAddr,
    target: SocketAddr,
    id: usize,
    dur: Duration,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Session {
    let mut rec = Session {
        id,
        client: None,
        relay: None,
        wall: epoch(),
        wall_end: 0.0,
        ended: Instant::now(),
        bytes: 0,
        outcome: Outcome::Exact,
    };
    rec.outcome = match TcpStream::connect_timeout(&proxy, IO_TIMEOUT) {
        Err(e) => Outcome::PreReply(format!("connect: {e}")),
        Ok(mut s) => {
            rec.client = s.local_addr().ok();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            match negotiate(&mut s, target) {
                Err(o) => o,
                Ok(()) => {
                    rec.relay = rec.client.and_then(|c| relay_of_session(proxy, c));
                    stream(&mut s, id, dur, rng, stop, &mut rec.bytes)
                }
            }
        }
    };
    rec.ended = Instant::now();
    rec.wall_end = epoch();
    rec
}
