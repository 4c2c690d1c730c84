//! The Debian example files, as shipped and with their commented-out lines enabled.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ok, ok_all};
use rsockd_config::{
    check_startable, parse_str, AddrMatch, HostSpec, Method, PortMatch, RuleKind, Verdict,
};

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn shipped_examples_parse() {
    for f in ["danted.conf", "danted-basic.conf", "danted-chaining.conf"] {
        let l = ok(&data(f));
        // Dante rejects them only for the missing internal/external addresses.
        let e = check_startable(&l.config).unwrap_err();
        assert!(e.to_string().contains("no internal address given"), "{f}");
    }
}

#[test]
fn basic_example_model() {
    let c = ok(&data("danted-basic.conf")).config;
    assert_eq!(c.socks_rules.len(), 1);
    let r = &c.socks_rules[0];
    assert_eq!(
        (r.kind, r.verdict, r.number, r.line),
        (RuleKind::Socks, Verdict::Block, 1, 18)
    );
    assert_eq!(r.to.addr, AddrMatch::Name("lo".into()));
    assert!(r.log.connect);
}

#[test]
fn uncommented_examples_parse_with_all_features() {
    let c = ok_all(&data("danted-uncommented.conf")).config;
    // The last socksmethod line wins: `pam` is `pam.username`.
    assert_eq!(c.socksmethod, vec![Method::PamUsername]);
    assert_eq!(c.internal.len(), 2);
    assert_eq!(c.internal[1].host, HostSpec::Name("eth0".into()));
    assert_eq!(c.client_rules.len(), 2);
    assert_eq!(c.socks_rules.len(), 8);
    let http = &c.socks_rules[5];
    assert_eq!(http.to.addr, AddrMatch::Domain("example.com".into()));
    assert_eq!(http.to.port, PortMatch::Eq(80));
    assert_eq!(c.client_rules[0].from.port, PortMatch::Range(1, 65535));

    let b = ok_all(&data("danted-basic-uncommented.conf")).config;
    assert_eq!(b.socks_rules.len(), 3);
    assert_eq!(b.socks_rules[1].to.port, PortMatch::Le(1023));
    let ch = ok_all(&data("danted-chaining-uncommented.conf")).config;
    assert_eq!(ch.client_rules.len(), 1);
}

#[test]
fn uncommented_examples_parse_without_unsupported_features() {
    // Every line danted -V accepts is accepted.
    for f in [
        "danted-uncommented.conf",
        "danted-basic-uncommented.conf",
        "danted-chaining-uncommented.conf",
    ] {
        if let Err(e) = parse_str(f, &data(f)) {
            panic!("{f}: {e}");
        }
    }
}
