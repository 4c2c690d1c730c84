//! Test oracles shared by the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/corpus.rs`), so both check exactly the same properties. Not part of the API.
//!
//! Each function takes arbitrary bytes and panics (via `assert!`) if a codec property fails;
//! the decoders themselves never panic. Properties checked for stream decoders:
//! - a decoded message used at most `data.len()` bytes, and decoding exactly those bytes, or
//!   those bytes followed by junk, gives the same message and count;
//! - every strict prefix of a decoded message is `Ok(None)` or an error (never a message);
//! - an error stays an error when more bytes arrive (no "bad now, fine later");
//! - decode → encode → decode gives the same value, consuming the whole encoding.

use crate::{proxy, rfc1929, socks4, socks5, udp};

type Decoder<T, E> = fn(&[u8]) -> Result<Option<(T, usize)>, E>;

const JUNK: [u8; 3] = [0x05, 0x00, 0xAA];

/// Checks the stream properties of `decode` on `data`; returns the decoded message, if any.
fn stream_props<T, E>(data: &[u8], decode: Decoder<T, E>) -> Option<T>
where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let with_junk = [data, &JUNK[..]].concat();
    match decode(data) {
        Ok(Some((msg, n))) => {
            assert!(n > 0 && n <= data.len(), "consumed {n} of {}", data.len());
            let exact = decode(&data[..n]);
            assert!(
                matches!(&exact, Ok(Some((m, k))) if *m == msg && *k == n),
                "exact bytes decode differently: {exact:?} vs {msg:?}"
            );
            let more = decode(&with_junk);
            assert!(
                matches!(&more, Ok(Some((m, k))) if *m == msg && *k == n),
                "appended junk changed the result: {more:?} vs {msg:?}"
            );
            for k in 0..n {
                assert!(
                    !matches!(decode(&data[..k]), Ok(Some(_))),
                    "strict prefix {k}/{n} decoded as a message"
                );
            }
            Some(msg)
        }
        Ok(None) => None,
        Err(e) => {
            assert!(
                decode(&with_junk).is_err(),
                "error {e:?} went away with more bytes"
            );
            None
        }
    }
}

/// Re-decodes an encoding and checks it gives `msg`, consuming it all.
fn reencode_props<T, E>(msg: &T, encoded: &[u8], decode: Decoder<T, E>)
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let again = decode(encoded);
    assert!(
        matches!(&again, Ok(Some((m, k))) if m == msg && *k == encoded.len()),
        "round trip failed: {msg:?} -> {encoded:?} -> {again:?}"
    );
}

/// SOCKS4/4a request oracle.
pub fn socks4_request(data: &[u8]) {
    if let Some(req) = stream_props(data, socks4::decode_request) {
        // Every decoded request is expressible: IPv4 or valid name, USERID without NUL.
        let enc = socks4::encode_request(&req);
        assert!(enc.is_some(), "decoded request not encodable: {req:?}");
        if let Some(enc) = enc {
            reencode_props(&req, &enc, socks4::decode_request);
        }
    }
}

/// SOCKS5 greeting oracle.
pub fn socks5_greeting(data: &[u8]) {
    if let Some(g) = stream_props(data, socks5::decode_greeting) {
        reencode_props(&g, &socks5::encode_greeting(&g), socks5::decode_greeting);
    }
}

/// SOCKS5 request oracle (also exercises the reply codec on the decoded address).
pub fn socks5_request(data: &[u8]) {
    if let Some(req) = stream_props(data, socks5::decode_request) {
        reencode_props(&req, &socks5::encode_request(&req), socks5::decode_request);
        let reply = socks5::encode_reply(socks5::Reply::Succeeded, &req.dst);
        let decoded = socks5::decode_reply(&reply);
        assert!(
            matches!(&decoded, Ok(Some((r, n))) if r.bnd == req.dst && r.code == 0 && *n == reply.len()),
            "reply round trip failed: {decoded:?}"
        );
    }
    let _ = stream_props(data, socks5::decode_reply);
}

/// RFC 1929 request oracle.
pub fn rfc1929(data: &[u8]) {
    if let Some(req) = stream_props(data, rfc1929::decode_auth_request) {
        let enc = rfc1929::encode_auth_request(&req);
        assert!(enc.is_some(), "decoded auth request not encodable");
        if let Some(enc) = enc {
            reencode_props(&req, &enc, rfc1929::decode_auth_request);
        }
    }
}

/// SOCKS5 UDP header oracle (datagram semantics: complete or bad).
pub fn udp_header(data: &[u8]) {
    let Ok((hdr, off)) = udp::decode_udp(data) else {
        return;
    };
    assert!(off <= data.len() && off == hdr.encoded_len());
    let payload = &data[off..];
    let mut enc = Vec::new();
    hdr.encode(&mut enc);
    enc.extend_from_slice(payload);
    let again = udp::decode_udp(&enc);
    assert!(
        matches!(&again, Ok((h, o)) if *h == hdr && &enc[*o..] == payload),
        "UDP round trip failed: {hdr:?} -> {again:?}"
    );
    if hdr.frag == 0 {
        let mut plain = Vec::new();
        udp::encode_udp_header(&hdr.dst, &mut plain);
        assert_eq!(plain, enc[..off]);
    }
}

/// PROXY v1/v2 header oracle. TLVs and `UNKNOWN` trailers are not re-encoded, so the round
/// trip compares version and addresses, not byte counts.
pub fn proxy_header(data: &[u8]) {
    let Some(h) = stream_props(data, proxy::decode_header) else {
        return;
    };
    assert_eq!(h.source.is_some(), h.destination.is_some());
    let enc = match h.version {
        proxy::ProxyVersion::V1 => proxy::encode_v1(h.source, h.destination),
        proxy::ProxyVersion::V2 => proxy::encode_v2(h.source, h.destination, &[]),
    };
    let again = proxy::decode_header(&enc);
    assert!(
        matches!(&again, Ok(Some((g, n)))
            if g.version == h.version && g.source == h.source
                && g.destination == h.destination && *n == enc.len()),
        "PROXY round trip failed: {h:?} -> {again:?}"
    );
}
