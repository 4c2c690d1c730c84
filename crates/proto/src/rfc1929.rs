//! Username/password authentication for SOCKS5 (RFC 1929).
//!
//! Request: `VER | ULEN | UNAME | PLEN | PASSWD`; reply: `VER | STATUS`.
//!
//! Invariants:
//! - `VER` 0x01 is the RFC's; 0x05 is accepted too because many clients send the SOCKS version
//!   there. Replies always carry 0x01.
//! - `ULEN` must be 1..=255 (RFC); `PLEN` may be 0. Length bytes that promise more than has
//!   arrived mean "need more", never a read past the buffer. The message is bounded by its
//!   length bytes (at most 513 bytes).
//! - The password never appears in `Debug` output or error messages.

use std::fmt;

use crate::addr::escape_bytes;
use crate::reply::Reply;

/// The sub-negotiation version of RFC 1929.
pub const VERSION: u8 = 0x01;
/// Status: success.
pub const STATUS_SUCCESS: u8 = 0x00;
/// Status: failure (what Dante sends; any non-zero value means failure).
pub const STATUS_FAILURE: u8 = 0x01;
/// Longest request: VER, ULEN, 255, PLEN, 255.
pub const MAX_REQUEST_LEN: usize = 1 + 1 + 255 + 1 + 255;

/// Errors of RFC 1929 messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `VER` neither 0x01 nor 0x05.
    #[error("bad username/password auth version {0} (expected 1)")]
    BadVersion(u8),
    /// `ULEN` 0: RFC 1929 requires 1..=255.
    #[error("empty username")]
    EmptyUsername,
}

impl AuthError {
    /// Never a SOCKS5 reply: authentication fails with an RFC 1929 status (send
    /// `encode_auth_reply(STATUS_FAILURE)` and close).
    pub fn reply(&self) -> Option<Reply> {
        None
    }
}

/// A username/password request. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// UNAME bytes, 1..=255 (not necessarily UTF-8).
    pub username: Vec<u8>,
    /// PASSWD bytes, 0..=255.
    pub password: Vec<u8>,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("username", &escape_bytes(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Decodes `VER | ULEN | UNAME | PLEN | PASSWD`.
pub fn decode_auth_request(buf: &[u8]) -> Result<Option<(AuthRequest, usize)>, AuthError> {
    match buf.first() {
        None => return Ok(None),
        Some(&v) if v != VERSION && v != crate::socks5::VERSION => {
            return Err(AuthError::BadVersion(v))
        }
        Some(_) => {}
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    if ulen == 0 {
        return Err(AuthError::EmptyUsername);
    }
    let uend = 2 + usize::from(ulen);
    let Some(username) = buf.get(2..uend) else {
        return Ok(None);
    };
    let Some(&plen) = buf.get(uend) else {
        return Ok(None);
    };
    let pend = uend + 1 + usize::from(plen);
    let Some(password) = buf.get(uend + 1..pend) else {
        return Ok(None);
    };
    Ok(Some((
        AuthRequest {
            username: username.to_vec(),
            password: password.to_vec(),
        },
        pend,
    )))
}

/// Encodes a request with `VER` 0x01 (client side). `None` if the username is not 1..=255
/// bytes or the password is over 255 bytes.
pub fn encode_auth_request(req: &AuthRequest) -> Option<Vec<u8>> {
    let ulen = u8::try_from(req.username.len()).ok().filter(|&l| l > 0)?;
    let plen = u8::try_from(req.password.len()).ok()?;
    let mut out = Vec::with_capacity(3 + req.username.len() + req.password.len());
    out.push(VERSION);
    out.push(ulen);
    out.extend_from_slice(&req.username);
    out.push(plen);
    out.extend_from_slice(&req.password);
    Some(out)
}

/// Encodes `VER=0x01 | STATUS`.
pub fn encode_auth_reply(status: u8) -> [u8; 2] {
    [VERSION, status]
}

/// Decodes `VER | STATUS` (client side). `VER` is not checked, for the same lenience as the
/// request. Returns the status (0 = success).
pub fn decode_auth_reply(buf: &[u8]) -> Option<(u8, usize)> {
    buf.get(1).map(|&s| (s, 2))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_prefixes() {
        let wire = b"\x01\x03bob\x06secret";
        let (r, n) = decode_auth_request(wire).unwrap().unwrap();
        assert_eq!(r.username, b"bob");
        assert_eq!(r.password, b"secret");
        assert_eq!(n, wire.len());
        assert_eq!(encode_auth_request(&r).unwrap(), wire);
        for k in 0..wire.len() {
            assert_eq!(decode_auth_request(&wire[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn version_5_accepted() {
        let (r, _) = decode_auth_request(b"\x05\x01u\x01p").unwrap().unwrap();
        assert_eq!(r.username, b"u");
        // Re-encoded with the RFC's version.
        assert_eq!(encode_auth_request(&r).unwrap()[0], 1);
    }

    #[test]
    fn bad_version_and_empty_username() {
        assert_eq!(decode_auth_request(&[2]), Err(AuthError::BadVersion(2)));
        assert_eq!(decode_auth_request(&[0, 1]), Err(AuthError::BadVersion(0)));
        assert_eq!(
            decode_auth_request(&[1, 0, 0]),
            Err(AuthError::EmptyUsername)
        );
        assert_eq!(AuthError::EmptyUsername.reply(), None);
    }

    #[test]
    fn empty_password_and_trailing_data() {
        let wire = b"\x01\x01u\x00\x05\x01\x00";
        let (r, n) = decode_auth_request(wire).unwrap().unwrap();
        assert!(r.password.is_empty());
        assert_eq!(n, 4);
    }

    #[test]
    fn max_lengths() {
        let r = AuthRequest {
            username: vec![b'u'; 255],
            password: vec![b'p'; 255],
        };
        let wire = encode_auth_request(&r).unwrap();
        assert_eq!(wire.len(), MAX_REQUEST_LEN);
        assert_eq!(
            decode_auth_request(&wire).unwrap(),
            Some((r, MAX_REQUEST_LEN))
        );
        assert_eq!(
            encode_auth_request(&AuthRequest {
                username: vec![b'u'; 256],
                password: vec![]
            }),
            None
        );
        assert_eq!(
            encode_auth_request(&AuthRequest {
                username: vec![],
                password: vec![]
            }),
            None
        );
        assert_eq!(
            encode_auth_request(&AuthRequest {
                username: vec![1],
                password: vec![0; 256]
            }),
            None
        );
    }

    #[test]
    fn lying_lengths_need_more() {
        assert_eq!(decode_auth_request(b"\x01\xffab"), Ok(None));
        assert_eq!(decode_auth_request(b"\x01\x01a\xffpass"), Ok(None));
    }

    #[test]
    fn debug_redacts_password() {
        let r = AuthRequest {
            username: b"al\nice".to_vec(),
            password: b"hunter2".to_vec(),
        };
        let s = format!("{r:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<redacted>"));
        assert!(s.contains("al\\\\nice") || s.contains("al\\nice"), "{s}");
    }

    #[test]
    fn replies() {
        assert_eq!(encode_auth_reply(STATUS_SUCCESS), [1, 0]);
        assert_eq!(encode_auth_reply(STATUS_FAILURE), [1, 1]);
        assert_eq!(decode_auth_reply(&[1, 0]), Some((0, 2)));
        assert_eq!(decode_auth_reply(&[1]), None);
    }
}
