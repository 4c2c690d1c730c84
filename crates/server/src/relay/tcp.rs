//! The TCP relay: both directions of one session, with Dante's semantics.
//!
//! - No byte lost or reordered: each chunk read is written in full before the next read.
//! - Half-close: EOF from one side becomes a FIN (shutdown(SHUT_WR)) to the other, and the other
//!   direction keeps flowing until it ends too.
//! - RST: a reset (or a write error) on one side resets the other (SO_LINGER 0, then close).
//! - `timeout.io`: the session ends after that many idle seconds; `timeout.tcp_fin_wait`: a
//!   half-closed session ends after that many seconds.
//!
//! Bytes move by splice(2) through a pipe borrowed from the relay's pool while they are in
//! flight (`pipes.rs`), or by read/write through a pooled buffer when the rule logs the data or
//! splice is off. Either way the sockets are driven by the relay's current-thread runtime
//! through `&TcpStream` readiness, and an idle session holds neither pipe nor buffer.

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use rustix::pipe::{splice, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::buffers::PooledBuf;
use super::pipes::{self, Engine};
use crate::scoreboard::pace::Pace;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ClientToTarget,
    TargetToClient,
}

/// Live byte counters and idle clock of a session, shared with the state dump.
#[derive(Debug)]
pub struct Stats {
    pub from_client: Cell<u64>,
    pub to_client: Cell<u64>,
    pub from_target: Cell<u64>,
    pub to_target: Cell<u64>,
    pub last_io: Cell<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            from_client: Cell::new(0),
            to_client: Cell::new(0),
            from_target: Cell::new(0),
            to_target: Cell::new(0),
            last_io: Cell::new(Instant::now()),
        }
    }
}

/// How a session ended, in Dante's words (see `Display`).
#[derive(Debug)]
pub enum End {
    ClientClosed,
    TargetClosed,
    ClientError(io::Error),
    TargetError(io::Error),
    IoTimeout,
    FinWaitTimeout,
}

impl End {
    /// Which end closed first, as monitors' disconnect alarms count it.
    pub fn closed_by(&self) -> crate::scoreboard::monitor::ClosedBy {
        use crate::scoreboard::monitor::ClosedBy;
        match self {
            End::ClientClosed | End::ClientError(_) => ClosedBy::Client,
            End::TargetClosed | End::TargetError(_) => ClosedBy::Target,
            End::IoTimeout | End::FinWaitTimeout => ClosedBy::Us,
        }
    }
}

/// Set once this relay process has ended its sessions at the end of a drain: they then close
/// because we shut their sockets, and their lines say so instead of what that looked like.
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// See [`STOPPED`].
pub fn mark_stopped() {
    STOPPED.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl End {
    /// The side and errno of an error end.
    pub fn errno(&self) -> Option<(rsockd_config::Side, i32)> {
        match self {
            End::ClientError(e) => Some((rsockd_config::Side::Internal, e.raw_os_error()?)),
            End::TargetError(e) => Some((rsockd_config::Side::External, e.raw_os_error()?)),
            _ => None,
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if STOPPED.load(std::sync::atomic::Ordering::Relaxed) {
            return f.write_str("server stopped: drain over");
        }
        match self {
            End::ClientClosed => f.write_str("local client closed"),
            End::TargetClosed => f.write_str("remote peer closed"),
            End::ClientError(e) => write!(f, "local client error ({})", crate::log::errno_text(e)),
            End::TargetError(e) => write!(f, "remote peer error ({})", crate::log::errno_text(e)),
            End::IoTimeout => f.write_str("i/o timeout"),
            End::FinWaitTimeout => f.write_str("tcp_fin_wait timeout"),
        }
    }
}

/// Relay options taken from the session's rule.
#[derive(Clone, Default)]
pub struct Options {
    pub io_timeout: Option<Duration>,
    pub fin_wait: Option<Duration>,
    /// The rule logs data or i/o operations, so every chunk must pass through user space.
    pub see_bytes: bool,
    /// The rule's `bandwidth:`, shared with its other sessions; both directions pay.
    pub pace: Option<Rc<Pace>>,
}

enum PumpError {
    Read(io::Error),
    Write(io::Error),
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    // One direct send first: a socket the relay has just received has no readiness in tokio
    // yet, and learning it costs a trip through epoll for a write that nearly always fits.
    match rustix::net::send(dst, data, rustix::net::SendFlags::NOSIGNAL) {
        Ok(n) => data = &data[n..],
        Err(rustix::io::Errno::AGAIN) => {}
        Err(e) => return Err(e.into()),
    }
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `data` to `dst` completely (used for the reply and prefetched bytes).
pub async fn send_all(dst: &TcpStream, data: &[u8]) -> io::Result<()> {
    write_all(dst, data).await
}

/// Copies `src` to `dst` until EOF (then half-closes `dst`) or an error, by splice(2) through a
/// pooled pipe unless the rule wants to see the bytes or the engine is `copy`.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    read_count: &Cell<u64>,
    write_count: &Cell<u64>,
    last_io: &Cell<Instant>,
    on_data: &dyn Fn(&[u8]),
    opts: &Options,
) -> Result<(), PumpError> {
    let pace = opts.pace.as_deref();
    let spliced = match pipes::engine() {
        Engine::Splice(size) if !opts.see_bytes => {
            pump_splice(src, dst, read_count, write_count, last_io, size, pace).await?
        }
        _ => Spliced::Unsupported,
    };
    if let Spliced::Unsupported = spliced {
        // Boxed so that the splice path, which every idle session waits in, stays small.
        Box::pin(pump_copy(
            src,
            dst,
            read_count,
            write_count,
            last_io,
            on_data,
            pace,
        ))
        .await?;
    }
    on_data(&[]);
    // The peer may already be gone; the other direction will report that.
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(())
}

enum Spliced {
    Eof,
    /// splice(2) refused these descriptors, or no pipe could be had: copy instead.
    Unsupported,
}

fn splice_flags() -> SpliceFlags {
    SpliceFlags::MOVE | SpliceFlags::NONBLOCK
}

/// The splice engine: socket -> pipe, then pipe -> socket until the pipe is empty again. The
/// pipe is held only while it holds bytes; a pipe abandoned with bytes in it (an error, or the
/// session ending while this direction waits to write) is closed, never pooled.
async fn pump_splice(
    src: &TcpStream,
    dst: &TcpStream,
    read_count: &Cell<u64>,
    write_count: &Cell<u64>,
    last_io: &Cell<Instant>,
    size: usize,
    pace: Option<&Pace>,
) -> Result<Spliced, PumpError> {
    // A paced session reads at most a chunk at a time, so it waits its turn often.
    let most = pace.map_or(usize::MAX, Pace::chunk);
    loop {
        src.readable().await.map_err(PumpError::Read)?;
        let Ok(pipe) = pipes::take(size) else {
            return Ok(Spliced::Unsupported);
        };
        // A read shorter than the pipe has slots stopped because the socket's queue was empty
        // (or at a FIN, which tokio keeps as a readiness of its own), so it reports WouldBlock
        // to tokio to clear the readiness: the next read then waits for epoll instead of
        // costing a splice that returns EAGAIN, as tokio's own poll_read does after a short
        // read. Small messages are where that extra call weighs most.
        let mut drained = 0;
        let filled = src.try_io(Interest::READABLE, || {
            let want = pipe.size.min(most);
            let n = splice(src, None, &pipe.write, None, want, splice_flags())?;
            if n > 0 && n < pipe.slots().min(want) {
                drained = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match filled {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => drained,
            // splice(2) stops at TCP urgent data (MSG_OOB) and then answers EAGAIN, or 0 once
            // the peer's FIN is queued, with bytes still waiting behind the mark (which epoll
            // will not report again). A peek after each tells those bytes from a real end.
            Ok(0) => {
                pipes::give_back(pipe);
                if let Queued::Bytes = queued(src) {
                    read_past_urgent_mark(src, dst, read_count, write_count, last_io).await?;
                    continue;
                }
                last_io.set(Instant::now());
                return Ok(Spliced::Eof);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pipes::give_back(pipe);
                match queued(src) {
                    Queued::Nothing => continue,
                    Queued::Eof => {
                        last_io.set(Instant::now());
                        return Ok(Spliced::Eof);
                    }
                    Queued::Bytes => {
                        read_past_urgent_mark(src, dst, read_count, write_count, last_io).await?;
                        continue;
                    }
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                pipes::give_back(pipe);
                return Ok(Spliced::Unsupported);
            }
            Err(e) => return Err(PumpError::Read(e)),
        };
        last_io.set(Instant::now());
        read_count.set(read_count.get() + n as u64);
        if let Some(p) = pace {
            p.pay(n).await;
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await.map_err(PumpError::Write)?;
            let drained = dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, dst, None, left, splice_flags()).map_err(io::Error::from)
            });
            match drained {
                Ok(0) => return Err(PumpError::Write(io::ErrorKind::WriteZero.into())),
                Ok(m) => {
                    left -= m;
                    write_count.set(write_count.get() + m as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(PumpError::Write(e)),
            }
        }
        last_io.set(Instant::now());
        pipes::give_back(pipe);
    }
}

/// What a socket holds when splice(2) from it reported EAGAIN.
enum Queued {
    Nothing,
    Eof,
    /// Bytes splice(2) will not move: they lie behind TCP urgent data (MSG_OOB), where the
    /// kernel's splice stops and keeps answering EAGAIN, and epoll will not report them again.
    Bytes,
}

/// Peeks at the socket after splice(2) answered EAGAIN or 0: one recv(2) at each end of a
/// direction and at each EAGAIN, which the short-read rule above keeps rare (a drained socket
/// is not read again until epoll says so).
fn queued(src: &TcpStream) -> Queued {
    let mut one = [0u8; 1];
    match rustix::net::recv(
        src,
        &mut one,
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    ) {
        Ok((0, _)) => Queued::Eof,
        Ok(_) => Queued::Bytes,
        // EAGAIN, or an error the next splice reports.
        Err(_) => Queued::Nothing,
    }
}

/// Moves a session past TCP urgent data: one read(2), which steps over the urgent byte (it is
/// out of band: a plain reader, our copy engine included, never sees it in the stream) and
/// clears the mark, so splice(2) works again from the next read on.
async fn read_past_urgent_mark(
    src: &TcpStream,
    dst: &TcpStream,
    read_count: &Cell<u64>,
    write_count: &Cell<u64>,
    last_io: &Cell<Instant>,
) -> Result<(), PumpError> {
    let mut buf = PooledBuf::take();
    let n = match rustix::net::recv(src, &mut buf[..], rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        Err(rustix::io::Errno::AGAIN) => return Ok(()),
        Err(e) => return Err(PumpError::Read(e.into())),
    };
    last_io.set(Instant::now());
    read_count.set(read_count.get() + n as u64);
    write_all(dst, &buf[..n]).await.map_err(PumpError::Write)?;
    write_count.set(write_count.get() + n as u64);
    Ok(())
}

/// The read/write engine, through a pooled buffer held only while a chunk is in flight.
async fn pump_copy(
    src: &TcpStream,
    dst: &TcpStream,
    read_count: &Cell<u64>,
    write_count: &Cell<u64>,
    last_io: &Cell<Instant>,
    on_data: &dyn Fn(&[u8]),
    pace: Option<&Pace>,
) -> Result<(), PumpError> {
    loop {
        src.readable().await.map_err(PumpError::Read)?;
        let mut buf = PooledBuf::take();
        let most = pace.map_or(buf.len(), |p| p.chunk().min(buf.len()));
        let n = match src.try_read(&mut buf[..most]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        last_io.set(Instant::now());
        if n == 0 {
            return Ok(());
        }
        read_count.set(read_count.get() + n as u64);
        if let Some(p) = pace {
            p.pay(n).await;
        }
        on_data(&buf[..n]);
        write_all(dst, &buf[..n]).await.map_err(PumpError::Write)?;
        write_count.set(write_count.get() + n as u64);
        last_io.set(Instant::now());
    }
}

/// Waits for an optional timer; never completes without one.
async fn expire(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(s) => s.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Makes the kernel send RST instead of FIN when `s` is closed.
pub fn reset_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// Relays until both directions end, or an error or timeout ends the session.
/// `on_data(dir, bytes)` sees every chunk (empty = EOF) for `log: data`/`iooperation`.
pub async fn relay(
    client: &TcpStream,
    target: &TcpStream,
    stats: &Stats,
    opts: Options,
    on_data: &dyn Fn(Dir, &[u8]),
) -> End {
    let c2t_log = |b: &[u8]| on_data(Dir::ClientToTarget, b);
    let t2c_log = |b: &[u8]| on_data(Dir::TargetToClient, b);
    let c2t = pump(
        client,
        target,
        &stats.from_client,
        &stats.to_target,
        &stats.last_io,
        &c2t_log,
        &opts,
    );
    let t2c = pump(
        target,
        client,
        &stats.from_target,
        &stats.to_client,
        &stats.last_io,
        &t2c_log,
        &opts,
    );
    tokio::pin!(c2t, t2c);
    let mut c2t_done = false;
    let mut t2c_done = false;
    let mut first_close: Option<End> = None;
    // Timers exist only when the rule asks for them, and live outside the task, so a session
    // without timeouts carries none.
    let mut idle = opts
        .io_timeout
        .map(|t| Box::pin(tokio::time::sleep_until(stats.last_io.get() + t)));
    let mut fin: Option<Pin<Box<Sleep>>> = None;
    loop {
        if c2t_done && t2c_done {
            return first_close.unwrap_or(End::ClientClosed);
        }
        tokio::select! {
            r = &mut c2t, if !c2t_done => {
                c2t_done = true;
                match r {
                    Ok(()) => {
                        first_close.get_or_insert(End::ClientClosed);
                        if let Some(t) = opts.fin_wait {
                            fin = Some(Box::pin(tokio::time::sleep_until(Instant::now() + t)));
                        }
                    }
                    Err(PumpError::Read(e)) => { reset_on_close(target); return End::ClientError(e); }
                    Err(PumpError::Write(e)) => { reset_on_close(client); return End::TargetError(e); }
                }
            }
            r = &mut t2c, if !t2c_done => {
                t2c_done = true;
                match r {
                    Ok(()) => {
                        first_close.get_or_insert(End::TargetClosed);
                        if let Some(t) = opts.fin_wait {
                            fin = Some(Box::pin(tokio::time::sleep_until(Instant::now() + t)));
                        }
                    }
                    Err(PumpError::Read(e)) => { reset_on_close(client); return End::TargetError(e); }
                    Err(PumpError::Write(e)) => { reset_on_close(target); return End::ClientError(e); }
                }
            }
            _ = expire(&mut idle) => {
                let t = opts.io_timeout.unwrap_or(Duration::ZERO);
                let deadline = stats.last_io.get() + t;
                if Instant::now() >= deadline {
                    return End::IoTimeout;
                }
                if let Some(s) = idle.as_mut() {
                    s.as_mut().reset(deadline);
                }
            }
            _ = expire(&mut fin) => return End::FinWaitTimeout,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Two connected pairs: (outer client, relay's client side), (relay's target side, outer target).
    async fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (d, _) = l.accept().await.unwrap();
        ((a, b), (c, d))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn half_close_both_ways_keeps_bytes() {
        let ((mut outer_c, relay_c), (relay_t, mut outer_t)) = pairs().await;
        let stats = Stats::default();
        let job = async { relay(&relay_c, &relay_t, &stats, Options::default(), &|_, _| {}).await };
        let peers = async {
            outer_c.write_all(b"request").await.unwrap();
            outer_c.shutdown().await.unwrap(); // client half-closes
            let mut got = Vec::new();
            outer_t.read_to_end(&mut got).await.unwrap(); // target sees EOF after the bytes
            assert_eq!(got, b"request");
            outer_t.write_all(b"response after FIN").await.unwrap();
            outer_t.shutdown().await.unwrap();
            let mut back = Vec::new();
            outer_c.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"response after FIN");
        };
        let (end, ()) = tokio::join!(job, peers);
        assert!(matches!(end, End::ClientClosed), "{end:?}");
        assert_eq!(stats.from_client.get(), 7);
        assert_eq!(stats.to_client.get(), 18);
    }

    /// Deterministic bytes that reveal loss, duplication or reordering.
    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// 8 MiB each way at once, through each engine: every byte arrives, in order, and the
    /// directions' pipes are back in the pool afterwards (none held by the ended session).
    async fn both_ways_intact(engine: Engine) {
        pipes::set_engine(engine);
        let ((outer_c, relay_c), (relay_t, outer_t)) = pairs().await;
        let up = pattern(8 << 20, 1);
        let down = pattern(8 << 20, 2);
        let stats = Stats::default();
        let job = async { relay(&relay_c, &relay_t, &stats, Options::default(), &|_, _| {}).await };
        let (mut c_rd, mut c_wr) = outer_c.into_split();
        let (mut t_rd, mut t_wr) = outer_t.into_split();
        let peers = async {
            let send_up = async {
                c_wr.write_all(&up).await.unwrap();
                c_wr.shutdown().await.unwrap();
            };
            let send_down = async {
                t_wr.write_all(&down).await.unwrap();
                t_wr.shutdown().await.unwrap();
            };
            let mut got_up = Vec::new();
            let mut got_down = Vec::new();
            let recv_up = t_rd.read_to_end(&mut got_up);
            let recv_down = c_rd.read_to_end(&mut got_down);
            let (_, _, a, b) = tokio::join!(send_up, send_down, recv_up, recv_down);
            a.unwrap();
            b.unwrap();
            assert!(got_up == up, "client-to-target bytes differ ({engine:?})");
            assert!(
                got_down == down,
                "target-to-client bytes differ ({engine:?})"
            );
        };
        let (end, ()) = tokio::join!(job, peers);
        assert!(
            !matches!(end, End::ClientError(_) | End::TargetError(_)),
            "{end:?}"
        );
        assert_eq!(stats.from_client.get(), 8 << 20);
        assert_eq!(stats.to_target.get(), 8 << 20);
        assert_eq!(stats.from_target.get(), 8 << 20);
        assert_eq!(stats.to_client.get(), 8 << 20);
        if let Engine::Splice(_) = engine {
            assert!(pipes::pooled() >= 1, "the pipes went back to the pool");
        }
        pipes::set_engine(Engine::Splice(pipes::DEFAULT_PIPE_SIZE));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn splice_1m_keeps_every_byte() {
        both_ways_intact(Engine::Splice(1 << 20)).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn splice_64k_keeps_every_byte() {
        both_ways_intact(Engine::Splice(64 << 10)).await;
    }

    /// Request/response traffic: each message must arrive while its sender waits for the
    /// answer, so a read that wrongly cleared readiness with bytes still queued would hang
    /// here. Sizes cross the 1 MiB pipe's slot count (256), where the short-read shortcut
    /// stops applying, and a burst of 1-byte writes follows. (A shortcut that cleared
    /// readiness after full reads too hangs the bulk tests below, where the pipe fills.)
    #[tokio::test(flavor = "current_thread")]
    async fn small_messages_one_at_a_time_all_arrive() {
        let ((mut outer_c, relay_c), (relay_t, mut outer_t)) = pairs().await;
        outer_c.set_nodelay(true).unwrap();
        outer_t.set_nodelay(true).unwrap();
        let stats = Stats::default();
        let job = async { relay(&relay_c, &relay_t, &stats, Options::default(), &|_, _| {}).await };
        let peers = async {
            let mut total = 0u64;
            for i in 0..400usize {
                let len = 1 + (i * 7) % 300;
                let msg = pattern(len, i as u64);
                outer_c.write_all(&msg).await.unwrap();
                let mut got = vec![0u8; len];
                outer_t.read_exact(&mut got).await.unwrap();
                assert!(got == msg, "message {i} differs");
                outer_t.write_all(&got).await.unwrap();
                let mut back = vec![0u8; len];
                outer_c.read_exact(&mut back).await.unwrap();
                assert!(back == msg, "answer {i} differs");
                total += len as u64;
            }
            for b in 0..500u32 {
                outer_c.write_all(&[b as u8]).await.unwrap();
            }
            let mut burst = vec![0u8; 500];
            outer_t.read_exact(&mut burst).await.unwrap();
            assert!(burst.iter().enumerate().all(|(i, b)| *b == i as u8));
            outer_c.shutdown().await.unwrap();
            let mut rest = Vec::new();
            outer_t.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            outer_t.shutdown().await.unwrap();
            total + 500
        };
        let both = async { tokio::join!(job, peers) };
        let (end, total) = tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .expect("a message was left waiting in the relay");
        assert!(matches!(end, End::ClientClosed), "{end:?}");
        assert_eq!(stats.to_target.get(), total);
    }

    /// TCP urgent data (MSG_OOB) in the middle of a session: splice(2) stops at the urgent
    /// mark and keeps answering EAGAIN, so without the peek the bytes behind it, and the FIN,
    /// never moved. The urgent byte itself is out of band and not relayed (as with read(2)).
    async fn urgent_data_does_not_stall(engine: Engine) {
        pipes::set_engine(engine);
        let ((mut outer_c, relay_c), (relay_t, mut outer_t)) = pairs().await;
        let stats = Stats::default();
        let job = async { relay(&relay_c, &relay_t, &stats, Options::default(), &|_, _| {}).await };
        let peers = async {
            outer_c.write_all(b"before").await.unwrap();
            let mut got = [0u8; 6];
            outer_t.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"before");
            socket2::SockRef::from(&outer_c)
                .send_out_of_band(b"!")
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            outer_c.write_all(b"after").await.unwrap();
            outer_c.shutdown().await.unwrap();
            let mut rest = Vec::new();
            outer_t.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"after", "{engine:?}");
            outer_t.shutdown().await.unwrap();
        };
        let both = async { tokio::join!(job, peers) };
        let (end, ()) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .unwrap_or_else(|_| panic!("the session stalled at the urgent byte ({engine:?})"));
        assert!(matches!(end, End::ClientClosed), "{end:?}");
        pipes::set_engine(Engine::Splice(pipes::DEFAULT_PIPE_SIZE));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn urgent_data_does_not_stall_splice() {
        urgent_data_does_not_stall(Engine::Splice(pipes::DEFAULT_PIPE_SIZE)).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn urgent_data_does_not_stall_copy() {
        urgent_data_does_not_stall(Engine::Copy).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn copy_keeps_every_byte() {
        both_ways_intact(Engine::Copy).await;
    }

    /// A rule that logs data needs the bytes in user space: the copy engine runs and sees each
    /// chunk and both EOFs, even though splice is the process's engine.
    #[tokio::test(flavor = "current_thread")]
    async fn logged_sessions_see_the_bytes() {
        let ((mut outer_c, relay_c), (relay_t, mut outer_t)) = pairs().await;
        let stats = Stats::default();
        let seen = std::cell::RefCell::new(Vec::<(Dir, Vec<u8>)>::new());
        let on_data = |d: Dir, b: &[u8]| seen.borrow_mut().push((d, b.to_vec()));
        let opts = Options {
            see_bytes: true,
            ..Options::default()
        };
        let job = async { relay(&relay_c, &relay_t, &stats, opts, &on_data).await };
        let peers = async {
            outer_c.write_all(b"hello").await.unwrap();
            outer_c.shutdown().await.unwrap();
            let mut got = Vec::new();
            outer_t.read_to_end(&mut got).await.unwrap();
            outer_t.shutdown().await.unwrap();
            assert_eq!(got, b"hello");
        };
        let (_end, ()) = tokio::join!(job, peers);
        let seen = seen.into_inner();
        assert!(
            seen.contains(&(Dir::ClientToTarget, b"hello".to_vec())),
            "{seen:?}"
        );
        assert!(
            seen.contains(&(Dir::ClientToTarget, Vec::new())),
            "{seen:?}"
        );
        assert!(
            seen.contains(&(Dir::TargetToClient, Vec::new())),
            "{seen:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reset_is_passed_on() {
        let ((outer_c, relay_c), (relay_t, mut outer_t)) = pairs().await;
        let stats = Stats::default();
        let job = async move {
            let end = relay(&relay_c, &relay_t, &stats, Options::default(), &|_, _| {}).await;
            // Closing the target side now sends the RST the engine armed.
            drop(relay_t);
            end
        };
        let peers = async {
            reset_on_close(&outer_c);
            drop(outer_c);
            let mut buf = [0u8; 8];
            let r = outer_t.read(&mut buf).await;
            assert!(
                matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                "{r:?}"
            );
        };
        let (end, ()) = tokio::join!(job, peers);
        assert!(matches!(end, End::ClientError(_)), "{end:?}");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn idle_timeout_ends_session() {
        let ((_oc, relay_c), (relay_t, _ot)) = pairs().await;
        let stats = Stats::default();
        let end = relay(
            &relay_c,
            &relay_t,
            &stats,
            Options {
                io_timeout: Some(Duration::from_secs(5)),
                fin_wait: None,
                see_bytes: false,
                pace: None,
            },
            &|_, _| {},
        )
        .await;
        assert!(matches!(end, End::IoTimeout), "{end:?}");
    }
}
