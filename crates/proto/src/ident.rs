//! The Identification Protocol (RFC 1413, "ident"), client side: what the server needs for
//! Dante's `rfc931` method, which asks the client host's ident server (port 113) who owns the
//! SOCKS connection.
//!
//! Query: `<port-on-client> , <port-on-server>\r\n`, where port-on-client is the SOCKS
//! client's port of the connection (the port on the host the ident server runs on) and
//! port-on-server is ours. Reply, one line:
//! `<ports> : USERID : <opsys>[,<charset>] : <user-id>` or `<ports> : ERROR : <error-type>`.
//!
//! Invariants:
//! - Need-more semantics like every stream decoder here: `Ok(None)` until a line end (LF,
//!   optionally after CR) has arrived. A line is at most [`MAX_LINE_LEN`] bytes, line end
//!   included (RFC 1413: a client may give up after 1000 characters without one); beyond that
//!   it is [`IdentError::LineTooLong`], so a hostile ident server cannot make us buffer
//!   forever. Bytes after the line end are never consumed.
//! - The port pair of the reply must be the query's, or the reply is about another
//!   connection and is an error.
//! - White space (spaces, tabs) around tokens is accepted, as the RFC asks. The line is split
//!   on at most three `:`, so the user-id, the last field, may contain `:`; it is trimmed of
//!   surrounding white space (the RFC keeps it, but no user name starts or ends with it).
//! - Tokens (ports, reply type, opsys, charset, error type) are printable US-ASCII without
//!   white space, at most [`MAX_TOKEN_LEN`] bytes. A user-id is 1..=[`MAX_USER_LEN`] bytes
//!   of UTF-8 without control characters (NUL, CR, LF, DEL, C1...): it is used as a user name
//!   in rule lookups and log lines. The RFC allows any octet but NUL, CR and LF; names outside
//!   our subset are errors, never silently altered.
//! - The charset, if any, is checked as a token and not otherwise used: a user-id must be
//!   UTF-8 (which US-ASCII, the default, is) whatever it claims.

use crate::addr::escape_bytes;

/// The ident server's well-known port.
pub const PORT: u16 = 113;
/// Longest reply line we accept, line end included (RFC 1413, note 2 on syntax).
pub const MAX_LINE_LEN: usize = 1000;
/// Longest user-id we accept (RFC 1413: a client must accept at least 512 octets).
pub const MAX_USER_LEN: usize = 512;
/// Longest token (RFC 1413: no OPSYS or ERROR-TYPE token longer than 64 will be defined).
pub const MAX_TOKEN_LEN: usize = 64;

/// What the ident server answered, once the ports are known to match the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentReply {
    /// `USERID`: the connection's owner, `user` trimmed and checked (see the module docs);
    /// `opsys` without the optional charset (e.g. `UNIX`, `OTHER`).
    UserId { opsys: String, user: String },
    /// `ERROR`: the error type, e.g. `NO-USER`, `HIDDEN-USER`, `INVALID-PORT`,
    /// `UNKNOWN-ERROR` or an `X`-prefixed private one. A printable token.
    Error(String),
}

/// Errors of ident replies. All of them mean the lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// No line end within the first [`MAX_LINE_LEN`] bytes.
    #[error("reply longer than {MAX_LINE_LEN} bytes without a line end")]
    LineTooLong,
    /// A line that does not follow the grammar.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The reply is about another port pair than the one asked about.
    #[error("reply for ports {got_client} , {got_server}, expected {client} , {server}")]
    PortMismatch {
        got_client: u16,
        got_server: u16,
        client: u16,
        server: u16,
    },
    /// A reply type other than `USERID` or `ERROR` (escaped for display).
    #[error("unknown reply type \"{0}\"")]
    UnknownType(String),
    /// `USERID` with nothing (or only white space) after the last colon.
    #[error("empty user-id")]
    EmptyUser,
    /// A user-id over [`MAX_USER_LEN`] bytes (the length it had).
    #[error("user-id of {0} bytes, longer than {MAX_USER_LEN}")]
    UserTooLong(usize),
    /// A user-id that is not UTF-8.
    #[error("user-id is not UTF-8")]
    UserNotUtf8,
    /// A user-id with a control character (NUL, CR, DEL, ...).
    #[error("user-id contains a control character")]
    UserControlChar,
}

/// Encodes the query `<client_port> , <server_port>\r\n` (no optional white space, as the RFC
/// asks of senders).
pub fn encode_query(client_port: u16, server_port: u16) -> Vec<u8> {
    format!("{client_port} , {server_port}\r\n").into_bytes()
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// A trimmed, non-empty token of printable US-ASCII without white space.
fn token(field: &[u8], what: &'static str) -> Result<String, IdentError> {
    let t = trim(field);
    if t.is_empty() || t.len() > MAX_TOKEN_LEN || !t.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(IdentError::Malformed(what));
    }
    // Printable ASCII is UTF-8.
    String::from_utf8(t.to_vec()).map_err(|_| IdentError::Malformed(what))
}

fn port(field: &[u8]) -> Result<u16, IdentError> {
    let t = trim(field);
    if t.is_empty() || t.len() > 5 || !t.iter().all(u8::is_ascii_digit) {
        return Err(IdentError::Malformed("bad port"));
    }
    std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(IdentError::Malformed("bad port"))
}

fn user_id(field: &[u8]) -> Result<String, IdentError> {
    let t = trim(field);
    if t.is_empty() {
        return Err(IdentError::EmptyUser);
    }
    if t.len() > MAX_USER_LEN {
        return Err(IdentError::UserTooLong(t.len()));
    }
    let s = std::str::from_utf8(t).map_err(|_| IdentError::UserNotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(IdentError::UserControlChar);
    }
    Ok(s.to_owned())
}

/// Decodes the reply to the query for `client_port , server_port`. Returns the reply and the
/// bytes used (the line and its line end).
pub fn decode_response(
    buf: &[u8],
    client_port: u16,
    server_port: u16,
) -> Result<Option<(IdentReply, usize)>, IdentError> {
    let window = buf.get(..MAX_LINE_LEN).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LINE_LEN {
            Err(IdentError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let used = lf + 1;
    let mut line = &buf[..lf];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }

    let mut fields = line.splitn(4, |&b| b == b':');
    let ports = fields.next().unwrap_or_default();
    let Some(kind) = fields.next() else {
        return Err(IdentError::Malformed("no reply type"));
    };
    let Some(info) = fields.next() else {
        return Err(IdentError::Malformed("no reply information"));
    };
    let last = fields.next();

    let mut pair = ports.splitn(2, |&b| b == b',');
    let got_client = port(pair.next().unwrap_or_default())?;
    let got_server = port(
        pair.next()
            .ok_or(IdentError::Malformed("no comma between the ports"))?,
    )?;
    if (got_client, got_server) != (client_port, server_port) {
        return Err(IdentError::PortMismatch {
            got_client,
            got_server,
            client: client_port,
            server: server_port,
        });
    }

    let kind = trim(kind);
    let reply = if kind.eq_ignore_ascii_case(b"USERID") {
        let Some(user) = last else {
            return Err(IdentError::Malformed("USERID without a user-id"));
        };
        let mut os = info.splitn(2, |&b| b == b',');
        let opsys = token(os.next().unwrap_or_default(), "bad opsys")?;
        if let Some(charset) = os.next() {
            token(charset, "bad charset")?;
        }
        IdentReply::UserId {
            opsys,
            user: user_id(user)?,
        }
    } else if kind.eq_ignore_ascii_case(b"ERROR") {
        if last.is_some() {
            return Err(IdentError::Malformed("ERROR with more than one field"));
        }
        IdentReply::Error(token(info, "bad error type")?)
    } else {
        return Err(IdentError::UnknownType(escape_bytes(kind)));
    };
    Ok(Some((reply, used)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(opsys: &str, user: &str) -> IdentReply {
        IdentReply::UserId {
            opsys: opsys.into(),
            user: user.into(),
        }
    }

    fn decode(buf: &[u8]) -> Result<Option<(IdentReply, usize)>, IdentError> {
        decode_response(buf, 6191, 23)
    }

    #[test]
    fn query() {
        assert_eq!(encode_query(6191, 23), b"6191 , 23\r\n");
        assert_eq!(encode_query(65535, 1), b"65535 , 1\r\n");
    }

    #[test]
    fn userid_crlf_and_lf() {
        let wire = b"6191 , 23 : USERID : UNIX : alice\r\n";
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), wire.len()))));
        let wire = b"6191,23:USERID:UNIX:alice\n";
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), wire.len()))));
    }

    #[test]
    fn white_space_anywhere_but_in_tokens() {
        let wire = b" \t6191 \t,\t 23\t : \tUSERID\t:\tUNIX \t: \t alice \t\r\n";
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), wire.len()))));
        assert_eq!(
            decode(b"61 91 , 23 : USERID : UNIX : alice\r\n"),
            Err(IdentError::Malformed("bad port"))
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UN IX : alice\r\n"),
            Err(IdentError::Malformed("bad opsys"))
        );
    }

    #[test]
    fn split_input_byte_by_byte() {
        let wire = b"6191 , 23 : USERID : UNIX : alice\r\n";
        for k in 0..wire.len() {
            assert_eq!(decode(&wire[..k]), Ok(None), "prefix {k}");
        }
        // A CR alone is not a line end yet.
        assert_eq!(decode(&wire[..wire.len() - 1]), Ok(None));
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), wire.len()))));
    }

    #[test]
    fn trailing_bytes_not_consumed() {
        let wire = b"6191 , 23 : USERID : UNIX : alice\r\nmore\r\n";
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), 35))));
    }

    #[test]
    fn opsys_with_charset() {
        let wire = b"6191 , 23 : USERID : UNIX , US-ASCII : alice\r\n";
        assert_eq!(decode(wire), Ok(Some((user("UNIX", "alice"), wire.len()))));
        let wire = b"6191,23:USERID:OTHER,UTF-8:j\xc3\xbcrgen\r\n";
        assert_eq!(
            decode(wire),
            Ok(Some((user("OTHER", "jürgen"), wire.len())))
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX , : alice\r\n"),
            Err(IdentError::Malformed("bad charset"))
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : , US-ASCII : alice\r\n"),
            Err(IdentError::Malformed("bad opsys"))
        );
    }

    #[test]
    fn user_id_may_contain_colons_and_inner_spaces() {
        let wire = b"6191 , 23 : USERID : OTHER : a:b c:\r\n";
        assert_eq!(
            decode(wire),
            Ok(Some((user("OTHER", "a:b c:"), wire.len())))
        );
    }

    #[test]
    fn user_id_checks() {
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX :\r\n"),
            Err(IdentError::EmptyUser)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX :  \t \r\n"),
            Err(IdentError::EmptyUser)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : a\0b\r\n"),
            Err(IdentError::UserControlChar)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : a\rb\r\n"),
            Err(IdentError::UserControlChar)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : a\x1bb\n"),
            Err(IdentError::UserControlChar)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : a\x7f\n"),
            Err(IdentError::UserControlChar)
        );
        // C1 control U+0085 (NEL), valid UTF-8.
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : a\xc2\x85\n"),
            Err(IdentError::UserControlChar)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX : \xff\xfe\r\n"),
            Err(IdentError::UserNotUtf8)
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID : UNIX\r\n"),
            Err(IdentError::Malformed("USERID without a user-id"))
        );
    }

    #[test]
    fn user_id_length_limit() {
        let max = "u".repeat(MAX_USER_LEN);
        let wire = format!("6191 , 23 : USERID : UNIX : {max}\r\n");
        assert_eq!(
            decode(wire.as_bytes()),
            Ok(Some((user("UNIX", &max), wire.len())))
        );
        let over = "u".repeat(MAX_USER_LEN + 1);
        let wire = format!("6191 , 23 : USERID : UNIX : {over}\r\n");
        assert_eq!(
            decode(wire.as_bytes()),
            Err(IdentError::UserTooLong(MAX_USER_LEN + 1))
        );
    }

    #[test]
    fn error_replies() {
        for e in [
            "NO-USER",
            "HIDDEN-USER",
            "UNKNOWN-ERROR",
            "INVALID-PORT",
            "X-MINE",
        ] {
            let wire = format!("6191 , 23 : ERROR : {e}\r\n");
            assert_eq!(
                decode(wire.as_bytes()),
                Ok(Some((IdentReply::Error(e.into()), wire.len())))
            );
        }
        assert_eq!(
            decode(b"6191,23:error:NO-USER\n"),
            Ok(Some((IdentReply::Error("NO-USER".into()), 22)))
        );
        assert_eq!(
            decode(b"6191 , 23 : ERROR :\r\n"),
            Err(IdentError::Malformed("bad error type"))
        );
        assert_eq!(
            decode(b"6191 , 23 : ERROR : NO-USER : x\r\n"),
            Err(IdentError::Malformed("ERROR with more than one field"))
        );
        assert_eq!(
            decode(b"6191 , 23 : ERROR : NO\x01USER\r\n"),
            Err(IdentError::Malformed("bad error type"))
        );
        let long = "X".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            decode(format!("6191 , 23 : ERROR : {long}\r\n").as_bytes()),
            Err(IdentError::Malformed("bad error type"))
        );
    }

    #[test]
    fn wrong_ports() {
        assert_eq!(
            decode(b"23 , 6191 : USERID : UNIX : alice\r\n"),
            Err(IdentError::PortMismatch {
                got_client: 23,
                got_server: 6191,
                client: 6191,
                server: 23
            })
        );
        // Also for error replies: they are about another connection.
        assert!(matches!(
            decode(b"6191 , 24 : ERROR : NO-USER\r\n"),
            Err(IdentError::PortMismatch { .. })
        ));
        assert_eq!(
            decode(b"6191 , 65536 : ERROR : NO-USER\r\n"),
            Err(IdentError::Malformed("bad port"))
        );
        assert_eq!(
            decode(b"6191 , -1 : ERROR : NO-USER\r\n"),
            Err(IdentError::Malformed("bad port"))
        );
        assert_eq!(
            decode(b"6191 : ERROR : NO-USER\r\n"),
            Err(IdentError::Malformed("no comma between the ports"))
        );
        assert_eq!(
            decode(b"6191 , 23, 5 : ERROR : NO-USER\r\n"),
            Err(IdentError::Malformed("bad port"))
        );
    }

    #[test]
    fn garbage() {
        assert_eq!(decode(b"\r\n"), Err(IdentError::Malformed("no reply type")));
        assert_eq!(
            decode(b"hello world\n"),
            Err(IdentError::Malformed("no reply type"))
        );
        assert_eq!(
            decode(b"6191 , 23 : USERID\r\n"),
            Err(IdentError::Malformed("no reply information"))
        );
        assert_eq!(
            decode(b"6191 , 23 : WHO\tKNOWS\n : x\r\n"),
            Err(IdentError::Malformed("no reply information"))
        );
        assert_eq!(
            decode(b"6191 , 23 : WHO\x01 : x\r\n"),
            Err(IdentError::UnknownType("WHO\\x01".into()))
        );
        assert_eq!(
            decode(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(IdentError::Malformed("no reply type"))
        );
        assert_eq!(
            decode(b"SSH-2.0-OpenSSH_9.6\r\n"),
            Err(IdentError::Malformed("no reply type"))
        );
    }

    #[test]
    fn overlong_lines() {
        // The longest acceptable line, line end included, then one byte more.
        let head = "6191 , 23 : USERID : UNIX : u";
        let pad = " ".repeat(MAX_LINE_LEN - head.len() - 2);
        let wire = format!("{head}{pad}\r\n");
        assert_eq!(wire.len(), MAX_LINE_LEN);
        assert_eq!(
            decode(wire.as_bytes()),
            Ok(Some((user("UNIX", "u"), MAX_LINE_LEN)))
        );
        let wire = format!("{head}{pad} \r\n");
        assert_eq!(decode(wire.as_bytes()), Err(IdentError::LineTooLong));
        // Without any line end: need more up to the limit, then an error.
        let junk = vec![b'a'; MAX_LINE_LEN];
        assert_eq!(decode(&junk[..MAX_LINE_LEN - 1]), Ok(None));
        assert_eq!(decode(&junk), Err(IdentError::LineTooLong));
        assert_eq!(decode(&[b'a'; 5000]), Err(IdentError::LineTooLong));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            IdentError::PortMismatch {
                got_client: 1,
                got_server: 2,
                client: 3,
                server: 4
            }
            .to_string(),
            "reply for ports 1 , 2, expected 3 , 4"
        );
        assert_eq!(
            IdentError::LineTooLong.to_string(),
            "reply longer than 1000 bytes without a line end"
        );
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..1200),
                        c in any::<u16>(), s in any::<u16>()) {
            if let Ok(Some((_, n))) = decode_response(&buf, c, s) {
                prop_assert!(n > 0 && n <= buf.len() && n <= MAX_LINE_LEN);
            }
        }

        #[test]
        fn never_panics_near_valid(
            prefix in "[ \t]{0,3}[0-9]{1,6}[ \t]{0,3},[ \t]{0,3}[0-9]{1,6}[ \t]{0,3}:",
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let buf = [prefix.as_bytes(), &rest].concat();
            let _ = decode_response(&buf, 6191, 23);
        }

        #[test]
        fn valid_user_ids_decode_at_every_split(
            c in any::<u16>(), s in any::<u16>(),
            name in "[^\\p{Cc}\\s:][^\\p{Cc}]{0,40}[^\\p{Cc}\\s]",
            crlf in any::<bool>(),
        ) {
            let wire = format!(
                "{c} , {s} : USERID : UNIX : {name}{}",
                if crlf { "\r\n" } else { "\n" }
            );
            let wire = wire.as_bytes();
            let want = user("UNIX", &name);
            prop_assert_eq!(decode_response(wire, c, s), Ok(Some((want, wire.len()))));
            for k in 0..wire.len() {
                prop_assert_eq!(decode_response(&wire[..k], c, s), Ok(None));
            }
        }
    }
}
