//! Graceful stop of a mother (SIGTERM, the lead's drain order, or the end of an upgrade): the
//! listening sockets close, the relays drain for `rsockd.drain.timeout`, then they are told to
//! end what is left; we return when they are gone.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::Control;

use super::state::Mother;
use crate::channel::Channel;
use crate::log;
use crate::roles::child;
use crate::roles::signals::{Signal, Signals};

/// Graceful stop: the SOCKS listeners close at once (a balancer's check fails; the agent says
/// `drain`), established sessions run on for up to `rsockd.drain.timeout` seconds, then they
/// are ended (at once on a second SIGTERM, or when the lead says so), each with its line. We
/// return when our relays and (lead) the other mothers are gone, with a summary line.
pub(super) async fn stop(
    m: &Rc<Mother>,
    why: &str,
    signals: &mut Signals,
    upstream: Option<&Channel>,
) {
    child::stop_replacing();
    m.draining.set(true);
    m.stopping.set(true);
    let s = m.settings();
    // The agent goes on answering "drain" to the balancer and the admin port "503 stopping"
    // with the metrics of the drain, unless a new family answers now.
    let handover = m.handing_over.get();
    let keep = |a: &SocketAddr| !handover && !s.is_socks(a);
    let socks: Vec<SocketAddr> = m
        .accepting
        .borrow()
        .keys()
        .copied()
        .filter(|a| !keep(a))
        .collect();
    for a in &socks {
        if let Some(h) = m.accepting.borrow_mut().remove(a) {
            h.abort();
        }
    }
    // Our copies too, or the kernel would keep queueing clients nobody accepts.
    m.listeners.borrow_mut().retain(|(a, _)| keep(a));
    // The aborted accept tasks drop (and close) their sockets when next scheduled: now.
    tokio::task::yield_now().await;
    log::info(why);
    let timeout = s.drain_timeout();
    let open = m.pool.total_sessions();
    if open > 0 && !timeout.is_zero() {
        log::info(&format!(
            "sigterm(): {open} session(s) may run on for up to {}s (rsockd.drain.timeout)",
            timeout.as_secs()
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    // The other mothers stop accepting at once too.
    if let Some(f) = &m.family {
        let order = if handover {
            Control::HandOver
        } else {
            Control::Drain
        };
        f.broadcast(&order, None).await;
    }
    // Clients still negotiating with us are handed to our relays as usual; a relay told to
    // drain before that could exit empty under them.
    let negotiating_until =
        tokio::time::Instant::now() + s.negotiate_timeout(None).unwrap_or(Duration::from_secs(30));
    while m.negotiating.get() > 0 && tokio::time::Instant::now() < negotiating_until {
        tokio::select! {
            _ = m.negotiating_changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    // The last hand-offs leave in the pool's next turn; the drain order must follow them.
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    m.pool.broadcast(&Control::Drain, None).await;
    let mut ended: Option<u32> = None;
    if timeout.is_zero() {
        ended = Some(end_now(m).await);
    }
    let mut end_order = false;
    loop {
        let gone = m.pool.live() == 0 && m.family.as_ref().is_none_or(|f| f.is_empty());
        if gone {
            break;
        }
        let from_lead = async {
            match upstream {
                Some(chan) => loop {
                    match chan.recv::<Control>().await {
                        Some((Control::EndNow, _)) => return true,
                        Some(_) => continue,
                        None => return false,
                    }
                },
                None => std::future::pending().await,
            }
        };
        let hard_stop = async {
            // Relays exit within 5 s of the end order; do not wait for one that cannot.
            match ended {
                Some(_) => tokio::time::sleep(Duration::from_secs(10)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if ended.is_none() => {
                end_order = true;
            }
            sig = signals.next() => match sig {
                Signal::Stop(_) => end_order = true,
                Signal::ChildExited => super::reap(m),
                _ => {}
            },
            told = from_lead, if ended.is_none() => end_order = told,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = hard_stop => {
                log::warning("sigterm(): relays still running 10 s after the end order; leaving them");
                break;
            }
        }
        super::reap(m);
        if end_order && ended.is_none() {
            ended = Some(end_now(m).await);
        }
        end_order = false;
    }
    let ended = ended.unwrap_or(0);
    if open > 0 || ended > 0 {
        log::info(&format!(
            "sigterm(): sessions drained: {}, ended: {ended}",
            open.saturating_sub(ended)
        ));
    }
    for (_, h) in m.accepting.borrow_mut().drain() {
        h.abort();
    }
    log::alert(&format!("mother[{}/{}]: shutting down", m.index, m.of));
}

/// The end of the drain: relays (and the other mothers, who tell theirs) end every session.
/// Returns how many of ours were still open.
async fn end_now(m: &Rc<Mother>) -> u32 {
    let n = m.pool.total_sessions();
    if n > 0 {
        log::info(&format!("sigterm(): drain over: ending {n} session(s)"));
    }
    m.pool.broadcast(&Control::EndNow, None).await;
    if let Some(f) = &m.family {
        f.broadcast(&Control::EndNow, None).await;
    }
    n
}
