//! HTTP CONNECT (RFC 9110 §9.3.6) as a client of an upstream proxy (a route's
//! `proxyprotocol: http`): the request, and the response head up to its empty line.

/// Longest response head we read before giving up.
pub const MAX_HEAD: usize = 8 * 1024;

/// A response head's failure to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("response from http server is not HTTP: \"{0}\"")]
    NotHttp(String),
    #[error("response head from http server is longer than {MAX_HEAD} bytes")]
    TooLong,
}

/// `CONNECT authority HTTP/1.0` with its Host header; `authority` is `host:port` (an IPv6
/// address in brackets).
pub fn encode_request(authority: &str) -> Vec<u8> {
    format!("CONNECT {authority} HTTP/1.0\r\nHost: {authority}\r\n\r\n").into_bytes()
}

/// The status code and the status line of a complete response head in `buf`, and the bytes
/// it takes; `Ok(None)` until the head's empty line has arrived.
pub fn decode_response(buf: &[u8]) -> Result<Option<(u16, String, usize)>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::TooLong);
        }
        // A first line that is plainly not HTTP fails early.
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            let line = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
            return Err(HttpError::NotHttp(line));
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::NotHttp(line));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::NotHttp(line));
    }
    match code.parse::<u16>() {
        Ok(c) if (100..600).contains(&c) => Ok(Some((c, line, end + 4))),
        _ => Err(HttpError::NotHttp(line)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses() {
        assert_eq!(
            encode_request("example.com:443"),
            b"CONNECT example.com:443 HTTP/1.0\r\nHost: example.com:443\r\n\r\n"
        );
        let ok = b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nDATA";
        assert_eq!(
            decode_response(ok).unwrap(),
            Some((
                200,
                "HTTP/1.1 200 Connection established".into(),
                ok.len() - 4
            ))
        );
        for k in 0..ok.len() - 4 {
            assert_eq!(decode_response(&ok[..k]), Ok(None), "prefix {k}");
        }
        assert_eq!(
            decode_response(b"HTTP/1.0 504 Gateway Timeout\r\n\r\n")
                .unwrap()
                .unwrap()
                .0,
            504
        );
        assert!(decode_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(decode_response(b"SSH-2.0").is_err());
        assert!(decode_response(b"HTTP/1.0 abc x\r\n\r\n").is_err());
        assert_eq!(
            decode_response(&[b'H'; MAX_HEAD + 1]),
            Err(HttpError::TooLong)
        );
    }
}
