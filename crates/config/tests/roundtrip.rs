//! Property: any model printed as sockd.conf parses back to the same model, and printing is
//! stable (print ∘ parse ∘ print = print).
#![allow(clippy::unwrap_used)]

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::subsequence;
use rsockd_config::{
    parse_str_with, AddrMatch, Command, Config, ExternalAddr, Families, HostSpec, ListenAddr,
    LogDest, LogFlags, Method, ParseOptions, PortMatch, Protocol, ProxyProtocol, Rotation, Rule,
    RuleAddr, RuleKind, SessionLimits, StateKey, Throttle, Timeouts, Verdict,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,5}){0,2}"
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    // Dante refuses IPv4-mapped addresses; move those out of ::ffff:0:0/96.
    any::<u128>().prop_map(|n| {
        let ip = Ipv6Addr::from(n);
        if ip.to_ipv4_mapped().is_some() {
            Ipv6Addr::from(n | (1 << 127))
        } else {
            ip
        }
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        v6().prop_map(IpAddr::V6),
    ]
}

fn host() -> impl Strategy<Value = HostSpec> {
    prop_oneof![ip().prop_map(HostSpec::Ip), name().prop_map(HostSpec::Name)]
}

fn families() -> impl Strategy<Value = Families> {
    prop_oneof![
        Just(Families {
            ipv4: true,
            ipv6: true
        }),
        Just(Families {
            ipv4: true,
            ipv6: false
        }),
        Just(Families {
            ipv4: false,
            ipv6: true
        }),
    ]
}

fn opt_u32() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(any::<u32>())
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    (opt_u32(), opt_u32(), opt_u32(), opt_u32(), opt_u32()).prop_map(|(a, b, c, d, e)| Timeouts {
        negotiate: a,
        connect: b,
        io_tcp: c,
        io_udp: d,
        tcp_fin_wait: e,
    })
}

fn log_dest() -> impl Strategy<Value = LogDest> {
    prop_oneof![
        Just(LogDest::Stdout),
        Just(LogDest::Stderr),
        Just(LogDest::Syslog { facility: None }),
        prop::sample::select(vec!["daemon", "local0", "local7", "auth"]).prop_map(|f| {
            LogDest::Syslog {
                facility: Some(f.to_string()),
            }
        }),
        "/[a-z]{1,8}(/[a-z0-9._-]{1,8}){0,2}".prop_map(|p| LogDest::File(PathBuf::from(p))),
    ]
}

fn port() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        Just(PortMatch::Any),
        any::<u16>().prop_map(PortMatch::Eq),
        any::<u16>().prop_map(PortMatch::Ne),
        any::<u16>().prop_map(PortMatch::Ge),
        any::<u16>().prop_map(PortMatch::Le),
        any::<u16>().prop_map(PortMatch::Gt),
        any::<u16>().prop_map(PortMatch::Lt),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortMatch::Range(a.min(b), a.max(b))),
    ]
}

fn addr() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![
        Just(AddrMatch::Any),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            AddrMatch::Net(IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), p).unwrap()))
        }),
        (v6(), 0u8..=128).prop_map(|(a, p)| AddrMatch::Net(IpNet::V6(Ipv6Net::new(a, p).unwrap()))),
        name().prop_map(AddrMatch::Name),
        name().prop_map(AddrMatch::Domain),
    ]
}

fn rule_addr() -> impl Strategy<Value = RuleAddr> {
    (addr(), port()).prop_map(|(addr, port)| RuleAddr { addr, port })
}

fn log_flags() -> impl Strategy<Value = LogFlags> {
    any::<[bool; 6]>().prop_map(|b| LogFlags {
        connect: b[0],
        disconnect: b[1],
        data: b[2],
        error: b[3],
        iooperation: b[4],
        tcpinfo: b[5],
    })
}

/// Unique elements in a random order (lists keep file order).
fn shuffled<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    let n = items.len();
    subsequence(items, 0..=n).prop_shuffle()
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z_][a-z0-9_]{0,6}", 0..3)
        .prop_map(|s| s.into_iter().collect())
        .prop_shuffle()
}

fn throttle() -> impl Strategy<Value = Option<Throttle>> {
    proptest::option::of((1u32..=u32::MAX, 1u32..=86_400))
        .prop_map(|t| t.map(|(sessions, seconds)| Throttle { sessions, seconds }))
}

fn session_limits() -> impl Strategy<Value = SessionLimits> {
    (
        proptest::option::of(1u32..=u32::MAX),
        throttle(),
        proptest::option::of(prop_oneof![Just(StateKey::From), Just(StateKey::User)]),
        proptest::option::of(1u32..=u32::MAX),
        throttle(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(max, throttle, state_key, state_max, state_throttle, inheritable)| SessionLimits {
                max,
                throttle,
                state_key,
                state_max,
                state_throttle,
                inheritable,
            },
        )
}

fn rule(kind: RuleKind, socks: Vec<Method>, client: Vec<Method>) -> impl Strategy<Value = Rule> {
    let socks_only = kind == RuleKind::Socks;
    (
        (any::<bool>(), rule_addr(), rule_addr()),
        shuffled(Command::ALL.to_vec()),
        shuffled(vec![Protocol::Tcp, Protocol::Udp]),
        shuffled(vec![ProxyProtocol::SocksV4, ProxyProtocol::SocksV5]),
        shuffled(socks),
        shuffled(client),
        names(),
        names(),
        log_flags(),
        timeouts(),
        proptest::option::of((any::<u16>(), any::<u16>())),
        (
            proptest::option::of("[a-z][a-z0-9_.-]{0,8}"),
            session_limits(),
            proptest::option::of(1u64..=u64::MAX),
        ),
    )
        .prop_map(
            move |(
                (pass, from, to),
                cmd,
                proto,
                pp,
                sm,
                cm,
                user,
                group,
                log,
                t,
                ur,
                (pam, sl, bw),
            )| {
                let mut r = Rule::new(
                    kind,
                    if pass { Verdict::Pass } else { Verdict::Block },
                    0,
                    0,
                );
                r.from = from;
                r.to = to;
                r.socksmethod = sm;
                r.clientmethod = cm;
                r.user = user;
                r.group = group;
                r.log = log;
                r.timeout = t;
                r.pam_servicename = pam;
                r.session = sl;
                r.bandwidth = bw;
                if socks_only {
                    r.command = cmd;
                    r.protocol = proto;
                    r.proxyprotocol = pp;
                    r.udp_portrange = ur.map(|(a, b)| (a.min(b), a.max(b)));
                }
                r
            },
        )
}

fn listen_addrs(v: Vec<(HostSpec, u16)>) -> Vec<ListenAddr> {
    v.into_iter()
        .map(|(host, port)| ListenAddr {
            host,
            port,
            line: 0,
        })
        .collect()
}

fn numbered(mut rules: Vec<Rule>) -> Vec<Rule> {
    for (i, r) in rules.iter_mut().enumerate() {
        r.number = u32::try_from(i + 1).unwrap();
    }
    rules
}

fn config() -> impl Strategy<Value = Config> {
    let clientmethods = vec![
        Method::None,
        Method::Rfc931,
        Method::PamAddress,
        Method::PamAny,
    ];
    // bsdauth is refused at parse time, as Dante's Linux build refuses it.
    let socksmethods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| *m != Method::BsdAuth)
        .collect();
    (shuffled(socksmethods), shuffled(clientmethods)).prop_flat_map(|(sm, cm)| {
        let eff_cm = if cm.is_empty() {
            vec![Method::None]
        } else {
            cm.clone()
        };
        let settings = (
            vec((host(), any::<u16>()), 0..3),
            families(),
            vec(host(), 0..3),
            families(),
            prop_oneof![
                Just(Rotation::None),
                Just(Rotation::Route),
                Just(Rotation::SameSame)
            ],
            proptest::option::of("[a-z_][a-z0-9_-]{0,8}"),
            proptest::option::of("[a-z_][a-z0-9_-]{0,8}"),
            proptest::option::of("[a-z_][a-z0-9_-]{0,8}"),
            vec(log_dest(), 0..3),
            vec(log_dest(), 0..2),
            opt_u32(),
            timeouts(),
        );
        let ours = (
            any::<bool>(),
            proptest::option::of(ip().prop_filter("not a wildcard", |i| !i.is_unspecified())),
            proptest::option::of(ip().prop_filter("not a wildcard", |i| !i.is_unspecified())),
            proptest::option::of("[a-z][a-z0-9_.-]{0,8}"),
            proptest::option::of("/[a-z0-9_./-]{1,12}"),
            vec((ip(), 0u8..=128), 0..3),
            vec((host(), any::<u16>()), 0..2),
            opt_u32(),
            vec((host(), any::<u16>()), 0..2),
            proptest::option::of(0u32..=1_000_000),
            any::<bool>(),
        );
        let rules = (
            any::<bool>(),
            vec(rule(RuleKind::Client, sm.clone(), eff_cm.clone()), 0..3),
            vec(rule(RuleKind::Socks, sm.clone(), eff_cm), 0..4),
        );
        (Just((sm, cm)), settings, ours, rules).prop_map(
            |(
                (sm, cm),
                (int, ip_, ext, ep, rot, up, uu, ul, lo, el, dbg, t),
                (
                    sameport,
                    announce_udp,
                    announce_bind,
                    pam_servicename,
                    users_file,
                    nets,
                    agents,
                    drain_timeout,
                    metrics,
                    metrics_users,
                    json,
                ),
                (ucd, cr, sr),
            )| {
                Config {
                    internal: listen_addrs(int),
                    internal_protocol: ip_,
                    external: ext
                        .into_iter()
                        .map(|host| ExternalAddr { host, line: 0 })
                        .collect(),
                    external_protocol: ep,
                    external_prefixes: Vec::new(),
                    external_rotation: rot,
                    socksmethod: sm,
                    clientmethod: cm,
                    user_privileged: up,
                    user_unprivileged: uu,
                    user_libwrap: ul,
                    logoutput: lo,
                    errorlog: el,
                    debug: dbg,
                    timeout: t,
                    udp_connectdst: ucd,
                    compat_sameport: sameport,
                    compat_draft505: json && ucd,
                    extension_bind: false,
                    routes: if ucd {
                        let mut r = rsockd_config::Rule::new(
                            rsockd_config::RuleKind::Route,
                            rsockd_config::Verdict::Pass,
                            1,
                            0,
                        );
                        r.via = Some(rsockd_config::Via::Proxy {
                            host: "192.0.2.7".into(),
                            port: 3128,
                        });
                        r.upstream = vec![rsockd_config::Upstream::Http];
                        vec![r]
                    } else {
                        Vec::new()
                    },
                    route_maxfail: if json { 3 } else { 1 },
                    route_badexpire: if sameport { 60 } else { 300 },
                    libwrap_hosts_access: sameport && json,
                    libwrap_allow: json.then(|| std::path::PathBuf::from("/etc/a")),
                    libwrap_deny: None,
                    error_logs: if json {
                        vec![rsockd_config::ErrorLog {
                            side: rsockd_config::Side::External,
                            level: "warning".into(),
                            symbols: vec!["ECONNREFUSED".into(), "no-route".into()],
                            what: rsockd_config::LogWhat::Error,
                        }]
                    } else {
                        Vec::new()
                    },
                    sockopts: if sameport {
                        vec![
                            rsockd_config::SockOpt {
                                side: rsockd_config::Side::Internal,
                                level: rsockd_config::sockopts::SockLevel::Tcp,
                                option: rsockd_config::OptName::Named("tcp_nodelay".into()),
                                value: 1,
                            },
                            rsockd_config::SockOpt {
                                side: rsockd_config::Side::External,
                                level: rsockd_config::sockopts::SockLevel::Ip,
                                option: rsockd_config::OptName::Number(1),
                                value: 40,
                            },
                        ]
                    } else {
                        Vec::new()
                    },
                    srchost: rsockd_config::Srchost {
                        nodnsmismatch: sameport && ucd,
                        nodnsunknown: json,
                        checkreplyauth: sameport ^ json,
                    },
                    announce_udp,
                    announce_bind,
                    proxyprotocol_from: nets.into_iter().fold(Vec::new(), |mut v, (ip, bits)| {
                        let max = if ip.is_ipv4() { 32 } else { 128 };
                        let n = ipnet::IpNet::new(ip, bits.min(max)).unwrap().trunc();
                        if !v.contains(&n) {
                            v.push(n);
                        }
                        v
                    }),
                    agent: listen_addrs(agents),
                    metrics: listen_addrs(metrics),
                    metrics_users,
                    log_format: if json {
                        rsockd_config::LogFormat::Json
                    } else {
                        rsockd_config::LogFormat::Dante
                    },
                    drain_timeout,
                    pam_servicename,
                    route_credentials: users_file
                        .as_ref()
                        .map(|f| std::path::PathBuf::from(format!("{f}.routes"))),
                    users_file: users_file.map(std::path::PathBuf::from),
                    client_rules: numbered(cr),
                    socks_rules: numbered(sr),
                    monitors: Vec::new(),
                    child_maxrequests: None,
                    child_maxlifetime: None,
                    cpu: Default::default(),
                }
            },
        )
    })
}

fn parse_all(text: &str) -> Config {
    let opts = ParseOptions {
        allow_unsupported: true,
        ..Default::default()
    };
    match parse_str_with("rt.conf", text, &opts) {
        Ok(l) => l.config,
        Err(e) => panic!("printed config does not parse:\n{e}\n---\n{text}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_parse_roundtrip(c in config()) {
        let text = c.to_string();
        let back = parse_all(&text);
        prop_assert_eq!(back.without_lines(), c, "text:\n{}", text);
        prop_assert_eq!(back.to_string(), text);
    }
}

#[test]
fn printed_defaults_are_empty() {
    assert_eq!(Config::default().to_string(), "");
}
