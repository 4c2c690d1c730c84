//! The pieces of Dante's lines: addresses as `a.b.c.d.port` (`::1.1080` for IPv6), the user
//! in front of a client, and client bytes escaped. The lines themselves are in `lines.rs`.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// `a.b.c.d.port`, Dante's address form.
pub fn addr(a: &SocketAddr) -> String {
    format!("{}.{}", a.ip().to_canonical(), a.port())
}

/// An address with the authenticated user in front, as Dante writes it:
/// `username%alice@127.0.0.1.40000`.
pub fn session_addr(a: &SocketAddr, method: Option<&str>, user: Option<&str>) -> String {
    match (method, user) {
        (Some(m), Some(u)) => format!("{m}%{}@{}", escape(u.as_bytes()), addr(a)),
        _ => addr(a),
    }
}

/// Escapes client-supplied bytes for a log line: printable ASCII stays, everything else
/// (control characters, non-ASCII, backslash) becomes `\ooo` octal or `\\`, in the spirit of
/// Dante's str2vis, so a client can never forge or break a line.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03o}");
            }
        }
    }
    s
}

/// strerror(3) text, as Dante logs it, rather than std's "... (os error N)".
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_look_like_dantes() {
        assert_eq!(addr(&"127.0.0.1:1080".parse().unwrap()), "127.0.0.1.1080");
        assert_eq!(addr(&"[::1]:21080".parse().unwrap()), "::1.21080");
        assert_eq!(
            addr(&"[::ffff:10.0.0.1]:80".parse().unwrap()),
            "10.0.0.1.80",
            "v4-mapped addresses print as IPv4"
        );
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape(b"ok.example"), "ok.example");
        assert_eq!(escape(b"a\nb"), "a\\012b");
        assert_eq!(escape(b"\\"), "\\\\");
        assert_eq!(escape(&[0xff]), "\\377");
    }
}
