//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same oracles the
//! fuzz targets use, on stable Rust, as part of `cargo test`. Crashers found by fuzzing are
//! committed there too, so they stay fixed.
//!
//! The hand-written seeds are defined in `seeds()` below, so what they exercise is readable
//! here; `seed_files_are_committed` checks that every seed file exists with this content.
//! After changing `seeds()`, rewrite the files with
//! `cargo test -p rsockd-proto --test corpus -- --ignored regenerate_seed_corpus`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use rsockd_proto::oracle;
use rsockd_proto::proxy::{encode_v1, encode_v2, V2_MAX_PAYLOAD, V2_SIGNATURE};

type Oracle = fn(&[u8]);

const TARGETS: [(&str, Oracle); 6] = [
    ("socks4_request", oracle::socks4_request),
    ("socks5_greeting", oracle::socks5_greeting),
    ("socks5_request", oracle::socks5_request),
    ("rfc1929", oracle::rfc1929),
    ("udp_header", oracle::udp_header),
    ("proxy_header", oracle::proxy_header),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn replay_corpus() {
    for (target, oracle) in TARGETS {
        let dir = corpus_dir(target);
        let mut n = 0;
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            // Name the file if its oracle panics.
            let r = std::panic::catch_unwind(|| oracle(&data));
            assert!(r.is_ok(), "oracle {target} failed on {}", path.display());
            n += 1;
        }
        // Guards against a moved folder turning this test into a no-op.
        assert!(
            n >= 20,
            "{target}: only {n} corpus files in {}",
            dir.display()
        );
    }
}

#[test]
fn seed_files_are_committed() {
    for (target, _) in TARGETS {
        for (name, data) in seeds(target) {
            let path = corpus_dir(target).join(&name);
            let on_disk = fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
            assert_eq!(on_disk, data, "{} differs from seeds()", path.display());
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing seeds()"]
fn regenerate_seed_corpus() {
    for (target, oracle) in TARGETS {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds(target) {
            oracle(&data);
            fs::write(dir.join(name), data).unwrap();
        }
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Adds `msg` and some of its strict prefixes (as TCP would split it).
fn with_prefixes(out: &mut Vec<(String, Vec<u8>)>, name: &str, msg: &[u8]) {
    out.push((name.to_owned(), msg.to_vec()));
    for k in [1, msg.len() / 2, msg.len().saturating_sub(1)] {
        if k > 0 && k < msg.len() {
            out.push((format!("{name}-prefix{k}"), msg[..k].to_vec()));
        }
    }
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut s: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, data: Vec<u8>| s.push((name.to_owned(), data));
    let host255 = vec![b'h'; 255];
    let user255 = vec![b'u'; 255];
    match target {
        "socks4_request" => {
            add(
                "connect",
                b"\x04\x01\x00\x50\xc0\x00\x02\x01bob\x00".to_vec(),
            );
            add(
                "connect-empty-userid",
                b"\x04\x01\x01\xbb\x7f\x00\x00\x01\x00".to_vec(),
            );
            add("bind", b"\x04\x02\x00\x15\x0a\x00\x00\x01ftp\x00".to_vec());
            add(
                "unknown-cmd",
                b"\x04\x03\x00\x50\x01\x02\x03\x04\x00".to_vec(),
            );
            add("cmd-zero", b"\x04\x00\x00\x50\x01\x02\x03\x04\x00".to_vec());
            add(
                "dst-0.0.0.0",
                b"\x04\x01\x00\x50\x00\x00\x00\x00\x00".to_vec(),
            );
            add(
                "dst-bcast",
                b"\x04\x02\x00\x00\xff\xff\xff\xff\x00".to_vec(),
            );
            add(
                "4a",
                b"\x04\x01\x00\x50\x00\x00\x00\x01\x00example.org\x00".to_vec(),
            );
            add(
                "4a-userid",
                b"\x04\x01\x01\xbb\x00\x00\x00\xffme\x00a.b\x00".to_vec(),
            );
            add(
                "4a-host255",
                cat(&[b"\x04\x01\x00\x50\x00\x00\x00\x01\x00", &host255, b"\x00"]),
            );
            add(
                "4a-host256",
                cat(&[b"\x04\x01\x00\x50\x00\x00\x00\x01\x00", &host255, b"h\x00"]),
            );
            add(
                "4a-host-unterminated",
                cat(&[b"\x04\x01\x00\x50\x00\x00\x00\x01\x00", &host255]),
            );
            add(
                "4a-empty-host",
                b"\x04\x01\x00\x50\x00\x00\x00\x07\x00\x00".to_vec(),
            );
            add(
                "4a-bad-utf8",
                b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\xff\xfe\x00".to_vec(),
            );
            add(
                "4a-max",
                cat(&[
                    b"\x04\x01\x00\x50\x00\x00\x00\x01",
                    &user255,
                    b"\x00",
                    &host255,
                    b"\x00",
                ]),
            );
            add(
                "userid255",
                cat(&[b"\x04\x01\x00\x50\x01\x01\x01\x01", &user255, b"\x00"]),
            );
            add(
                "userid256",
                cat(&[b"\x04\x01\x00\x50\x01\x01\x01\x01", &user255, b"u\x00"]),
            );
            add(
                "userid-unterminated",
                cat(&[b"\x04\x01\x00\x50\x01\x01\x01\x01", &user255]),
            );
            add(
                "userid-binary",
                b"\x04\x01\x00\x50\x01\x01\x01\x01\xff\x01\n\x00".to_vec(),
            );
            add(
                "trailing-data",
                b"\x04\x01\x00\x50\x01\x02\x03\x04\x00GET / HTTP/1.0\r\n\r\n".to_vec(),
            );
            add("version5", b"\x05\x01\x00".to_vec());
            add("version0", b"\x00\x5a\x00\x50\x01\x02\x03\x04".to_vec());
            add("empty", Vec::new());
            with_prefixes(
                &mut s,
                "4a-split",
                b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00host.example\x00",
            );
        }
        "socks5_greeting" => {
            add("no-auth", vec![5, 1, 0]);
            add("no-auth-userpass", vec![5, 2, 0, 2]);
            add("gssapi-userpass-none", vec![5, 3, 1, 2, 0]);
            add("zero-methods", vec![5, 0]);
            add(
                "all-255-methods",
                cat(&[&[5, 255], &(0..=254).collect::<Vec<u8>>()]),
            );
            add("ff-method", vec![5, 1, 0xff]);
            add("duplicates", vec![5, 4, 2, 2, 0, 0]);
            add("version4", vec![4, 1, 0]);
            add("version6", vec![6, 1, 0]);
            add("version0", vec![0]);
            add("lying-length", vec![5, 10, 0, 2]);
            add(
                "pipelined-request",
                vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80],
            );
            add(
                "pipelined-auth",
                cat(&[&[5, 1, 2, 1, 3], b"bob", &[6], b"secret"]),
            );
            add("only-version", vec![5]);
            add("http", b"GET / HTTP/1.1\r\n".to_vec());
            add("tls", vec![0x16, 3, 1, 0, 0xa5]);
            add("empty", Vec::new());
            with_prefixes(&mut s, "split", &[5, 3, 0, 1, 2]);
            with_prefixes(&mut s, "split255", &cat(&[&[5, 255], &[0u8; 255]]));
        }
        "socks5_request" => {
            add("connect-ipv4", vec![5, 1, 0, 1, 192, 0, 2, 1, 0, 80]);
            add(
                "connect-ipv6",
                cat(&[
                    &[5, 1, 0, 4],
                    &[0x20, 1, 0xd, 0xb8],
                    &[0; 11],
                    &[1, 1, 0xbb],
                ]),
            );
            add(
                "connect-v4mapped",
                cat(&[
                    &[5, 1, 0, 4],
                    &[0; 10],
                    &[0xff, 0xff, 127, 0, 0, 1],
                    &[0, 22],
                ]),
            );
            add(
                "connect-domain",
                cat(&[&[5, 1, 0, 3, 11], b"example.org", &[0, 80]]),
            );
            add("connect-domain1", cat(&[&[5, 1, 0, 3, 1], b"x", &[0, 80]]));
            add(
                "connect-domain255",
                cat(&[&[5, 1, 0, 3, 255], &host255, &[1, 0]]),
            );
            add(
                "connect-domain-utf8",
                cat(&[
                    &[5, 1, 0, 3, 6],
                    "bücher".as_bytes()[..6].as_ref(),
                    &[0, 80],
                ]),
            );
            add("bind", vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
            add("udp-associate", vec![5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
            add("udp-associate-v6", cat(&[&[5, 3, 0, 4], &[0; 16], &[0, 0]]));
            add("unknown-cmd0", vec![5, 0, 0, 1, 1, 2, 3, 4, 0, 1]);
            add("unknown-cmd4", vec![5, 4, 0, 1, 1, 2, 3, 4, 0, 1]);
            add("unknown-cmdff", vec![5, 0xff, 0, 1, 1, 2, 3, 4, 0, 1]);
            add("rsv-nonzero", vec![5, 1, 0xff, 1, 1, 2, 3, 4, 0, 1]);
            add("atyp0", vec![5, 1, 0, 0, 1, 2, 3, 4, 0, 1]);
            add("atyp2", vec![5, 1, 0, 2, 1, 2, 3, 4, 0, 1]);
            add("atyp5", vec![5, 1, 0, 5]);
            add("atypff", vec![5, 1, 0, 0xff]);
            add("empty-domain", vec![5, 1, 0, 3, 0, 0, 80]);
            add("domain-bad-utf8", vec![5, 1, 0, 3, 2, 0xc3, 0x28, 0, 80]);
            add("domain-nul", vec![5, 1, 0, 3, 3, b'a', 0, b'b', 0, 80]);
            add("domain-lying-length", vec![5, 1, 0, 3, 200, b'a', b'b']);
            add("version4", vec![4, 1, 0, 80, 1, 2, 3, 4, 0]);
            add(
                "trailing-data",
                cat(&[&[5, 1, 0, 3, 3], b"foo", &[1, 187], b"\x16\x03\x01\x02\x00"]),
            );
            add("reply-success", vec![5, 0, 0, 1, 10, 0, 0, 1, 4, 56]);
            add("reply-unassigned", vec![5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0]);
            add("empty", Vec::new());
            with_prefixes(
                &mut s,
                "split-v6",
                &cat(&[&[5, 1, 0, 4], &[0xfe, 0x80], &[0; 13], &[1, 0x1f, 0x90]]),
            );
            with_prefixes(
                &mut s,
                "split-domain",
                &cat(&[&[5, 1, 0, 3, 9], b"localhost", &[0x1f, 0x90]]),
            );
        }
        "rfc1929" => {
            add("basic", cat(&[&[1, 3], b"bob", &[6], b"secret"]));
            add("version5", cat(&[&[5, 1], b"u", &[1], b"p"]));
            add("version2", cat(&[&[2, 1], b"u", &[1], b"p"]));
            add("version0", vec![0, 1, b'u', 0]);
            add("empty-password", cat(&[&[1, 1], b"u", &[0]]));
            add("empty-username", vec![1, 0, 1, b'p']);
            add("max", cat(&[&[1, 255], &user255, &[255], &[b'p'; 255]]));
            add("lying-ulen", cat(&[&[1, 255], b"ab"]));
            add("lying-plen", cat(&[&[1, 1], b"a", &[255], b"pass"]));
            add("binary", vec![1, 3, 0, 0xff, b'\n', 2, 0, 0]);
            add(
                "utf8",
                cat(&[
                    &[1, 5],
                    "jörg".as_bytes(),
                    &[4],
                    "päß".as_bytes()[..4].as_ref(),
                ]),
            );
            add(
                "trailing-request",
                cat(&[&[1, 1], b"u", &[1], b"p", &[5, 1, 0, 1, 1, 2, 3, 4, 0, 80]]),
            );
            add("only-version", vec![1]);
            add("socks5-greeting-by-mistake", vec![5, 1, 0]);
            add("empty", Vec::new());
            with_prefixes(
                &mut s,
                "split",
                &cat(&[&[1, 5], b"alice", &[8], b"password"]),
            );
            with_prefixes(&mut s, "split-v5", &cat(&[&[5, 4], b"user", &[0]]));
        }
        "udp_header" => {
            add(
                "ipv4-payload",
                cat(&[&[0, 0, 0, 1, 8, 8, 8, 8, 0, 53], b"\x12\x34\x01\x00"]),
            );
            add("ipv4-empty-payload", vec![0, 0, 0, 1, 127, 0, 0, 1, 0, 7]);
            add(
                "ipv6",
                cat(&[&[0, 0, 0, 4], &[0; 15], &[1], &[0, 53], b"q"]),
            );
            add(
                "domain",
                cat(&[&[0, 0, 0, 3, 11], b"example.org", &[0, 53], b"payload"]),
            );
            add("domain255", cat(&[&[0, 0, 0, 3, 255], &host255, &[0, 53]]));
            add("frag1", vec![0, 0, 1, 1, 1, 2, 3, 4, 0, 9, 0xaa]);
            add("frag-last", vec![0, 0, 0x81, 1, 1, 2, 3, 4, 0, 9, 0xaa]);
            add("rsv-nonzero", vec![0xff, 0xff, 0, 1, 1, 2, 3, 4, 0, 9]);
            add("atyp-bad", vec![0, 0, 0, 9, 1, 2, 3, 4, 0, 9]);
            add("empty-domain", vec![0, 0, 0, 3, 0, 0, 9]);
            add("domain-bad-utf8", vec![0, 0, 0, 3, 1, 0x80, 0, 9]);
            add("domain-lying-length", vec![0, 0, 0, 3, 50, b'a', 0, 9]);
            add("truncated-ipv4", vec![0, 0, 0, 1, 1, 2, 3]);
            add("truncated-ipv6", cat(&[&[0, 0, 0, 4], &[0; 10]]));
            add("truncated-rsv", vec![0, 0]);
            add("empty", Vec::new());
            add("only-header-start", vec![0, 0, 0]);
            add(
                "socks5-request-by-mistake",
                vec![5, 1, 0, 1, 1, 2, 3, 4, 0, 80],
            );
            add(
                "dns-query",
                cat(&[
                    &[0, 0, 0, 1, 9, 9, 9, 9, 0, 53],
                    &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7],
                    b"example",
                    &[3],
                    b"com",
                    &[0, 0, 1, 0, 1],
                ]),
            );
            add(
                "big-payload",
                cat(&[&[0, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39], &[0x5a; 512]]),
            );
        }
        "proxy_header" => {
            let sa = |x: &str| Some(x.parse().unwrap());
            add(
                "v1-tcp4",
                encode_v1(sa("192.0.2.1:56324"), sa("198.51.100.2:1080")),
            );
            add(
                "v1-tcp6",
                encode_v1(sa("[2001:db8::1]:1"), sa("[::1]:1080")),
            );
            add("v1-unknown", encode_v1(None, None));
            add(
                "v1-unknown-trailer",
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
            );
            add("v1-max-107", b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec());
            add("v1-too-long", cat(&[b"PROXY UNKNOWN ", &[b'x'; 100]]));
            add("v1-bare-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec());
            add(
                "v1-bad-port",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
            );
            add(
                "v1-plus-port",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(),
            );
            add("v1-family-mismatch", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec());
            add("v1-udp4", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec());
            add(
                "v1-double-space",
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".to_vec(),
            );
            add(
                "v1-then-socks",
                cat(&[b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 1080\r\n", &[5, 1, 0]]),
            );
            add(
                "v2-inet",
                encode_v2(sa("10.0.0.1:1000"), sa("10.0.0.2:1080"), &[]),
            );
            add(
                "v2-inet-tlvs",
                encode_v2(
                    sa("10.0.0.1:1000"),
                    sa("10.0.0.2:1080"),
                    &[4, 0, 2, b'h', b'i', 0x20, 0, 1, 0],
                ),
            );
            add(
                "v2-inet6",
                encode_v2(sa("[2001:db8::5]:7"), sa("[::1]:1080"), &[]),
            );
            add("v2-local", encode_v2(None, None, &[]));
            add(
                "v2-local-with-addr",
                cat(&[&V2_SIGNATURE, &[0x20, 0x11, 0, 12], &[1; 12]]),
            );
            add(
                "v2-unspec",
                cat(&[&V2_SIGNATURE, &[0x21, 0x00, 0, 2, 9, 9]]),
            );
            add(
                "v2-unix",
                cat(&[&V2_SIGNATURE, &[0x21, 0x31, 0, 216], &[b'/'; 216]]),
            );
            add(
                "v2-udp4",
                cat(&[
                    &V2_SIGNATURE,
                    &[0x21, 0x12, 0, 12],
                    &[10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53],
                ]),
            );
            add("v2-bad-version", cat(&[&V2_SIGNATURE, &[0x11, 0x11, 0, 0]]));
            add("v2-bad-command", cat(&[&V2_SIGNATURE, &[0x22, 0x11, 0, 0]]));
            add("v2-bad-family", cat(&[&V2_SIGNATURE, &[0x21, 0x41, 0, 0]]));
            add(
                "v2-too-long",
                cat(&[&V2_SIGNATURE, &[0x21, 0x11, 0xff, 0xff]]),
            );
            add(
                "v2-max",
                encode_v2(
                    sa("10.0.0.1:1"),
                    sa("10.0.0.2:2"),
                    &vec![0; V2_MAX_PAYLOAD - 12],
                ),
            );
            add(
                "v2-addr-truncated",
                cat(&[&V2_SIGNATURE, &[0x21, 0x21, 0, 12], &[0; 12]]),
            );
            add(
                "v2-lying-length",
                cat(&[&V2_SIGNATURE, &[0x21, 0x11, 0, 100], &[0; 12]]),
            );
            add(
                "v2-bad-signature",
                cat(&[b"\r\n\r\n\0\r\nQUIX\n", &[0x21, 0x11, 0, 0]]),
            );
            add("socks5-greeting", vec![5, 1, 0]);
            add("empty", Vec::new());
            with_prefixes(
                &mut s,
                "v1-split",
                b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 1080\r\n",
            );
            with_prefixes(
                &mut s,
                "v2-split",
                &encode_v2(sa("[::ffff:1.2.3.4]:5"), sa("[::1]:6"), &[1, 0, 0]),
            );
        }
        other => panic!("no seeds for {other}"),
    }
    s
}
