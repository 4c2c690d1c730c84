//! SOCKS negotiation on the client connection: version, method selection, the request.
//!
//! Generic over `AsyncRead + AsyncWrite` so the unit tests run on in-memory pipes. Messages are
//! decoded by the pure codecs of `rsockd_proto`; this module only feeds them bytes, so requests
//! split over many segments work, and bytes the client sends after its request (before our
//! reply) are kept for the relay.

mod wire;

pub use wire::Wire;

use rsockd_config::Method;
use rsockd_proto::socks4::{self, Socks4Command, Socks4Error, Socks4Reply};
use rsockd_proto::socks5::{self, Socks5Command, Socks5Error};
use rsockd_proto::{Reply, TargetAddr};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Connect,
    Bind,
    UdpAssociate,
}

/// A complete, well-formed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// 4 or 5.
    pub version: u8,
    pub command: Cmd,
    pub target: TargetAddr,
    pub method: Method,
    pub user: Option<String>,
    /// The user's groups (filled in by the mother when rules have `group:` conditions).
    pub groups: Vec<String>,
}

/// Why negotiation failed. `Display` gives Dante's wording, for the
/// `error after reading N bytes in S seconds: ...` line.
#[derive(Debug, thiserror::Error)]
pub enum NegError {
    #[error("eof from local client")]
    Eof,
    #[error("local client error ({0})")]
    Io(#[from] std::io::Error),
    #[error("unknown SOCKS version {0} in client request")]
    UnknownVersion(u8),
    #[error("client offered no acceptable authentication method")]
    NoAcceptableMethod,
    #[error("SOCKS v4 client refused: it cannot authenticate and this rule requires a method other than \"none\"")]
    Socks4NeedsAuth,
    #[error("unknown socks_v{version} command: {command}")]
    UnknownCommand { version: u8, command: u8 },
    #[error("{0}")]
    Socks4(#[from] Socks4Error),
    #[error("{0}")]
    Socks5(#[from] Socks5Error),
}

/// The wire value of a configured method, for the ones SOCKS5 negotiates directly.
pub fn wire_method(m: Method) -> Option<u8> {
    match m {
        Method::None => Some(socks5::METHOD_NO_AUTH),
        Method::Username | Method::PamUsername | Method::BsdAuth | Method::LdapAuth => {
            Some(socks5::METHOD_USERNAME)
        }
        Method::Gssapi => Some(socks5::METHOD_GSSAPI),
        _ => None,
    }
}

/// Picks a method by the server's preference order (Dante's rule), not the client's.
pub fn choose_method(prefs: &[Method], offered: &[u8]) -> Option<Method> {
    prefs
        .iter()
        .copied()
        .find(|m| wire_method(*m).is_some_and(|w| offered.contains(&w)))
}

/// Runs the negotiation up to a complete request. `methods` is the preference list in force
/// for this client (client rule's `socksmethod`, else the global list). On a protocol error the
/// client has already been sent the reply Dante's clients expect (05 FF, REP 07/08, CD 91).
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    methods: &[Method],
) -> Result<Request, NegError> {
    let version = wire.peek_byte().await?;
    match version {
        socks4::VERSION => socks4_request(wire, methods).await,
        socks5::VERSION => socks5_request(wire, methods).await,
        v => Err(NegError::UnknownVersion(v)),
    }
}

async fn socks4_request<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    methods: &[Method],
) -> Result<Request, NegError> {
    let req = match wire.next(socks4::decode_request).await {
        Ok(r) => r,
        Err(NegError::Socks4(e)) => {
            if e.reply().is_some() {
                let _ = send_socks4_failure(wire.io()).await;
            }
            return Err(NegError::Socks4(e));
        }
        Err(e) => return Err(e),
    };
    // CVE-2024-54662: SOCKS v4 has no authentication, so it may only pass where "none" is
    // acceptable; Dante before 1.4.4 let it through a rule demanding a password.
    if !methods.contains(&Method::None) {
        let _ = send_socks4_failure(wire.io()).await;
        return Err(NegError::Socks4NeedsAuth);
    }
    let command = match req.command {
        Socks4Command::Connect => Cmd::Connect,
        Socks4Command::Bind => Cmd::Bind,
        Socks4Command::Unknown(c) => {
            let _ = send_socks4_failure(wire.io()).await;
            return Err(NegError::UnknownCommand {
                version: 4,
                command: c,
            });
        }
    };
    Ok(Request {
        version: 4,
        command,
        target: req.dst,
        method: Method::None,
        user: None,
        groups: Vec::new(),
    })
}

async fn socks5_request<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    methods: &[Method],
) -> Result<Request, NegError> {
    let greeting = wire.next(socks5::decode_greeting).await?;
    let Some(method) = choose_method(methods, &greeting.methods) else {
        let _ = wire
            .io()
            .write_all(&socks5::encode_method_selection(
                socks5::METHOD_NO_ACCEPTABLE,
            ))
            .await;
        return Err(NegError::NoAcceptableMethod);
    };
    let wire_value = wire_method(method).unwrap_or(socks5::METHOD_NO_ACCEPTABLE);
    wire.io()
        .write_all(&socks5::encode_method_selection(wire_value))
        .await?;
    let req = match wire.next(socks5::decode_request).await {
        Ok(r) => r,
        Err(NegError::Socks5(e)) => {
            if let Some(rep) = e.reply() {
                let _ = send_socks5_reply(wire.io(), rep).await;
            }
            return Err(NegError::Socks5(e));
        }
        Err(e) => return Err(e),
    };
    let command = match req.command {
        Socks5Command::Connect => Cmd::Connect,
        Socks5Command::Bind => Cmd::Bind,
        Socks5Command::UdpAssociate => Cmd::UdpAssociate,
        Socks5Command::Unknown(c) => {
            // Dante just closes; RFC 1928 says REP 07, which tells the client why.
            let _ = send_socks5_reply(wire.io(), Reply::CommandNotSupported).await;
            return Err(NegError::UnknownCommand {
                version: 5,
                command: c,
            });
        }
    };
    Ok(Request {
        version: 5,
        command,
        target: req.dst,
        method,
        user: None,
        groups: Vec::new(),
    })
}

async fn send_socks4_failure<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    w.write_all(&socks4::encode_reply(
        Socks4Reply::Rejected,
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
    ))
    .await
}

async fn send_socks5_reply<W: AsyncWrite + Unpin>(w: &mut W, rep: Reply) -> std::io::Result<()> {
    w.write_all(&socks5::encode_reply(rep, &TargetAddr::unspecified()))
        .await
}

/// Encodes the failure reply for `version` (used after the request, e.g. blocked or refused).
pub fn failure_reply(version: u8, rep: Reply) -> Vec<u8> {
    if version == 4 {
        socks4::encode_reply(
            rep.to_socks4(),
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
        )
        .to_vec()
    } else {
        socks5::encode_reply(rep, &TargetAddr::unspecified())
    }
}

/// Encodes the success reply for `version` with the bound address `bnd`.
pub fn success_reply(version: u8, bnd: std::net::SocketAddr) -> Vec<u8> {
    if version == 4 {
        let v4 = match bnd {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(a) => std::net::SocketAddrV4::new(
                a.ip()
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                a.port(),
            ),
        };
        socks4::encode_reply(Socks4Reply::Granted, v4).to_vec()
    } else {
        socks5::encode_reply(Reply::Succeeded, &TargetAddr::Ip(bnd))
    }
}

#[cfg(test)]
mod tests;
