//! Property: RuleSet agrees with a naive matcher written straight from Dante's rule semantics,
//! on random rule lists and random queries over a small vocabulary (so matches are frequent).
#![allow(clippy::unwrap_used)]

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use rsockd_config::{
    AddrMatch, Command, Config, Method, PortMatch, Protocol, ProxyProtocol, Rule, RuleAddr,
    RuleKind, Verdict,
};
use rsockd_rules::{ClientQuery, Dest, RuleSet, SocksQuery};
use std::net::{IpAddr, SocketAddr};

const IPS: &[&str] = &[
    "10.0.0.1",
    "10.1.2.3",
    "192.0.2.7",
    "127.0.0.1",
    "203.0.113.9",
    "::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "fe80::5",
];
const NETS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
    "192.0.2.7/32",
    "10.1.2.3/8",
];
const NAMES: &[&str] = &[
    "lo",
    "eth0",
    "www.example.com",
    "Example.COM",
    "a.example.com",
    "b.org",
];
const DOMAINS: &[&str] = &["example.com", "com", "org", "a.example.com"];
const PORTS: &[u16] = &[0, 21, 80, 443, 1080, 65535];
const USERS: &[&str] = &["alice", "bob"];

fn iface(name: &str) -> Option<Vec<IpNet>> {
    match name {
        "lo" => Some(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]),
        "eth0" => Some(vec!["192.0.2.0/24".parse().unwrap()]),
        _ => None,
    }
}

// ---- the reference: plain loops over the config model ----

fn ref_port(p: PortMatch, port: u16) -> bool {
    match p {
        PortMatch::Any => true,
        PortMatch::Eq(x) => port == x,
        PortMatch::Ne(x) => port != x,
        PortMatch::Ge(x) => port >= x,
        PortMatch::Le(x) => port <= x,
        PortMatch::Gt(x) => port > x,
        PortMatch::Lt(x) => port < x,
        PortMatch::Range(a, b) => a <= port && port <= b,
    }
}

fn ref_name_eq(rule: &str, name: &str) -> bool {
    rule.trim_end_matches('.')
        .eq_ignore_ascii_case(name.trim_end_matches('.'))
}

fn ref_in_domain(domain: &str, name: &str) -> bool {
    let n = name.trim_end_matches('.').to_lowercase();
    let d = domain.to_lowercase();
    n == d || n.ends_with(&format!(".{d}"))
}

fn ref_net_has(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    };
    net.contains(&ip)
}

fn ref_addr(
    a: &RuleAddr,
    ip: Option<IpAddr>,
    port: u16,
    name: Option<&str>,
    names: &[String],
) -> bool {
    if !ref_port(a.port, port) {
        return false;
    }
    let all_names: Vec<&str> = name
        .into_iter()
        .chain(names.iter().map(|s| s.as_str()))
        .collect();
    match &a.addr {
        AddrMatch::Any => true,
        AddrMatch::Net(n) => ip.is_some_and(|ip| ref_net_has(n, ip)),
        AddrMatch::Name(n) => match iface(n) {
            Some(nets) => ip.is_some_and(|ip| nets.iter().any(|net| ref_net_has(net, ip))),
            None => all_names.iter().any(|x| ref_name_eq(n, x)),
        },
        AddrMatch::Domain(d) => all_names.iter().any(|x| ref_in_domain(d, x)),
    }
}

fn ref_socks(cfg: &Config, q: &SocksQuery<'_>, src_names: &[String]) -> (Verdict, u32) {
    for r in &cfg.socks_rules {
        let proto = match q.command {
            Command::UdpAssociate | Command::UdpReply => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        let methods = if r.socksmethod.is_empty() {
            &cfg.socksmethod
        } else {
            &r.socksmethod
        };
        // Dante: replies are checked without the session's authentication unless
        // `srchost: checkreplyauth` (no method check, no user).
        let reply = matches!(q.command, Command::BindReply | Command::UdpReply);
        let plain = reply && !cfg.srchost.checkreplyauth;
        let user = if plain { None } else { q.user };
        let ok = (r.command.is_empty() || r.command.contains(&q.command))
            && (r.protocol.is_empty() || r.protocol.contains(&proto))
            && (r.proxyprotocol.is_empty() || r.proxyprotocol.contains(&q.version))
            && (plain || methods.contains(&q.method))
            && (plain || q.version != ProxyProtocol::SocksV4 || methods.contains(&Method::None))
            && (r.user.is_empty() || user.is_some_and(|u| r.user.iter().any(|x| x == u)))
            && ref_addr(&r.from, Some(q.src.ip()), q.src.port(), None, src_names)
            && ref_addr(&r.to, q.dst.ip, q.dst.port, q.dst.name, q.dst.names);
        if ok {
            return (r.verdict, r.number);
        }
    }
    (Verdict::Block, 0)
}

fn ref_client(cfg: &Config, q: &ClientQuery<'_>) -> (Verdict, u32) {
    for r in &cfg.client_rules {
        if ref_addr(&r.from, Some(q.src.ip()), q.src.port(), None, q.src_names)
            && ref_addr(&r.to, Some(q.dst.ip()), q.dst.port(), None, &[])
        {
            return (r.verdict, r.number);
        }
    }
    (Verdict::Block, 0)
}

// ---- strategies ----

fn port_match() -> impl Strategy<Value = PortMatch> {
    let p = || select(PORTS.to_vec());
    prop_oneof![
        2 => Just(PortMatch::Any),
        1 => p().prop_map(PortMatch::Eq),
        1 => p().prop_map(PortMatch::Ne),
        1 => p().prop_map(PortMatch::Ge),
        1 => p().prop_map(PortMatch::Le),
        1 => p().prop_map(PortMatch::Gt),
        1 => p().prop_map(PortMatch::Lt),
        1 => (p(), p()).prop_map(|(a, b)| PortMatch::Range(a.min(b), a.max(b))),
    ]
}

fn rule_addr(names_ok: bool) -> impl Strategy<Value = RuleAddr> {
    let net = select(NETS.to_vec()).prop_map(|n| AddrMatch::Net(n.parse().unwrap()));
    let name = select(NAMES.to_vec()).prop_map(|n| AddrMatch::Name(n.to_string()));
    let dom = select(DOMAINS.to_vec()).prop_map(|d| AddrMatch::Domain(d.to_string()));
    let addr = if names_ok {
        prop_oneof![2 => Just(AddrMatch::Any), 3 => net, 2 => name, 1 => dom].boxed()
    } else {
        prop_oneof![
            1 => Just(AddrMatch::Any),
            2 => net,
            1 => select(vec!["lo", "eth0"]).prop_map(|n| AddrMatch::Name(n.to_string())),
        ]
        .boxed()
    };
    (addr, port_match()).prop_map(|(addr, port)| RuleAddr { addr, port })
}

fn rule(kind: RuleKind, global: Vec<Method>) -> impl Strategy<Value = Rule> {
    let socks = kind == RuleKind::Socks;
    let take = global.len().min(2);
    (
        any::<bool>(),
        rule_addr(true),
        rule_addr(socks),
        subsequence(Command::ALL.to_vec(), 0..=2),
        subsequence(vec![Protocol::Tcp, Protocol::Udp], 0..=1),
        subsequence(vec![ProxyProtocol::SocksV4, ProxyProtocol::SocksV5], 0..=1),
        subsequence(global, 0..=take),
        subsequence(USERS.to_vec(), 0..=1),
    )
        .prop_map(move |(pass, from, to, cmd, proto, pp, sm, users)| {
            let v = if pass { Verdict::Pass } else { Verdict::Block };
            let mut r = Rule::new(kind, v, 0, 0);
            r.from = from;
            r.to = to;
            if socks {
                r.command = cmd;
                r.protocol = proto;
                r.proxyprotocol = pp;
                r.socksmethod = sm;
                r.user = users.into_iter().map(String::from).collect();
            }
            r
        })
}

fn config() -> impl Strategy<Value = Config> {
    subsequence(vec![Method::None, Method::Username, Method::Gssapi], 0..=3).prop_flat_map(|g| {
        (
            proptest::collection::vec(rule(RuleKind::Client, g.clone()), 0..4),
            proptest::collection::vec(rule(RuleKind::Socks, g.clone()), 0..6),
            Just(g),
        )
            .prop_map(|(mut cr, mut sr, g)| {
                for (i, r) in cr.iter_mut().enumerate() {
                    r.number = i as u32 + 1;
                }
                for (i, r) in sr.iter_mut().enumerate() {
                    r.number = i as u32 + 1;
                }
                Config {
                    socksmethod: g,
                    client_rules: cr,
                    socks_rules: sr,
                    ..Config::default()
                }
            })
    })
}

fn sockaddr() -> impl Strategy<Value = SocketAddr> {
    (select(IPS.to_vec()), select(PORTS.to_vec()))
        .prop_map(|(ip, p)| SocketAddr::new(ip.parse().unwrap(), p))
}

fn names() -> impl Strategy<Value = Vec<String>> {
    subsequence(
        vec![
            "www.example.com.",
            "x.b.org",
            "EXAMPLE.com",
            "lo",
            "c.a.example.com",
        ],
        0..=2,
    )
    .prop_map(|v| v.into_iter().map(String::from).collect())
}

#[derive(Debug, Clone)]
struct Req {
    src: SocketAddr,
    version: ProxyProtocol,
    command: Command,
    method: Method,
    user: Option<&'static str>,
    ip: Option<IpAddr>,
    name: Option<&'static str>,
    port: u16,
    names: Vec<String>,
    src_names: Vec<String>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        sockaddr(),
        prop_oneof![Just(ProxyProtocol::SocksV4), Just(ProxyProtocol::SocksV5)],
        select(Command::ALL.to_vec()),
        select(vec![Method::None, Method::Username, Method::Gssapi]),
        proptest::option::of(select(vec!["alice", "bob", "carol"])),
        proptest::option::of(select(IPS.to_vec()).prop_map(|s| s.parse::<IpAddr>().unwrap())),
        proptest::option::of(select(vec![
            "www.example.com",
            "b.org",
            "example.com",
            "lo",
        ])),
        select(PORTS.to_vec()),
        (names(), names()),
    )
        .prop_map(
            |(src, version, command, method, user, ip, name, port, (names, src_names))| Req {
                src,
                version,
                command,
                method,
                user,
                ip,
                name,
                port,
                names,
                src_names,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn socks_agrees_with_reference(cfg in config(), r in req()) {
        let rs = RuleSet::compile(&cfg, &iface).unwrap();
        let q = SocksQuery {
            src: r.src,
            version: r.version,
            command: r.command,
            method: r.method,
            user: r.user,
            groups: &[],
            dst: Dest { ip: r.ip, name: r.name, port: r.port, names: &r.names },
        };
        let m = rs.socks_with_src_names(&q, &r.src_names);
        prop_assert_eq!((m.verdict, m.number), ref_socks(&cfg, &q, &r.src_names));
        prop_assert_eq!(m.rule.map(|x| x.number).unwrap_or(0), m.number);
    }

    #[test]
    fn client_agrees_with_reference(cfg in config(), src in sockaddr(), dst in sockaddr(), n in names()) {
        let rs = RuleSet::compile(&cfg, &iface).unwrap();
        let q = ClientQuery { src, dst, src_names: &n, dst_names: &[] };
        let m = rs.client(&q);
        prop_assert_eq!((m.verdict, m.number), ref_client(&cfg, &q));
    }
}
