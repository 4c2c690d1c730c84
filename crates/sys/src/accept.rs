//! Accepting on a listening socket that several mothers share, without waking them all.
//!
//! With `-N`, every mother waits on the same listening socket. Registered directly in each
//! mother's reactor, a new connection wakes every mother, and all but one then fail accept(2)
//! with EAGAIN: a wasted wake-up and system call per mother per client. `EPOLLEXCLUSIVE` makes
//! the kernel wake one waiter, but only a thread blocked in epoll_wait(2) on the instance that
//! holds the exclusive entry counts as woken: an instance that is itself watched by another
//! epoll (tokio's reactor) passes the wake-up on to every mother (observed: each client woke
//! both mothers of `-N 2`). So each mother puts the listener in a small epoll instance of its
//! own with `EPOLLEXCLUSIVE`, and one thread per listener blocks in epoll_wait on it. When a
//! client is queued, the kernel wakes one such thread, which tells its mother's runtime and
//! then sleeps until the mother has emptied the queue (the entry is level-triggered, so waiting
//! earlier would only report the same clients again). The kernel wakes exclusive waiters in the
//! order they registered, so a waiter that has served re-registers before it waits again: idle
//! mothers take clients in turn instead of the first one taking them all.
//!
//! The listener stays one socket with one backlog, so clients queued behind a mother that dies
//! are accepted by the others (unlike `SO_REUSEPORT`, which gives each its own backlog).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::SocketFlags;

/// A waiter not woken for this long looks at the queue itself. The kernel wakes one exclusive
/// waiter per client; a mother that is killed or stopped after its waiter was picked, and
/// before it accepted, would leave that client queued until the next one arrives (forever on
/// an idle server), since the other mothers were never told.
const RESCUE_AFTER_SECS: i64 = 1;

/// The epoll data of the listener and of the stop eventfd in the waiter's instance.
const LISTENER: u64 = 0;
const STOP: u64 = 1;

pub struct ExclusiveAccept {
    listener: OwnedFd,
    /// The waiter thread saw a client queued.
    ready: Arc<tokio::sync::Notify>,
    /// Tells the waiter to wait for the next client (true: the queue was found empty) or to
    /// exit (false).
    rearm: mpsc::Sender<bool>,
    /// Whether the waiter is in epoll_wait (true) or waits for `rearm`.
    waiting: Cell<bool>,
    /// Written on drop: the waiter leaves its epoll_wait and exits.
    stop: OwnedFd,
    /// Times the kernel woke this waiter for a queued client.
    wakeups: Arc<AtomicU64>,
    /// Joined on drop, so that its copy of the listener is closed when we are: a listener
    /// removed by a reload stops accepting at once.
    waiter: Option<std::thread::JoinHandle<()>>,
}

impl ExclusiveAccept {
    /// Takes a non-blocking listening socket; starts its waiter thread.
    pub fn new(listener: OwnedFd) -> io::Result<Self> {
        let ep = epoll::create(CreateFlags::CLOEXEC)?;
        // The waiter's own descriptor of the listener: epoll knows an entry by descriptor
        // number, and the waiter deletes and re-adds it.
        let watched = listener.try_clone()?;
        epoll::add(
            &ep,
            &watched,
            EventData::new_u64(LISTENER),
            EventFlags::IN | EventFlags::EXCLUSIVE,
        )?;
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&ep, &stop, EventData::new_u64(STOP), EventFlags::IN)?;
        let ready = Arc::new(tokio::sync::Notify::new());
        let (rearm, rearmed) = mpsc::channel();
        let wakeups = Arc::new(AtomicU64::new(0));
        let (told, counted) = (ready.clone(), wakeups.clone());
        let waiter = std::thread::Builder::new()
            .name("rsockd: accept".into())
            .spawn(move || wait_for_clients(ep, &watched, &told, &rearmed, &counted))?;
        Ok(ExclusiveAccept {
            listener,
            ready,
            rearm,
            waiting: Cell::new(true),
            stop,
            wakeups,
            waiter: Some(waiter),
        })
    }

    /// Times the kernel woke this acceptor for queued clients.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub fn listener(&self) -> &OwnedFd {
        &self.listener
    }

    /// The next client: its socket (non-blocking, close-on-exec) and address. Accepts without
    /// waiting while clients are queued; waits for the exclusive wake-up once the queue is empty.
    pub async fn accept(&self) -> io::Result<(OwnedFd, SocketAddr)> {
        loop {
            match rustix::net::acceptfrom_with(
                &self.listener,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            ) {
                Ok((fd, Some(addr))) => match SocketAddr::try_from(addr) {
                    Ok(a) => return Ok((fd, a)),
                    // Not an IP peer: cannot happen on a TCP listener; drop it.
                    Err(_) => continue,
                },
                Ok((_, None)) => continue,
                Err(Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            if !self.waiting.get() {
                self.rearm
                    .send(true)
                    .map_err(|_| io::Error::other("accept waiter thread is gone"))?;
                self.waiting.set(true);
            }
            self.ready.notified().await;
            self.waiting.set(false);
        }
    }
}

impl Drop for ExclusiveAccept {
    fn drop(&mut self) {
        // The waiter is in epoll_wait (the eventfd wakes it) or waits for a rearm (`false`
        // ends that); either way it returns at once.
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        let _ = self.rearm.send(false);
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
    }
}

/// The waiter thread: blocks in epoll_wait on the instance holding the exclusive entry, tells
/// the runtime when a client is queued, then waits until the runtime found the queue empty.
fn wait_for_clients(
    ep: OwnedFd,
    listener: &OwnedFd,
    ready: &tokio::sync::Notify,
    rearm: &mpsc::Receiver<bool>,
    wakeups: &AtomicU64,
) {
    let none = epoll::Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(u64::MAX),
    };
    let mut events = [none; 2];
    let rescue_after = Timespec {
        tv_sec: RESCUE_AFTER_SECS,
        tv_nsec: 0,
    };
    loop {
        let n = match epoll::wait(ep.as_fd(), &mut events, Some(&rescue_after)) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(_) => return,
        };
        let got = &events[..n.min(events.len())];
        if got.iter().any(|e| e.data.u64() == STOP) {
            return;
        }
        if got.is_empty() {
            if !client_queued(listener) {
                continue;
            }
        } else {
            wakeups.fetch_add(1, Ordering::Relaxed);
        }
        ready.notify_one();
        if rearm.recv() != Ok(true) {
            return;
        }
        // To the back of the line of waiting mothers. A client that arrives meanwhile is not
        // lost: another mother is woken, or the add finds the listener ready.
        if epoll::delete(&ep, listener).is_err() {
            return;
        }
        if epoll::add(
            &ep,
            listener,
            EventData::new_u64(LISTENER),
            EventFlags::IN | EventFlags::EXCLUSIVE,
        )
        .is_err()
        {
            return;
        }
    }
}

/// Whether a client waits in the listener's queue (poll(2), no waiting).
fn client_queued(listener: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Clients queued before we wait, and one arriving while we wait, are all accepted with
    /// their own addresses: the exclusive wake-up through our epoll instance is not lost.
    #[tokio::test(flavor = "current_thread")]
    async fn accepts_queued_and_later_clients() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let acc = ExclusiveAccept::new(OwnedFd::from(l)).unwrap();
        let early: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..early.len() {
            let (_fd, peer) = acc.accept().await.unwrap();
            assert!(
                early.iter().any(|e| e.local_addr().unwrap() == peer),
                "{peer}"
            );
        }
        let later = tokio::task::spawn_blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(addr).unwrap()
        });
        let (_fd, peer) = acc.accept().await.unwrap();
        let later = later.await.unwrap();
        assert_eq!(peer, later.local_addr().unwrap());
    }

    /// The kernel's one wake-up for a client goes to a mother that then never accepts (killed
    /// or stopped just after its waiter was picked): another mother's waiter, never woken,
    /// still finds the client within about a second.
    #[tokio::test(flavor = "current_thread")]
    async fn client_woken_for_a_mother_that_never_accepts_is_rescued() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let fd = OwnedFd::from(l);
        // The doomed mother: registered first, so first in line for the exclusive wake-up;
        // once woken it does nothing more.
        let doomed_ep = epoll::create(CreateFlags::CLOEXEC).unwrap();
        epoll::add(
            &doomed_ep,
            &fd,
            EventData::new_u64(LISTENER),
            EventFlags::IN | EventFlags::EXCLUSIVE,
        )
        .unwrap();
        let doomed = std::thread::spawn(move || {
            let none = epoll::Event {
                flags: EventFlags::empty(),
                data: EventData::new_u64(u64::MAX),
            };
            let mut events = [none; 1];
            // Bounded: if the kernel woke our acceptor instead, this returns 0 and the test
            // fails below rather than hanging.
            let limit = Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let n = epoll::wait(&doomed_ep, &mut events, Some(&limit)).unwrap();
            (n, doomed_ep)
        });
        let acc = ExclusiveAccept::new(fd.try_clone().unwrap()).unwrap();
        // Our mother finds the queue empty and waits, as a mother between clients does.
        let accepting = acc.accept();
        tokio::pin!(accepting);
        let idle = std::time::Duration::from_millis(200);
        assert!(tokio::time::timeout(idle, &mut accepting).await.is_err());
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (woken, _ep) = doomed.join().unwrap();
        assert_eq!(woken, 1, "the doomed mother took the wake-up");
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), accepting).await;
        let (_fd, peer) = got.expect("the queued client was never accepted").unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(acc.wakeups(), 0, "found by looking, not woken");
    }

    /// Two mothers' acceptors on one listener: each client wakes one of them, not both (what
    /// EPOLLEXCLUSIVE is for), and idle acceptors take the clients in turn.
    #[test]
    fn each_client_wakes_one_acceptor() {
        const CLIENTS: u64 = 20;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let fd = OwnedFd::from(l);
        let accepted = Arc::new(AtomicU64::new(0));
        let (woke_tx, woke_rx) = mpsc::channel();
        let mothers: Vec<_> = (0..2)
            .map(|_| {
                let (fd, accepted, woke) =
                    (fd.try_clone().unwrap(), accepted.clone(), woke_tx.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let acc = ExclusiveAccept::new(fd).unwrap();
                        let mut mine = 0u64;
                        while accepted.load(Ordering::SeqCst) < CLIENTS {
                            let got = tokio::time::timeout(
                                std::time::Duration::from_millis(200),
                                acc.accept(),
                            )
                            .await;
                            if let Ok(Ok(_)) = got {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                mine += 1;
                            }
                        }
                        woke.send((acc.wakeups(), mine)).unwrap();
                    });
                })
            })
            .collect();
        // Both waiters settle into epoll_wait before the first client.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for m in mothers {
            m.join().unwrap();
        }
        let each: Vec<(u64, u64)> = woke_rx.try_iter().collect();
        let wakeups: u64 = each.iter().map(|e| e.0).sum();
        assert!(
            each.iter().all(|e| e.1 > 0),
            "one acceptor took every client: {each:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), CLIENTS);
        eprintln!("{wakeups} wake-ups for {CLIENTS} clients");
        // Nested in tokio's epoll (the old way) this was 2 per client.
        assert!(
            wakeups <= CLIENTS + 2,
            "{wakeups} wake-ups for {CLIENTS} clients"
        );
    }
}
