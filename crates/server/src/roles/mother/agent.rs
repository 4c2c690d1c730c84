//! `rsockd.agent:` (our extension): HAProxy's `agent-check`. The balancer connects, may send
//! a line of its own (`agent-send`), and reads one line back: `up`, `drain` (no new sessions,
//! keep the running ones: `rsockd --drain`) or `down`. Like the SOCKS listeners the socket is
//! shared by every mother, so the answer comes from whichever mother lives.
//!
//! Never a SOCKS port: nothing the peer sends is interpreted, and each check is one short
//! write, bounded in time.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use rsockd_sys::accept::ExclusiveAccept;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::Mother;
use crate::log;
use crate::metrics::health::Health;

/// How long a check may take in all (HAProxy's default `timeout check` is 2 s and more).
const CHECK_TIME: Duration = Duration::from_secs(2);
/// Bytes of `agent-send` text read and thrown away before closing, so that unread bytes
/// do not turn our close into a reset that could race the answer.
const DISCARD_MAX: usize = 1024;

/// The agent-check line for the node's health.
pub(super) fn line(h: Health) -> &'static [u8] {
    match h {
        Health::Serving => b"up\n",
        Health::Draining | Health::Stopping => b"drain\n",
        Health::NoListener | Health::NoRelay => b"down\n",
    }
}

/// Answers agent checks on one socket until aborted.
pub(super) async fn serve(m: Rc<Mother>, listener: ExclusiveAccept) {
    loop {
        match listener.accept().await {
            Ok((fd, _peer)) => {
                let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                    continue;
                };
                let answer = line(m.health());
                tokio::task::spawn_local(async move {
                    let _ = tokio::time::timeout(CHECK_TIME, answer_one(stream, answer)).await;
                });
            }
            Err(e) => {
                let code = e.raw_os_error();
                if code != Some(libc::EAGAIN) && code != Some(libc::ECONNABORTED) {
                    log::debug(&format!("agent: accept(2) failed: {e}"));
                    // Out of descriptors or worse: do not spin on a ready listener.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Writes the answer, closes our side, and reads what the balancer sent until it closes too.
async fn answer_one(mut stream: TcpStream, answer: &[u8]) {
    if stream.write_all(answer).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 256];
    let mut seen = 0;
    while seen < DISCARD_MAX {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
}

/// Starts answering on `listener`; logs where, as the SOCKS listeners do.
pub(super) fn start(
    m: &Rc<Mother>,
    listener: ExclusiveAccept,
    bound: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    log::info(&format!("answering agent checks on {}", log::addr(&bound)));
    tokio::task::spawn_local(serve(m.clone(), listener))
}
