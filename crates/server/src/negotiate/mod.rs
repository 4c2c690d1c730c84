//! SOCKS negotiation on the client connection: version, method selection, the request.
//!
//! Generic over `AsyncRead + AsyncWrite` so the unit tests run on in-memory pipes. Messages are
//! decoded by the pure codecs of `rsockd_proto`; this module only feeds them bytes, so requests
//! split over many segments work, and bytes the client sends after its request (before our
//! reply) are kept for the relay.

mod error;
mod wire;

pub use error::NegError;
pub use wire::Wire;

use std::future::Future;

use rsockd_config::Method;
use rsockd_proto::rfc1929;
use rsockd_proto::socks4::{self, Socks4Command, Socks4Reply};
use rsockd_proto::socks5::{self, Socks5Command};
use rsockd_proto::{Reply, TargetAddr};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// What the client asked for: the command a hand-off carries and log lines are keyed by.
pub use rsockd_ipc::Command as Cmd;

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
    /// SOCKS5's RSV byte (draft-05's FLAG; see `compatibility: draft-5.05`); 0 for SOCKS4.
    pub flag: u8,
}

/// What the client gave to prove who it is, for an [`Authenticator`].
pub struct Credentials<'a> {
    pub method: Method,
    /// RFC 1929 user name and password, when the wire method was username/password.
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
}

/// Decides whether a client may go on; the mother's implementation asks the auth helper or
/// the client's ident server. `Ok(Some(name))` names the authenticated user.
pub trait Authenticator {
    fn authenticate(
        &self,
        c: Credentials<'_>,
    ) -> impl Future<Output = Result<Option<String>, String>>;
}

/// Refuses every check: for callers whose methods never need one (only `none`), and tests.
pub struct NoAuth;

impl Authenticator for NoAuth {
    async fn authenticate(&self, _c: Credentials<'_>) -> Result<Option<String>, String> {
        Err("no authentication method is available".into())
    }
}

/// The wire methods a configured method can be negotiated as, in our order of preference.
/// `rfc931` and `pam.address` do not involve the client, so they take whatever it offers;
/// `pam.any` uses a password when the client offers one (Dante's mapping).
pub fn wire_methods(m: Method) -> &'static [u8] {
    use socks5::{METHOD_GSSAPI as G, METHOD_NO_AUTH as N, METHOD_USERNAME as U};
    match m {
        Method::None => &[N],
        Method::Username | Method::PamUsername | Method::BsdAuth | Method::LdapAuth => &[U],
        Method::Gssapi => &[G],
        Method::Rfc931 | Method::PamAddress => &[N, U],
        Method::PamAny => &[U, N],
    }
}

/// The main wire value of a configured method.
pub fn wire_method(m: Method) -> Option<u8> {
    wire_methods(m).first().copied()
}

/// Picks a method by the server's preference order (Dante's rule), not the client's, and the
/// wire method to negotiate it with.
pub fn choose_method(prefs: &[Method], offered: &[u8]) -> Option<(Method, u8)> {
    prefs.iter().copied().find_map(|m| {
        wire_methods(m)
            .iter()
            .find(|w| offered.contains(w))
            .map(|w| (m, *w))
    })
}

/// Runs the negotiation up to a complete request. `methods` is the preference list in force
/// for this client (client rule's `socksmethod`, else the global list). On a protocol error the
/// client has already been sent the reply Dante's clients expect (05 FF, REP 07/08, CD 91).
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    methods: &[Method],
    auth: &impl Authenticator,
) -> Result<Request, NegError> {
    let version = wire.peek_byte().await?;
    match version {
        socks4::VERSION => socks4_request(wire, methods).await,
        socks5::VERSION => socks5_request(wire, methods, auth).await,
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
        flag: 0,
    })
}

async fn socks5_request<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    methods: &[Method],
    auth: &impl Authenticator,
) -> Result<Request, NegError> {
    let greeting = wire.next(socks5::decode_greeting).await?;
    let chosen = choose_method(methods, &greeting.methods);
    if crate::log::debugging(2) {
        crate::log::debug(&methods_line(&greeting.methods, chosen.map(|c| c.1)));
    }
    let Some((method, wire_value)) = chosen else {
        let _ = wire
            .io()
            .write_all(&socks5::encode_method_selection(
                socks5::METHOD_NO_ACCEPTABLE,
            ))
            .await;
        return Err(NegError::NoAcceptableMethod);
    };
    wire.io()
        .write_all(&socks5::encode_method_selection(wire_value))
        .await?;
    // rfc931 and PAM by address need nothing from the client: like Dante, check them once the
    // request is in, so that a refusal is a SOCKS reply (02) rather than a bare close.
    let deferred = method != Method::None && wire_value != socks5::METHOD_USERNAME;
    let mut user = if deferred {
        None
    } else {
        authenticate(wire, method, auth).await?
    };
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
    if deferred {
        let c = Credentials {
            method,
            user: None,
            password: None,
        };
        match auth.authenticate(c).await {
            Ok(u) => user = u,
            Err(e) => {
                let _ = send_socks5_reply(wire.io(), Reply::NotAllowed).await;
                return Err(NegError::AuthFailed(e));
            }
        }
    }
    Ok(Request {
        version: 5,
        command,
        target: req.dst,
        method,
        user,
        groups: Vec::new(),
        flag: req.flag,
    })
}

/// The RFC 1929 exchange after method selection (wire method 0x02), then the check. Every failure is answered before it is returned (RFC 1929 status 01, as Dante sends
/// since 1.1.16 so that clients do not cache bad credentials), and the connection then closes.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    method: Method,
    auth: &impl Authenticator,
) -> Result<Option<String>, NegError> {
    if method == Method::None {
        return Ok(None);
    }
    let mut req = match wire.next(rfc1929::decode_auth_request).await {
        Ok(r) => r,
        Err(e @ NegError::BadAuthRequest(_)) => {
            let _ = wire
                .io()
                .write_all(&rfc1929::encode_auth_reply(rfc1929::STATUS_FAILURE))
                .await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let verdict = auth
        .authenticate(Credentials {
            method,
            user: Some(&req.username),
            password: Some(&req.password),
        })
        .await;
    req.password.fill(0);
    wire.forget_consumed();
    if crate::log::debugging(2) {
        // The name and the outcome; never the password.
        crate::log::debug(&format!(
            "recv_sockspacket(): username/password authentication of user \"{}\" {}",
            crate::log::escape(&req.username),
            if verdict.is_ok() {
                "succeeded"
            } else {
                "failed"
            }
        ));
    }
    let status = if verdict.is_ok() {
        rfc1929::STATUS_SUCCESS
    } else {
        rfc1929::STATUS_FAILURE
    };
    wire.io()
        .write_all(&rfc1929::encode_auth_reply(status))
        .await?;
    match verdict {
        // Methods that check something other than the RFC 1929 name (rfc931, pam.address)
        // name their own user; otherwise it is the name the client proved.
        Ok(Some(name)) => Ok(Some(name)),
        Ok(None) if method == Method::Rfc931 || method == Method::PamAddress => Ok(None),
        Ok(None) => Ok(Some(String::from_utf8_lossy(&req.username).into_owned())),
        Err(e) => Err(NegError::AuthFailed(e)),
    }
}

/// `recv_methods(): client offered 2 authentication methods: 0x0 (none), 0x2 (username);
/// sending authentication reply: METHOD: 0x0`, as Dante's debug lines say it.
fn methods_line(offered: &[u8], chosen: Option<u8>) -> String {
    let names: Vec<String> = offered
        .iter()
        .map(|&m| {
            // RFC 1928's wire values (rsockd's config methods are not one to one with them).
            let name = match m {
                0x00 => "none",
                0x01 => "gssapi",
                0x02 => "username",
                0x03..=0x7f => "iana-assigned",
                0x80..=0xfe => "private",
                0xff => "no acceptable methods",
            };
            format!("{m:#x} ({name})")
        })
        .collect();
    format!(
        "recv_methods(): client offered {} authentication method{}: {}; sending authentication \
         reply: METHOD: {:#x}",
        offered.len(),
        if offered.len() == 1 { "" } else { "s" },
        names.join(", "),
        chosen.unwrap_or(socks5::METHOD_NO_ACCEPTABLE)
    )
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

/// Dante's BIND extension: a BIND naming 255.255.255.255 asks for every peer, each forwarded
/// to the client's own port (the request's port) on a connection of its own.
pub fn is_bind_extension(a: std::net::SocketAddr) -> bool {
    a.ip() == std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
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
