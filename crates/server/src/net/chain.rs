//! Server chaining (`route { ... via: PROXY port = P }`): a request through an upstream
//! proxy, and the routes' health. CONNECT goes through SOCKS5, SOCKS4 (4a for names) or HTTP
//! CONNECT; BIND and UDP ASSOCIATE through SOCKS5 (beyond Dante, which chains only CONNECT).
//! A host name the client asked for goes upstream as a name (SOCKS5 domain, SOCKS4a, HTTP
//! authority), whether or not we could resolve it (Dante cannot pass a name it cannot
//! resolve). Which route to try, and the routes' health, are the mother's (`routed.rs`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use rsockd_config::Upstream;
use rsockd_proto::socks4::{self, Socks4Command, Socks4Request};
use rsockd_proto::socks5::{self, Greeting, Socks5Command};
use rsockd_proto::{http_connect, Reply, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connect::{Attempt, Outgoing};
use crate::log;

/// What the client asked for: an address, or a name with its port.
#[derive(Debug, Clone)]
pub enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

impl Target {
    fn socks(&self) -> TargetAddr {
        match self {
            Target::Addr(a) => TargetAddr::Ip(*a),
            Target::Name(n, p) => TargetAddr::Domain(n.clone(), *p),
        }
    }

    fn authority(&self) -> String {
        match self {
            Target::Addr(a) => a.to_string(),
            Target::Name(n, p) => format!("{n}:{p}"),
        }
    }
}

/// What we ask an upstream for.
#[derive(Debug, Clone)]
pub enum Ask {
    /// A connection to the target.
    Connect(Target),
    /// A listening socket for a peer expected from this address (SOCKS5 only).
    Bind(SocketAddr),
    /// A UDP relay for datagrams we send from this address (SOCKS5 only).
    Udp(SocketAddr),
}

impl Ask {
    /// The protocol spoken to an upstream that offers `protocols` (Dante's first choice,
    /// SOCKS5, when none is named); None when none of them can carry this request.
    pub fn protocol(&self, protocols: &[Upstream]) -> Option<Upstream> {
        match self {
            Ask::Connect(_) => Some(protocols.first().copied().unwrap_or(Upstream::SocksV5)),
            _ => (protocols.is_empty() || protocols.contains(&Upstream::SocksV5))
                .then_some(Upstream::SocksV5),
        }
    }
}

/// What we may offer a SOCKS5 upstream: `none`, and `username` with the client's own RFC 1929
/// credentials when the route allows it and the client gave them (Dante's behaviour).
pub struct Auth<'a> {
    pub none: bool,
    pub username: Option<(&'a [u8], &'a [u8])>,
}

/// A connection through an upstream: the stream and what the upstream says it bound (for a
/// BIND, its listening address; for a UDP ASSOCIATE, its relay), an unspecified address
/// replaced by the upstream's own (RFC 1928 §6).
pub struct Chained {
    pub stream: TcpStream,
    pub upstream: SocketAddr,
    pub bound: SocketAddr,
}

/// Why a chained connect failed: the reply for our client and the text for the lines.
#[derive(Debug)]
pub struct ChainError {
    pub reply: Reply,
    pub text: String,
    /// The upstream itself failed (unreachable, silent, not speaking its protocol): the
    /// route is charged and the next one tried. False when the upstream worked and refused
    /// the target (its reply is the answer).
    pub upstream_failed: bool,
}

fn err(reply: Reply, text: impl Into<String>) -> ChainError {
    ChainError {
        reply,
        text: text.into(),
        upstream_failed: true,
    }
}

/// The upstream answered: it could not, or would not, reach the target.
fn refused(reply: Reply, text: String) -> ChainError {
    ChainError {
        reply,
        text,
        upstream_failed: false,
    }
}

fn io_err(e: io::Error) -> ChainError {
    let reply = e
        .raw_os_error()
        .map_or(Reply::GeneralFailure, Reply::from_errno);
    err(reply, log::errno_text(&e))
}

/// Connects to `upstream` (from `source`) and asks it for `ask` in the protocol
/// [`Ask::protocol`] picks from `protocols`.
pub async fn connect(
    upstream: SocketAddr,
    source: Option<IpAddr>,
    protocols: &[Upstream],
    auth: &Auth<'_>,
    ask: &Ask,
    out: &Outgoing,
) -> Result<Chained, ChainError> {
    let protocol = ask.protocol(protocols).ok_or_else(|| {
        err(
            Reply::CommandNotSupported,
            "only a SOCKS5 proxy server can take this command",
        )
    })?;
    let attempt = Attempt {
        target: upstream,
        source,
        source_port: 0,
    };
    let (mut stream, _) = super::connect::happy_eyeballs(&[attempt], out)
        .await
        .map_err(|e| {
            let mut c = io_err(e.error);
            c.text = format!(
                "connect to proxy server {} failed: {}",
                log::addr(&upstream),
                c.text
            );
            c
        })?;
    // No TCP_NODELAY: each handshake write waits for the upstream's answer anyway, and the
    // relayed bytes then travel as on a direct connection (with it, bulk transfers cost more
    // CPU per byte in smaller segments).
    let bound = match (protocol, ask) {
        (Upstream::SocksV5, _) => socks5_request(&mut stream, auth, ask).await?,
        (Upstream::SocksV4, Ask::Connect(target)) => socks4_connect(&mut stream, target).await?,
        (Upstream::Http, Ask::Connect(target)) => {
            http_connect_to(&mut stream, target).await?;
            stream.local_addr().map_err(io_err)?
        }
        _ => {
            return Err(err(
                Reply::CommandNotSupported,
                "only a SOCKS5 proxy server can take this command",
            ))
        }
    };
    let bound = if bound.ip().is_unspecified() && !matches!(ask, Ask::Connect(_)) {
        SocketAddr::new(upstream.ip(), bound.port())
    } else {
        bound
    };
    Ok(Chained {
        stream,
        upstream,
        bound,
    })
}

/// Reads exactly `n` bytes of the upstream's answer: never more, as what follows its reply
/// belongs to our client.
async fn read_n(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Result<(), ChainError> {
    let start = buf.len();
    buf.resize(start + n, 0);
    match s.read_exact(&mut buf[start..]).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(err(
            Reply::GeneralFailure,
            "proxy server closed the connection during the negotiation",
        )),
        Err(e) => Err(io_err(e)),
    }
}

/// A SOCKS5 reply, read to its exact length (also a BIND's second reply, by the relay).
pub async fn read_socks5_reply(s: &mut TcpStream) -> Result<Vec<u8>, ChainError> {
    let mut buf = Vec::with_capacity(22);
    read_n(s, &mut buf, 4).await?;
    if buf[0] != socks5::VERSION {
        return Err(bad_version(socks5::VERSION, buf[0]));
    }
    let rest = match buf[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            read_n(s, &mut buf, 1).await?;
            usize::from(buf[4]) + 2
        }
        t => {
            return Err(err(
                Reply::GeneralFailure,
                format!("proxy server replied with unknown address type {t}"),
            ))
        }
    };
    read_n(s, &mut buf, rest).await?;
    Ok(buf)
}

/// An HTTP response head, read a byte at a time up to its empty line (once per session).
async fn read_http_head(s: &mut TcpStream) -> Result<Vec<u8>, ChainError> {
    let mut buf = Vec::with_capacity(128);
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() >= http_connect::MAX_HEAD {
            return Err(err(Reply::GeneralFailure, "proxy server response too long"));
        }
        read_n(s, &mut buf, 1).await?;
        if buf.len() == 5 && !buf.starts_with(b"HTTP/") {
            // Not HTTP at all: let the parser say so.
            buf.extend_from_slice(b"\r\n\r\n");
        }
    }
    Ok(buf)
}

fn bad_version(expected: u8, got: u8) -> ChainError {
    err(
        Reply::GeneralFailure,
        format!(
            "unexpected protocol version in response from proxy server.  Expected version \
             {expected}, received version {got}"
        ),
    )
}

async fn socks5_request(
    s: &mut TcpStream,
    auth: &Auth<'_>,
    ask: &Ask,
) -> Result<SocketAddr, ChainError> {
    let mut methods = Vec::new();
    if auth.none {
        methods.push(socks5::METHOD_NO_AUTH);
    }
    if auth.username.is_some() {
        methods.push(socks5::METHOD_USERNAME);
    }
    if methods.is_empty() {
        return Err(refused(
            Reply::NotAllowed,
            "the route offers only method username, and the client gave no username".into(),
        ));
    }
    let g = socks5::encode_greeting(&Greeting { methods });
    s.write_all(&g).await.map_err(io_err)?;
    let mut sel = Vec::with_capacity(2);
    read_n(s, &mut sel, 2).await?;
    if sel[0] != socks5::VERSION {
        return Err(bad_version(socks5::VERSION, sel[0]));
    }
    match (sel[1], auth.username) {
        (socks5::METHOD_NO_AUTH, _) if auth.none => {}
        (socks5::METHOD_USERNAME, Some((user, password))) => {
            let req =
                rsockd_proto::rfc1929::encode_auth_request(&rsockd_proto::rfc1929::AuthRequest {
                    username: user.to_vec(),
                    password: password.to_vec(),
                })
                .ok_or_else(|| refused(Reply::NotAllowed, "credentials too long".into()))?;
            let sent = s.write_all(&req).await;
            // It held the password.
            let mut req = req;
            req.fill(0);
            sent.map_err(io_err)?;
            let mut st = Vec::with_capacity(2);
            read_n(s, &mut st, 2).await?;
            if st[1] != 0 {
                // The upstream works; it refused this client's name or password.
                return Err(refused(
                    Reply::NotAllowed,
                    "proxy server refused the username/password".into(),
                ));
            }
        }
        (0xff, _) => {
            return Err(refused(
                Reply::NotAllowed,
                "proxy server accepted none of the methods offered".into(),
            ))
        }
        (m, _) => {
            return Err(err(
                Reply::GeneralFailure,
                format!("proxy server selected method {m:#04x}, which we did not offer"),
            ))
        }
    }
    let (command, dst) = match ask {
        Ask::Connect(t) => (Socks5Command::Connect, t.socks()),
        Ask::Bind(a) => (Socks5Command::Bind, TargetAddr::Ip(*a)),
        Ask::Udp(a) => (Socks5Command::UdpAssociate, TargetAddr::Ip(*a)),
    };
    let req = socks5::encode_request(&socks5::Request {
        command,
        dst,
        flag: 0,
    });
    s.write_all(&req).await.map_err(io_err)?;
    let buf = read_socks5_reply(s).await?;
    socks5_reply_addr(&buf)
}

/// The address a SOCKS5 reply names, or the upstream's refusal.
pub fn socks5_reply_addr(buf: &[u8]) -> Result<SocketAddr, ChainError> {
    let (rep, _) = socks5::decode_reply(buf)
        .map_err(|e| err(Reply::GeneralFailure, e.to_string()))?
        .ok_or_else(|| err(Reply::GeneralFailure, "short reply from proxy server"))?;
    if rep.code != 0 {
        let reply = rep.reply().unwrap_or(Reply::GeneralFailure);
        return Err(refused(
            reply,
            format!("proxy server replied {:02x} ({reply:?})", rep.code),
        ));
    }
    Ok(match rep.bnd {
        TargetAddr::Ip(a) => a,
        // A name we do not look up: its port stays, the address is taken as unspecified
        // (the upstream's own, for BIND and UDP).
        TargetAddr::Domain(_, port) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
    })
}

async fn socks4_connect(s: &mut TcpStream, target: &Target) -> Result<SocketAddr, ChainError> {
    let dst = match target {
        Target::Addr(SocketAddr::V6(_)) => {
            return Err(err(
                Reply::AddressTypeNotSupported,
                "SOCKS4 proxy server cannot reach an IPv6 address",
            ))
        }
        t => t.socks(),
    };
    let req = socks4::encode_request(&Socks4Request {
        command: Socks4Command::Connect,
        dst,
        userid: Vec::new(),
    })
    .ok_or_else(|| err(Reply::GeneralFailure, "target not expressible in SOCKS4"))?;
    s.write_all(&req).await.map_err(io_err)?;
    let mut buf = Vec::with_capacity(8);
    read_n(s, &mut buf, 8).await?;
    // Dante expects 0; some servers send 4.
    if buf[0] != 0 && buf[0] != 4 {
        return Err(bad_version(0, buf[0]));
    }
    let (rep, _) = socks4::decode_reply(&buf)
        .ok_or_else(|| err(Reply::GeneralFailure, "short reply from proxy server"))?;
    if rep.code != 90 {
        return Err(refused(
            Reply::ConnectionRefused,
            format!(
                "proxy server replied {} (request rejected or failed)",
                rep.code
            ),
        ));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        *rep.addr.ip(),
        rep.addr.port(),
    )))
}

async fn http_connect_to(s: &mut TcpStream, target: &Target) -> Result<(), ChainError> {
    s.write_all(&http_connect::encode_request(&target.authority()))
        .await
        .map_err(io_err)?;
    let head = read_http_head(s).await?;
    let (code, line, _) = http_connect::decode_response(&head)
        .map_err(|e| err(Reply::GeneralFailure, e.to_string()))?
        .ok_or_else(|| err(Reply::GeneralFailure, "short reply from proxy server"))?;
    if !(200..300).contains(&code) {
        // Dante's words and reply.
        return Err(refused(
            Reply::ConnectionRefused,
            format!("response code {code} from http server indicates failure: \"{line}\""),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reply_addresses() {
        let ip = [5, 0, 0, 1, 192, 0, 2, 1, 0x04, 0x38];
        assert_eq!(
            socks5_reply_addr(&ip).ok(),
            Some(SocketAddr::from(([192, 0, 2, 1], 1080)))
        );
        // A name keeps its port; the address is left to the caller (the upstream's own).
        let name = [5, 0, 0, 3, 3, b'u', b'p', b'x', 0x1f, 0x90];
        assert_eq!(
            socks5_reply_addr(&name).ok(),
            Some(SocketAddr::from(([0, 0, 0, 0], 8080)))
        );
        let e = socks5_reply_addr(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.reply, Reply::NotAllowed);
        assert!(!e.upstream_failed, "a refusal is an answer");
    }
}
