//! The outgoing connect: every address of the target tried, Happy Eyeballs style (RFC 8305),
//! from the configured `external:` address. Dante tries only the first address.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use rsockd_config::{Side, SockOpt};

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// RFC 8305's recommended "Connection Attempt Delay".
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Orders addresses as RFC 8305 §4 says: alternate families, starting with the family of the
/// first address the resolver returned.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut a, mut b): (Vec<_>, Vec<_>) =
        addrs.iter().partition(|x| x.is_ipv4() == first.is_ipv4());
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while !a.is_empty() || !b.is_empty() {
        if let Some(x) = a.pop() {
            out.push(x);
        }
        if let Some(x) = b.pop() {
            out.push(x);
        }
    }
    out
}

/// How outgoing sockets are set up before they connect.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// SO_KEEPALIVE (off with `-n`).
    pub keepalive: bool,
    /// The global `external.` socket options, then the socks rule's (which win).
    pub opts: Vec<SockOpt>,
    /// IP_FREEBIND before bind: the source may be any address of an `external:` prefix.
    pub freebind: bool,
}

impl Outgoing {
    pub fn new(keepalive: bool, global: &[SockOpt], rule: Option<&rsockd_config::Rule>) -> Self {
        let external = |o: &&SockOpt| o.side == Side::External;
        let mut opts: Vec<SockOpt> = global.iter().filter(external).cloned().collect();
        if let Some(r) = rule {
            opts.extend(r.sockopts.iter().filter(external).cloned());
        }
        Outgoing {
            keepalive,
            opts,
            freebind: false,
        }
    }
}

/// One address to try and the local address to connect from (None = let the kernel choose).
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    /// The local port to connect from (`redirect from: .. port = P`); 0 = any.
    pub source_port: u16,
}

/// Why no attempt succeeded: the error of the last attempt that failed, and its target.
#[derive(Debug)]
pub struct ConnectError {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub error: io::Error,
}

async fn attempt(a: Attempt, out: &Outgoing) -> Result<TcpStream, ConnectError> {
    let fail = |error| ConnectError {
        target: a.target,
        source: a.source,
        error,
    };
    let sock = if a.target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    if out.keepalive {
        sock.set_keepalive(true).map_err(fail)?;
    }
    if !out.opts.is_empty() {
        super::sockopts::apply(
            sock.as_fd(),
            &out.opts,
            Side::External,
            super::sockopts::Kind::Tcp,
            a.target.is_ipv6(),
        );
    }
    if let Some(src) = a.source {
        if out.freebind {
            let _ =
                rsockd_sys::sockopt::set_int(sock.as_fd(), libc::IPPROTO_IP, libc::IP_FREEBIND, 1);
        }
        if a.source_port != 0 {
            // One fixed source port serves sessions to different targets (the 4-tuples
            // differ); the kernel still refuses a tuple that is in use.
            sock.set_reuseaddr(true).map_err(fail)?;
        } else if src.is_ipv4() {
            // Best effort: without it we merely reserve a port earlier.
            let _ = rsockd_sys::sockopt::set_bind_address_no_port(sock.as_fd());
        }
        sock.bind(SocketAddr::new(src, a.source_port))
            .map_err(fail)?;
    }
    sock.connect(a.target).await.map_err(fail)
}

/// Connects to the first attempt that succeeds. A new attempt starts when the previous one
/// fails or after `ATTEMPT_DELAY`, so a black-holed address costs 250 ms, not a full timeout.
pub async fn happy_eyeballs(
    attempts: &[Attempt],
    out: &Outgoing,
) -> Result<(TcpStream, Attempt), ConnectError> {
    // Most targets have one address: no task, no timer.
    if let [a] = attempts {
        return attempt(*a, out).await.map(|s| (s, *a));
    }
    let out = Arc::new(out.clone());
    let mut set: JoinSet<Result<(TcpStream, Attempt), ConnectError>> = JoinSet::new();
    let mut next = 0usize;
    let mut last_err: Option<ConnectError> = None;
    let start = |set: &mut JoinSet<_>, a: Attempt| {
        let out = out.clone();
        set.spawn(async move { attempt(a, &out).await.map(|s| (s, a)) });
    };
    if let Some(a) = attempts.first() {
        start(&mut set, *a);
        next = 1;
    }
    let delay = tokio::time::sleep(ATTEMPT_DELAY);
    tokio::pin!(delay);
    loop {
        if set.is_empty() {
            if next < attempts.len() {
                start(&mut set, attempts[next]);
                next += 1;
                delay
                    .as_mut()
                    .reset(tokio::time::Instant::now() + ATTEMPT_DELAY);
                continue;
            }
            return Err(last_err.unwrap_or_else(|| ConnectError {
                target: SocketAddr::from(([0, 0, 0, 0], 0)),
                source: None,
                error: io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to"),
            }));
        }
        tokio::select! {
            res = set.join_next() => match res {
                Some(Ok(Ok(won))) => return Ok(won),
                Some(Ok(Err(e))) => {
                    last_err = Some(e);
                    if next < attempts.len() {
                        start(&mut set, attempts[next]);
                        next += 1;
                        delay.as_mut().reset(tokio::time::Instant::now() + ATTEMPT_DELAY);
                    }
                }
                Some(Err(join)) => {
                    last_err = Some(ConnectError {
                        target: attempts.get(next.saturating_sub(1)).map(|a| a.target)
                            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                        source: None,
                        error: io::Error::other(join.to_string()),
                    });
                }
                None => {}
            },
            _ = &mut delay, if next < attempts.len() => {
                start(&mut set, attempts[next]);
                next += 1;
                delay.as_mut().reset(tokio::time::Instant::now() + ATTEMPT_DELAY);
            }
        }
    }
}

/// How the outgoing connection is made: the seam that lets the request path be tested
/// without a network (DESIGN §3). The server uses [`HappyEyeballs`].
pub trait Connector {
    /// Connects to the first of `attempts` that answers; the error is the last failure.
    fn connect(
        &self,
        attempts: &[Attempt],
        out: &Outgoing,
    ) -> impl Future<Output = Result<(TcpStream, Attempt), ConnectError>>;
}

/// [`happy_eyeballs`].
pub struct HappyEyeballs;

impl Connector for HappyEyeballs {
    fn connect(
        &self,
        attempts: &[Attempt],
        out: &Outgoing,
    ) -> impl Future<Output = Result<(TcpStream, Attempt), ConnectError>> {
        happy_eyeballs(attempts, out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn interleaves_families_starting_with_the_first() {
        let v = interleave(&[a("[::1]:1"), a("[::2]:1"), a("1.1.1.1:1"), a("2.2.2.2:1")]);
        assert_eq!(
            v,
            vec![a("[::1]:1"), a("1.1.1.1:1"), a("[::2]:1"), a("2.2.2.2:1")]
        );
        assert!(interleave(&[]).is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn falls_through_to_the_address_that_answers() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = l.local_addr().unwrap();
        // A port that refuses, then the good one.
        let closed = {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let attempts = [
            Attempt {
                target: closed,
                source: None,
                source_port: 0,
            },
            Attempt {
                target: good,
                source: Some("127.0.0.1".parse().unwrap()),
                source_port: 0,
            },
        ];
        let (s, won) = happy_eyeballs(&attempts, &Outgoing::default())
            .await
            .unwrap();
        assert_eq!(won.target, good);
        assert_eq!(s.peer_addr().unwrap(), good);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reports_the_last_error() {
        let closed = {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let e = happy_eyeballs(
            &[Attempt {
                target: closed,
                source: None,
                source_port: 0,
            }],
            &Outgoing::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.error.kind(), io::ErrorKind::ConnectionRefused);
    }
}
