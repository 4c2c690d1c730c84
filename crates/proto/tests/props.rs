//! Property tests for every codec, through the public API only.
//!
//! For each message kind: encode → decode is the identity and consumes exactly the encoding;
//! every strict prefix of a valid encoding is "need more" (a request split over any number of
//! TCP segments decodes once complete); junk appended after a message is not consumed; and
//! arbitrary bytes (random or mutated valid messages) never panic and satisfy the shared
//! oracles used by the fuzz targets.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;
use rsockd_proto::socks4::{self, Socks4Command, Socks4Request};
use rsockd_proto::socks5::{self, Greeting, Reply, Request, Socks5Command};
use rsockd_proto::udp::{self, UdpHeader};
use rsockd_proto::{oracle, proxy, rfc1929, TargetAddr};

fn v4_sa() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
}

fn v6_sa() -> impl Strategy<Value = SocketAddr> {
    // flowinfo and scope_id are not on the wire, so valid values have them 0.
    (any::<[u8; 16]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)))
}

fn domain_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,255}",
        // Any non-control Unicode: up to 4 bytes a char, so at most 240 bytes.
        "\\PC{1,60}",
        Just("x".repeat(255)),
        Just("é".repeat(127)), // 254 bytes of two-byte chars
    ]
}

fn target() -> impl Strategy<Value = TargetAddr> {
    prop_oneof![
        v4_sa().prop_map(TargetAddr::Ip),
        v6_sa().prop_map(TargetAddr::Ip),
        (domain_name(), any::<u16>()).prop_map(|(n, p)| TargetAddr::Domain(n, p)),
    ]
}

fn junk() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..32)
}

type Decoder<T, E> = fn(&[u8]) -> Result<Option<(T, usize)>, E>;

/// Shared checks for a stream decoder on a valid encoding.
fn check_stream<T, E>(
    msg: &T,
    wire: &[u8],
    junk: &[u8],
    decode: Decoder<T, E>,
) -> Result<(), TestCaseError>
where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let got = decode(wire).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(got.as_ref().map(|(m, n)| (m, *n)), Some((msg, wire.len())));
    for k in 0..wire.len() {
        let p = decode(&wire[..k]);
        prop_assert!(
            matches!(p, Ok(None)),
            "prefix {}/{}: {:?}",
            k,
            wire.len(),
            p
        );
    }
    let with_junk = [wire, junk].concat();
    let got = decode(&with_junk).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(got.as_ref().map(|(m, n)| (m, *n)), Some((msg, wire.len())));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn socks4_roundtrip(
        cmd in any::<u8>(),
        dst in prop_oneof![
            v4_sa().prop_map(TargetAddr::Ip),
            (domain_name(), any::<u16>()).prop_map(|(n, p)| TargetAddr::Domain(n, p)),
        ],
        userid in proptest::collection::vec(1u8..=255, 0..=255),
        junk in junk(),
    ) {
        // A plain v4 target of 0.0.0.x (x != 0) would be read as 4a: not a valid v4 value.
        if let TargetAddr::Ip(SocketAddr::V4(sa)) = &dst {
            let o = sa.ip().octets();
            prop_assume!(!(o[..3] == [0, 0, 0] && o[3] != 0));
        }
        let req = Socks4Request { command: Socks4Command::from_u8(cmd), dst, userid };
        let wire = socks4::encode_request(&req).unwrap();
        check_stream(&req, &wire, &junk, socks4::decode_request)?;
        oracle::socks4_request(&wire);
    }

    #[test]
    fn socks4_reply_roundtrip(code in 90u8..=93, ip in any::<[u8; 4]>(), port in any::<u16>()) {
        let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
        let c = socks4::Socks4Reply::from_code(code).unwrap();
        let (r, n) = socks4::decode_reply(&socks4::encode_reply(c, addr)).unwrap();
        prop_assert_eq!((r.code, r.addr, n), (code, addr, 8));
    }

    #[test]
    fn socks5_greeting_roundtrip(
        methods in proptest::collection::vec(any::<u8>(), 0..=255),
        junk in junk(),
    ) {
        let g = Greeting { methods };
        let wire = socks5::encode_greeting(&g);
        check_stream(&g, &wire, &junk, socks5::decode_greeting)?;
        oracle::socks5_greeting(&wire);
    }

    #[test]
    fn socks5_method_selection_roundtrip(m in any::<u8>()) {
        let wire = socks5::encode_method_selection(m);
        prop_assert_eq!(socks5::decode_method_selection(&wire), Ok(Some((m, 2))));
    }

    #[test]
    fn socks5_request_roundtrip(cmd in any::<u8>(), dst in target(), junk in junk()) {
        let req = Request { command: Socks5Command::from_u8(cmd), dst, flag: 0 };
        prop_assert_eq!(req.command.code(), cmd);
        let wire = socks5::encode_request(&req);
        check_stream(&req, &wire, &junk, socks5::decode_request)?;
        oracle::socks5_request(&wire);
    }

    #[test]
    fn socks5_reply_roundtrip(code in 0u8..=8, bnd in target(), junk in junk()) {
        let rep = Reply::from_code(code).unwrap();
        let wire = socks5::encode_reply(rep, &bnd);
        let msg = socks5::ServerReply { code, bnd };
        check_stream(&msg, &wire, &junk, socks5::decode_reply)?;
        prop_assert_eq!(msg.reply(), Some(rep));
    }

    #[test]
    fn rfc1929_roundtrip(
        username in proptest::collection::vec(any::<u8>(), 1..=255),
        password in proptest::collection::vec(any::<u8>(), 0..=255),
        junk in junk(),
    ) {
        let req = rfc1929::AuthRequest { username, password };
        let wire = rfc1929::encode_auth_request(&req).unwrap();
        check_stream(&req, &wire, &junk, rfc1929::decode_auth_request)?;
        oracle::rfc1929(&wire);
    }

    #[test]
    fn rfc1929_reply_roundtrip(s in any::<u8>()) {
        prop_assert_eq!(rfc1929::decode_auth_reply(&rfc1929::encode_auth_reply(s)), Some((s, 2)));
    }

    #[test]
    fn udp_roundtrip(
        frag in any::<u8>(),
        dst in target(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = UdpHeader { frag, dst };
        let mut wire = Vec::new();
        h.encode(&mut wire);
        prop_assert_eq!(wire.len(), h.encoded_len());
        let off = wire.len();
        wire.extend_from_slice(&payload);
        prop_assert_eq!(udp::decode_udp(&wire), Ok((h.clone(), off)));
        // Every truncation inside the header is an error, never a header.
        for k in 0..off {
            prop_assert!(udp::decode_udp(&wire[..k]).is_err());
        }
        oracle::udp_header(&wire);
        if frag == 0 {
            let mut plain = Vec::new();
            udp::encode_udp_header(&h.dst, &mut plain);
            prop_assert_eq!(&plain[..], &wire[..off]);
        }
    }

    #[test]
    fn proxy_roundtrip(
        v2 in any::<bool>(),
        addrs in prop_oneof![
            Just(None),
            (v4_sa(), v4_sa()).prop_map(Some),
            (v6_sa(), v6_sa()).prop_map(Some),
        ],
        tlvs in proptest::collection::vec(any::<u8>(), 0..64),
        junk in junk(),
    ) {
        let (src, dst) = (addrs.map(|a| a.0), addrs.map(|a| a.1));
        let (wire, version) = if v2 {
            (proxy::encode_v2(src, dst, &tlvs), proxy::ProxyVersion::V2)
        } else {
            (proxy::encode_v1(src, dst), proxy::ProxyVersion::V1)
        };
        let h = proxy::ProxyHeader { version, source: src, destination: dst, consumed: wire.len() };
        check_stream(&h, &wire, &junk, proxy::decode_header)?;
        oracle::proxy_header(&wire);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        run_all(&data);
    }

    #[test]
    fn arbitrary_bytes_with_valid_first_byte(
        first in prop_oneof![Just(1u8), Just(4), Just(5), Just(b'P'), Just(b'\r'), Just(0)],
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let data = [&[first][..], &data].concat();
        run_all(&data);
    }

    #[test]
    fn mutated_valid_messages(
        dst in target(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wires = vec![
            socks5::encode_request(&Request { command: Socks5Command::Connect, dst: dst.clone(), flag: 0 }),
            proxy::encode_v2(Some("1.2.3.4:5".parse().unwrap()), Some("6.7.8.9:10".parse().unwrap()), &[]),
            proxy::encode_v1(Some("[::1]:5".parse().unwrap()), Some("[::2]:6".parse().unwrap())),
        ];
        let mut u = Vec::new();
        udp::encode_udp_header(&dst, &mut u);
        wires.push(u);
        if let Some(w) = socks4::encode_request(&Socks4Request {
            command: Socks4Command::Connect, dst, userid: b"user".to_vec(),
        }) {
            wires.push(w);
        }
        for mut w in wires {
            let i = pos.index(w.len());
            w[i] = byte;
            w.truncate(cut.index(w.len() + 1));
            run_all(&w);
        }
    }
}

fn run_all(data: &[u8]) {
    oracle::socks4_request(data);
    oracle::socks5_greeting(data);
    oracle::socks5_request(data);
    oracle::rfc1929(data);
    oracle::udp_header(data);
    oracle::proxy_header(data);
    let _ = socks4::decode_reply(data);
    let _ = socks5::decode_method_selection(data);
    let _ = rfc1929::decode_auth_reply(data);
    let _ = rsockd_proto::addr::decode_socks5_addr(data);
}
