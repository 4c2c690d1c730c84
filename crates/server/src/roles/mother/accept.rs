//! Accepting clients on the shared listening sockets: one task per socket, each client's
//! negotiation a task of its own, and a pause instead of a spin when descriptors run out.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_sys::accept::ExclusiveAccept;
use tokio::net::TcpStream;

use super::session;
use super::state::Mother;
use crate::log;
use crate::scoreboard::counters;
use crate::settings::Port;

/// Accepts clients on one socket until aborted.
async fn accept_loop(m: Rc<Mother>, listener: ExclusiveAccept, bound: SocketAddr) {
    let mut emfile_logged = false;
    loop {
        match listener.accept().await {
            Ok((fd, peer)) => {
                emfile_logged = false;
                // Accepted non-blocking (SOCK_NONBLOCK).
                let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                    continue;
                };
                let m = m.clone();
                m.negotiating.set(m.negotiating.get() + 1);
                counters::set_negotiating(m.negotiating.get());
                m.negotiating_changed.notify_one();
                tokio::task::spawn_local(async move {
                    session::handle(m.clone(), stream, peer, bound).await;
                    m.negotiating.set(m.negotiating.get().saturating_sub(1));
                    counters::set_negotiating(m.negotiating.get());
                    m.negotiating_changed.notify_one();
                });
            }
            Err(e) => {
                let code = e.raw_os_error();
                if code == Some(libc::EMFILE) || code == Some(libc::ENFILE) {
                    // Out of descriptors: pause instead of spinning on a ready listener.
                    if !emfile_logged {
                        log::warning(&format!(
                            "accept(2) failed: {e}; pausing accepting while descriptors are short"
                        ));
                        emfile_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else if code == Some(libc::EAGAIN) || code == Some(libc::ECONNABORTED) {
                    // Another mother won the race, or the client gave up: normal.
                } else {
                    log::debug(&format!("accept(2) failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

pub(super) fn start_accepting(
    m: &Rc<Mother>,
    addr: SocketAddr,
    fd: OwnedFd,
) -> std::io::Result<()> {
    m.listeners.borrow_mut().retain(|(a, _)| *a != addr);
    m.listeners.borrow_mut().push((addr, fd.try_clone()?));
    let std_l = std::net::TcpListener::from(fd);
    std_l.set_nonblocking(true)?;
    let port = m.settings().port(&addr);
    if port != Port::Socks {
        let bound = std_l.local_addr().unwrap_or(addr);
        let l = ExclusiveAccept::new(OwnedFd::from(std_l))?;
        let h = match port {
            Port::Metrics => super::admin::start(m, l, bound),
            _ => super::agent::start(m, l, bound),
        };
        m.accepting.borrow_mut().insert(addr, h);
        return Ok(());
    }
    // Accepted sockets inherit SO_KEEPALIVE from the listener (Linux copies the socket flags
    // and arms the timer in the child), which saves a setsockopt(2) per client. Every mother
    // sets the same value on the shared socket.
    socket2::SockRef::from(&std_l).set_keepalive(m.settings().keepalive())?;
    // The global `internal.` options go on the listening socket too (Dante sets them before
    // bind; here the socket may come from systemd or an upgrade): accepted sockets inherit
    // them, and those that matter at the handshake (buffers, MSS, TOS) apply to it.
    crate::net::sockopts::apply(
        std::os::fd::AsFd::as_fd(&std_l),
        &m.settings().config.sockopts,
        rsockd_config::Side::Internal,
        crate::net::sockopts::Kind::Tcp,
        addr.is_ipv6(),
    );
    // Tests and admins learn the real port from this line when the config says `port = 0`.
    let bound = std_l.local_addr().unwrap_or(addr);
    let l = ExclusiveAccept::new(OwnedFd::from(std_l))?;
    log::info(&format!("accepting clients on {}", log::addr(&bound)));
    let h = tokio::task::spawn_local(accept_loop(m.clone(), l, bound));
    m.accepting.borrow_mut().insert(addr, h);
    Ok(())
}

pub(super) fn stop_accepting(m: &Mother, a: &SocketAddr) {
    if let Some(h) = m.accepting.borrow_mut().remove(a) {
        h.abort();
    }
    m.listeners.borrow_mut().retain(|(x, _)| x != a);
    let what = match m.settings().port(a) {
        Port::Socks => "accepting clients",
        Port::Agent => "answering agent checks",
        Port::Metrics => "serving /metrics and /healthz",
    };
    log::info(&format!("no longer {what} on {}", log::addr(a)));
}
