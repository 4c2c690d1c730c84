//! `rsockd.metrics:` (our extension): the admin HTTP port. Like the SOCKS listeners the socket
//! is shared by every mother, so it answers while any mother lives, and each answer holds the
//! whole server's totals (they live in the shared counters region).
//!
//! The port faces monitoring, not clients, and must never hurt SOCKS service: each mother
//! serves at most [`MAX_CONNS`] connections at once and closes the ones beyond at accept; a
//! request's head must arrive within [`HEAD_TIME`] and fit in [`HEAD_MAX`] bytes; and a
//! connection is closed after [`CONN_TIME`] whatever it does. Hyper parses HTTP/1.1.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rsockd_sys::accept::ExclusiveAccept;
use tokio::net::TcpStream;

use super::state::Mother;
use crate::log;
use crate::metrics::health::Health;
use crate::metrics::http::{self, Source};
use crate::scoreboard::counters::{self, Snapshot};
use crate::scoreboard::LimitRow;

/// Connections one mother serves at once (scrapers are few; a flood is closed at accept).
const MAX_CONNS: usize = 32;
/// Time for a request's head to arrive, from the connection's start or the previous answer.
const HEAD_TIME: Duration = Duration::from_secs(5);
/// Room for a request's head (hyper's smallest buffer).
const HEAD_MAX: usize = 8192;
/// A connection's whole life (Prometheus reconnects; a slow reader cannot hold a slot).
const CONN_TIME: Duration = Duration::from_secs(30);
/// After [`CONN_TIME`], time to finish the answer in progress.
const FINISH_TIME: Duration = Duration::from_secs(5);

impl Source for Mother {
    fn health(&self) -> Health {
        Mother::health(self)
    }

    fn snapshot(&self) -> Option<Snapshot> {
        counters::snapshot()
    }

    fn limits(&self) -> Vec<LimitRow> {
        self.settings()
            .board
            .as_ref()
            .map(|b| b.limit_rows())
            .unwrap_or_default()
    }
}

/// Serves the admin port on one socket until aborted.
async fn serve(m: Rc<Mother>, listener: ExclusiveAccept) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok((fd, peer)) => {
                if open.get() >= MAX_CONNS {
                    // Closed at once: a flood of idle connections costs us no descriptor.
                    drop(fd);
                    continue;
                }
                let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                    continue;
                };
                open.set(open.get() + 1);
                let (m, open) = (m.clone(), open.clone());
                tokio::task::spawn_local(async move {
                    one(m, stream, peer).await;
                    open.set(open.get() - 1);
                });
            }
            Err(e) => {
                let code = e.raw_os_error();
                if code != Some(libc::EAGAIN) && code != Some(libc::ECONNABORTED) {
                    log::debug(&format!("admin port: accept(2) failed: {e}"));
                    // Out of descriptors or worse: do not spin on a ready listener.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// One HTTP/1.1 connection, bounded in time.
async fn one(m: Rc<Mother>, stream: TcpStream, peer: SocketAddr) {
    let svc = service_fn(move |req| {
        let resp = http::respond(&req, &*m);
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIME)
        .max_buf_size(HEAD_MAX);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = tokio::time::sleep(CONN_TIME) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(FINISH_TIME, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        log::debug(&format!("admin port: {}: {e}", log::addr(&peer)));
    }
}

/// Starts serving on `listener`; logs where, as the SOCKS listeners do.
pub(super) fn start(
    m: &Rc<Mother>,
    listener: ExclusiveAccept,
    bound: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    log::info(&format!(
        "serving /metrics and /healthz on {}",
        log::addr(&bound)
    ));
    tokio::task::spawn_local(serve(m.clone(), listener))
}
