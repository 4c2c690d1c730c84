//! The ident (RFC 1413) lookup of Dante's `rfc931` method: ask the ident server on the client's
//! host who owns the SOCKS connection.
//!
//! The query goes out from the address the client connected to (the SOCKS connection's local
//! address, port chosen by the kernel), so the ident server sees the same host pair as for the
//! connection it is asked about. The whole exchange (connect, query, reply) is bounded by one
//! timeout, and the reply by the codec's line cap (`rsockd_proto::ident::MAX_LINE_LEN`), so a
//! slow or hostile ident server costs at most that time and 1000 bytes.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;
use std::time::Duration;

use rsockd_proto::ident::{self, IdentError, IdentReply, MAX_LINE_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::log;

/// Why a lookup gave no user name. `Display` is a log line fragment in Dante's words.
#[derive(Debug, thiserror::Error)]
pub enum IdentLookupError {
    /// The socket could not be created or bound to the SOCKS connection's local address.
    #[error("ident lookup to {} failed: binding to {local}: {}", log::addr(.server), crate::log::errno_text(.error))]
    Bind {
        server: SocketAddr,
        local: IpAddr,
        error: io::Error,
    },
    /// The TCP connect to the ident server failed (e.g. refused: no ident server runs there).
    #[error("ident lookup to {} failed: {}", log::addr(.server), crate::log::errno_text(.error))]
    Connect {
        server: SocketAddr,
        error: io::Error,
    },
    /// Writing the query failed.
    #[error("ident lookup to {} failed: sending the query: {}", log::addr(.server), crate::log::errno_text(.error))]
    Send {
        server: SocketAddr,
        error: io::Error,
    },
    /// Reading the reply failed.
    #[error("ident lookup to {} failed: reading the reply: {}", log::addr(.server), crate::log::errno_text(.error))]
    Receive {
        server: SocketAddr,
        error: io::Error,
    },
    /// The ident server closed the connection before a whole reply line.
    #[error("ident server {} closed the connection without a reply", log::addr(.server))]
    Closed { server: SocketAddr },
    /// The whole exchange took longer than the timeout.
    #[error("ident lookup timed out after {}", seconds(.0))]
    Timeout(Duration),
    /// The ident server answered `ERROR : <error-type>` (e.g. `NO-USER`, `HIDDEN-USER`).
    #[error("ident server said ERROR: {0}")]
    ServerError(String),
    /// The reply does not follow RFC 1413, is about other ports, or carries a user-id we do
    /// not accept.
    #[error("bad ident reply: {0}")]
    BadReply(#[from] IdentError),
}

/// "5 seconds", "1 second", "0.3 seconds".
fn seconds(d: &Duration) -> String {
    let n = if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        s.trim_end_matches('0').to_owned()
    };
    if n == "1" {
        "1 second".to_owned()
    } else {
        format!("{n} seconds")
    }
}

/// `addr`'s IP with `port`, v4-mapped IPv6 as IPv4 (a dual-stack listener reports IPv4 clients
/// that way), an IPv6 scope id kept (link-local clients).
fn with_port(addr: SocketAddr, port: u16) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => {
            SocketAddr::V6(SocketAddrV6::new(*a.ip(), port, 0, a.scope_id()))
        }
        _ => SocketAddr::new(addr.ip().to_canonical(), port),
    }
}

/// Asks the ident server on the client's host who owns the connection `client` -> `local`.
pub async fn lookup(
    client: SocketAddr,
    local: SocketAddr,
    timeout: Duration,
) -> Result<String, IdentLookupError> {
    lookup_at(client, local, ident::PORT, timeout).await
}

/// Same, with the ident port given (tests use ephemeral ports).
pub async fn lookup_at(
    client: SocketAddr,
    local: SocketAddr,
    ident_port: u16,
    timeout: Duration,
) -> Result<String, IdentLookupError> {
    match tokio::time::timeout(timeout, exchange(client, local, ident_port)).await {
        Ok(result) => result,
        Err(_) => Err(IdentLookupError::Timeout(timeout)),
    }
}

async fn exchange(
    client: SocketAddr,
    local: SocketAddr,
    ident_port: u16,
) -> Result<String, IdentLookupError> {
    let server = with_port(client, ident_port);
    let source = with_port(local, 0);
    let bind_error = |error| IdentLookupError::Bind {
        server,
        local: source.ip(),
        error,
    };
    let sock = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    // Families differ only if the caller mixes them up; then the kernel picks the source.
    if source.is_ipv4() == server.is_ipv4() {
        if source.is_ipv4() {
            // Best effort: without it we merely reserve a port earlier.
            let _ = rsockd_sys::sockopt::set_bind_address_no_port(sock.as_fd());
        }
        sock.bind(source).map_err(bind_error)?;
    }
    let mut stream = sock
        .connect(server)
        .await
        .map_err(|error| IdentLookupError::Connect { server, error })?;

    let (client_port, server_port) = (client.port(), local.port());
    stream
        .write_all(&ident::encode_query(client_port, server_port))
        .await
        .map_err(|error| IdentLookupError::Send { server, error })?;

    // The codec fails on a full buffer without a line end, so this never overflows.
    let mut buf = [0u8; MAX_LINE_LEN];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|error| IdentLookupError::Receive { server, error })?;
        if n == 0 {
            return Err(IdentLookupError::Closed { server });
        }
        filled += n;
        match ident::decode_response(&buf[..filled], client_port, server_port)? {
            None => continue,
            Some((IdentReply::UserId { user, .. }, _)) => return Ok(user),
            Some((IdentReply::Error(e), _)) => return Err(IdentLookupError::ServerError(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    const CLIENT: &str = "127.0.0.1:40000";
    const LOCAL: &str = "127.0.0.1:1080";
    const QUERY: &[u8] = b"40000 , 1080\r\n";
    const LONG: Duration = Duration::from_secs(10);

    /// What the fake ident server does after its chunks.
    enum Then {
        Close,
        /// Keep the connection open until the client closes it.
        Hold,
    }

    /// A fake ident server for one connection: reads the query line, writes `chunks` (with a
    /// short pause between them, so they arrive in separate reads), then closes or holds.
    /// The handle gives back the query it got and the peer address it saw.
    async fn fake(
        chunks: Vec<&'static [u8]>,
        then: Then,
    ) -> (u16, JoinHandle<(Vec<u8>, SocketAddr)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, peer) = listener.accept().await.unwrap();
            let mut query = Vec::new();
            let mut byte = [0u8; 1];
            while !query.ends_with(b"\n") && query.len() < 100 {
                if s.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                query.push(byte[0]);
            }
            for c in chunks {
                // The client may already have given up (overlong line): not this task's failure.
                let _ = s.write_all(c).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Then::Hold = then {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            }
            (query, peer)
        });
        (port, task)
    }

    async fn run(
        chunks: Vec<&'static [u8]>,
        then: Then,
        timeout: Duration,
    ) -> Result<String, IdentLookupError> {
        let (port, task) = fake(chunks, then).await;
        let got = lookup_at(
            CLIENT.parse().unwrap(),
            LOCAL.parse().unwrap(),
            port,
            timeout,
        )
        .await;
        let (query, peer) = task.await.unwrap();
        assert_eq!(query, QUERY, "{}", query.escape_ascii());
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        got
    }

    #[tokio::test]
    async fn good_userid() {
        let got = run(
            vec![b"40000 , 1080 : USERID : UNIX : alice\r\n"],
            Then::Close,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap(), "alice");
    }

    #[tokio::test]
    async fn good_userid_server_keeps_connection_open() {
        let got = run(
            vec![b"40000,1080:USERID:UNIX,US-ASCII:bob\n"],
            Then::Hold,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap(), "bob");
    }

    #[tokio::test]
    async fn answer_split_in_many_writes() {
        let got = run(
            vec![
                b"4",
                b"0000 ",
                b", 10",
                b"80 :",
                b" USERID : UN",
                b"IX : al",
                b"ice",
                b"\r",
                b"\n",
            ],
            Then::Hold,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap(), "alice");
    }

    #[tokio::test]
    async fn error_reply() {
        let e = run(
            vec![b"40000 , 1080 : ERROR : NO-USER\r\n"],
            Then::Close,
            LONG,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, IdentLookupError::ServerError(t) if t == "NO-USER"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "ident server said ERROR: NO-USER");
    }

    #[tokio::test]
    async fn wrong_ports() {
        let e = run(
            vec![b"1080 , 40000 : USERID : UNIX : mallory\r\n"],
            Then::Close,
            LONG,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                IdentLookupError::BadReply(IdentError::PortMismatch { .. })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "bad ident reply: reply for ports 1080 , 40000, expected 40000 , 1080"
        );
    }

    #[tokio::test]
    async fn garbage() {
        let e = run(vec![b"SSH-2.0-OpenSSH_9.6\r\n"], Then::Hold, LONG)
            .await
            .unwrap_err();
        assert!(matches!(e, IdentLookupError::BadReply(_)), "{e:?}");
        assert!(e.to_string().starts_with("bad ident reply: "), "{e}");
    }

    #[tokio::test]
    async fn overlong_line() {
        let e = run(vec![&[b'x'; 600], &[b'y'; 600]], Then::Hold, LONG)
            .await
            .unwrap_err();
        assert!(
            matches!(e, IdentLookupError::BadReply(IdentError::LineTooLong)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn never_answers() {
        let timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = run(vec![], Then::Hold, timeout).await.unwrap_err();
        assert!(matches!(e, IdentLookupError::Timeout(_)), "{e:?}");
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() < LONG);
        assert_eq!(e.to_string(), "ident lookup timed out after 0.3 seconds");
    }

    #[tokio::test]
    async fn closes_without_answer() {
        let e = run(vec![], Then::Close, LONG).await.unwrap_err();
        assert!(matches!(e, IdentLookupError::Closed { .. }), "{e:?}");
        // Half a line and then a close is no answer either.
        let e = run(
            vec![b"40000 , 1080 : USERID : UNIX : al"],
            Then::Close,
            LONG,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, IdentLookupError::Closed { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn connection_refused() {
        // A port that was just free: nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = lookup_at(CLIENT.parse().unwrap(), LOCAL.parse().unwrap(), port, LONG)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, IdentLookupError::Connect { error, .. }
                if error.kind() == io::ErrorKind::ConnectionRefused),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("ident lookup to 127.0.0.1.{port} failed: Connection refused")
        );
    }

    #[tokio::test]
    async fn query_comes_from_the_local_address() {
        // Linux routes all of 127/8 to lo, so 127.0.0.2 stands for "the address the client
        // connected to", distinct from the ident server's.
        let (port, task) = fake(
            vec![b"40000 , 1081 : USERID : UNIX : alice\r\n"],
            Then::Close,
        )
        .await;
        let got = lookup_at(
            CLIENT.parse().unwrap(),
            "127.0.0.2:1081".parse().unwrap(),
            port,
            LONG,
        )
        .await;
        let (query, peer) = task.await.unwrap();
        assert_eq!(query, b"40000 , 1081\r\n");
        assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(got.unwrap(), "alice");
    }

    #[tokio::test]
    async fn v4_mapped_addresses_are_used_as_ipv4() {
        let (port, task) = fake(
            vec![b"40000 , 1080 : USERID : UNIX : alice\r\n"],
            Then::Close,
        )
        .await;
        let got = lookup_at(
            "[::ffff:127.0.0.1]:40000".parse().unwrap(),
            "[::ffff:127.0.0.1]:1080".parse().unwrap(),
            port,
            LONG,
        )
        .await;
        let (query, _) = task.await.unwrap();
        assert_eq!(query, QUERY);
        assert_eq!(got.unwrap(), "alice");
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(seconds(&Duration::from_secs(5)), "5 seconds");
        assert_eq!(seconds(&Duration::from_secs(1)), "1 second");
        assert_eq!(seconds(&Duration::from_millis(300)), "0.3 seconds");
        assert_eq!(seconds(&Duration::from_millis(1500)), "1.5 seconds");
    }

    #[test]
    fn errors_display() {
        let server: SocketAddr = "[::1]:113".parse().unwrap();
        let e = IdentLookupError::Closed { server };
        assert_eq!(
            e.to_string(),
            "ident server ::1.113 closed the connection without a reply"
        );
        let e = IdentLookupError::Connect {
            server: "10.0.0.1:113".parse().unwrap(),
            error: io::Error::from_raw_os_error(libc::EHOSTUNREACH),
        };
        assert_eq!(
            e.to_string(),
            "ident lookup to 10.0.0.1.113 failed: No route to host"
        );
    }
}
