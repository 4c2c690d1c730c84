//! Why a negotiation failed, in Dante's words.

use rsockd_proto::proxy::ProxyError;
use rsockd_proto::rfc1929::AuthError;
use rsockd_proto::socks4::Socks4Error;
use rsockd_proto::socks5::Socks5Error;

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
    #[error("{0}")]
    BadAuthRequest(#[from] AuthError),
    /// The check said no; the text is the checker's reason (never the password).
    #[error("{0}")]
    AuthFailed(String),
    #[error("unknown socks_v{version} command: {command}")]
    UnknownCommand { version: u8, command: u8 },
    #[error("{0}")]
    Socks4(#[from] Socks4Error),
    #[error("{0}")]
    Socks5(#[from] Socks5Error),
    /// A trusted balancer's connection without a valid PROXY header.
    #[error("{0}")]
    Proxy(#[from] ProxyError),
}
