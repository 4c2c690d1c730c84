//! Rule matching, one test per condition form.
#![allow(clippy::unwrap_used)]

use ipnet::IpNet;
use rsockd_config::{parse_str, parse_str_with, Config, ParseOptions};
use rsockd_rules::{
    ClientQuery, Command, CompileError, Dest, Method, ProxyProtocol, RuleSet, SocksQuery, Verdict,
};
use std::net::SocketAddr;

fn cfg(text: &str) -> Config {
    match parse_str("t.conf", text) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    }
}

fn cfg_all(text: &str) -> Config {
    let opts = ParseOptions {
        allow_unsupported: true,
        ..Default::default()
    };
    match parse_str_with("t.conf", text, &opts) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    }
}

fn ifaces(name: &str) -> Option<Vec<IpNet>> {
    match name {
        "lo" => Some(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]),
        "eth0" => Some(vec!["192.0.2.0/24".parse().unwrap()]),
        _ => None,
    }
}

fn set(text: &str) -> RuleSet {
    RuleSet::compile(&cfg(text), &ifaces).unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A SOCKS v5 CONNECT with method none from `src` to IP `dst`.
fn q<'a>(src: &str, dst: &str) -> SocksQuery<'a> {
    let d = sa(dst);
    SocksQuery {
        src: sa(src),
        version: ProxyProtocol::SocksV5,
        command: Command::Connect,
        method: Method::None,
        user: None,
        groups: &[],
        dst: Dest {
            ip: Some(d.ip()),
            name: None,
            port: d.port(),
            names: &[],
        },
    }
}

fn socks_rule(rs: &RuleSet, q: &SocksQuery<'_>) -> (Verdict, u32) {
    let m = rs.socks(q);
    (m.verdict, m.number)
}

const NONE: &str = "socksmethod: none\n";

#[test]
fn first_match_wins_and_default_block() {
    let rs = set(&format!(
        "{NONE}socks block {{ from: 0/0 to: 10.0.0.0/8 }}\n\
         socks pass {{ from: 0/0 to: 10.1.0.0/16 }}\n\
         socks pass {{ from: 0/0 to: 192.0.2.0/24 }}\n"
    ));
    assert_eq!(
        socks_rule(&rs, &q("1.1.1.1:5", "10.1.2.3:80")),
        (Verdict::Block, 1)
    );
    assert_eq!(
        socks_rule(&rs, &q("1.1.1.1:5", "192.0.2.9:80")),
        (Verdict::Pass, 3)
    );
    let m = rs.socks(&q("1.1.1.1:5", "203.0.113.1:80"));
    assert_eq!((m.verdict, m.number, m.rule), (Verdict::Block, 0, None));
    let m = rs.socks(&q("1.1.1.1:5", "192.0.2.9:80"));
    assert_eq!(m.rule.unwrap().line, 4);
}

#[test]
fn no_client_rules_blocks_every_client() {
    let rs = set(NONE);
    let m = rs.client(&ClientQuery {
        src: sa("10.0.0.1:3000"),
        dst: sa("10.0.0.2:1080"),
        src_names: &[],
        dst_names: &[],
    });
    assert_eq!((m.verdict, m.number), (Verdict::Block, 0));
}

#[test]
fn client_rules() {
    let rs = set(&format!(
        "{NONE}client block {{ from: 10.0.0.66/32 to: 0/0 }}\n\
         client pass {{ from: 10.0.0.0/8 port 1024-65535 to: 0/0 port = 1080 }}\n\
         client pass {{ from: 0/0 to: lo }}\n"
    ));
    let c = |src: &str, dst: &str| {
        let m = rs.client(&ClientQuery {
            src: sa(src),
            dst: sa(dst),
            src_names: &[],
            dst_names: &[],
        });
        (m.verdict, m.number)
    };
    assert_eq!(c("10.0.0.66:3000", "192.0.2.1:1080"), (Verdict::Block, 1));
    assert_eq!(c("10.0.0.1:3000", "192.0.2.1:1080"), (Verdict::Pass, 2));
    assert_eq!(c("10.0.0.1:1000", "192.0.2.1:1080"), (Verdict::Block, 0));
    assert_eq!(c("10.0.0.1:3000", "192.0.2.1:1081"), (Verdict::Block, 0));
    // An interface name matches the interface's networks.
    assert_eq!(c("203.0.113.5:3000", "127.0.0.1:1080"), (Verdict::Pass, 3));
    assert_eq!(c("[2001:db8::1]:3000", "[::1]:1080"), (Verdict::Pass, 3));
    // A dual-stack socket's IPv4-mapped client is an IPv4 client.
    assert_eq!(
        c("[::ffff:10.0.0.1]:3000", "[::ffff:192.0.2.1]:1080"),
        (Verdict::Pass, 2)
    );
}

#[test]
fn address_families() {
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 0.0.0.0/0 }}\n\
         socks pass {{ from: 0/0 to: ::/0 }}\n\
         socks pass {{ from: 0/0 to: 0/0 }}\n"
    ));
    assert_eq!(socks_rule(&rs, &q("1.1.1.1:5", "10.1.2.3:80")).1, 1);
    assert_eq!(socks_rule(&rs, &q("1.1.1.1:5", "[2001:db8::1]:80")).1, 2);
    assert_eq!(
        socks_rule(&rs, &q("1.1.1.1:5", "[::ffff:10.1.2.3]:80")).1,
        1
    );
    let only_any = set(&format!("{NONE}socks pass {{ from: 0/0 to: 0/0 }}\n"));
    let mut unresolved = q("1.1.1.1:5", "1.2.3.4:80");
    unresolved.dst.ip = None;
    unresolved.dst.name = Some("example.org");
    assert_eq!(socks_rule(&only_any, &unresolved).1, 1);
    // A network needs the target's address.
    assert_eq!(socks_rule(&rs, &unresolved).1, 3);
}

#[test]
fn host_bits_in_a_rule_network_are_masked() {
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 10.1.2.3/8 to: 0/0 }}\n"
    ));
    assert_eq!(socks_rule(&rs, &q("10.200.0.1:5", "1.2.3.4:80")).1, 1);
    assert_eq!(socks_rule(&rs, &q("11.0.0.1:5", "1.2.3.4:80")).1, 0);
}

#[test]
fn target_names_and_domains() {
    let rs = set(&format!(
        "{NONE}socks block {{ from: 0/0 to: www.Example.com }}\n\
         socks pass {{ from: 0/0 to: .example.com port = http }}\n"
    ));
    assert!(rs.needs_target_names());
    assert!(!rs.needs_client_names());
    let mut r = q("1.1.1.1:5", "1.2.3.4:80");
    r.dst.name = Some("WWW.example.COM.");
    assert_eq!(socks_rule(&rs, &r), (Verdict::Block, 1));
    r.dst.name = Some("example.com");
    assert_eq!(socks_rule(&rs, &r), (Verdict::Pass, 2));
    r.dst.name = Some("a.b.example.com");
    assert_eq!(socks_rule(&rs, &r), (Verdict::Pass, 2));
    r.dst.name = Some("notexample.com");
    assert_eq!(socks_rule(&rs, &r).1, 0);
    r.dst.port = 443;
    r.dst.name = Some("example.com");
    assert_eq!(socks_rule(&rs, &r).1, 0);
    // An IP target matches through its reverse names.
    let names = vec!["host.example.com".to_string()];
    let mut r = q("1.1.1.1:5", "1.2.3.4:80");
    r.dst.names = &names;
    assert_eq!(socks_rule(&rs, &r), (Verdict::Pass, 2));
}

#[test]
fn client_names() {
    let rs = set(&format!(
        "{NONE}client pass {{ from: .corp.example to: 0/0 }}\n\
         socks pass {{ from: trusted.corp.example to: 0/0 }}\n"
    ));
    assert!(rs.needs_client_names());
    let names = vec!["pc1.corp.example".to_string()];
    let m = rs.client(&ClientQuery {
        src: sa("10.0.0.1:3000"),
        dst: sa("10.0.0.2:1080"),
        src_names: &names,
        dst_names: &[],
    });
    assert_eq!(m.number, 1);
    let r = q("10.0.0.1:5", "1.2.3.4:80");
    assert_eq!(socks_rule(&rs, &r).1, 0);
    let trusted = vec!["Trusted.corp.example".to_string()];
    assert_eq!(rs.socks_with_src_names(&r, &trusted).number, 1);
}

#[test]
fn interface_names_in_socks_rules() {
    let rs = set(&format!(
        "{NONE}socks block {{ from: 0/0 to: lo }}\nsocks pass {{ from: eth0 to: 0/0 }}\n"
    ));
    assert!(!rs.needs_target_names());
    assert_eq!(
        socks_rule(&rs, &q("192.0.2.7:5", "127.0.0.1:80")),
        (Verdict::Block, 1)
    );
    assert_eq!(
        socks_rule(&rs, &q("192.0.2.7:5", "[::1]:80")),
        (Verdict::Block, 1)
    );
    assert_eq!(
        socks_rule(&rs, &q("192.0.2.7:5", "10.0.0.1:80")),
        (Verdict::Pass, 2)
    );
    assert_eq!(socks_rule(&rs, &q("198.51.100.1:5", "10.0.0.1:80")).1, 0);
}

#[test]
fn port_forms() {
    let cases = [
        ("port = 80", 80, true),
        ("port = 80", 81, false),
        ("port != 80", 80, false),
        ("port != 80", 81, true),
        ("port >= 80", 80, true),
        ("port >= 80", 79, false),
        ("port <= 80", 80, true),
        ("port <= 80", 81, false),
        ("port > 80", 80, false),
        ("port > 80", 81, true),
        ("port < 80", 79, true),
        ("port < 80", 80, false),
        ("port 10-20", 10, true),
        ("port 10-20", 20, true),
        ("port 10-20", 21, false),
        ("port 10-20", 9, false),
    ];
    for (form, port, want) in cases {
        let rs = set(&format!(
            "{NONE}socks pass {{ from: 0/0 to: 0/0 {form} }}\n"
        ));
        let got = socks_rule(&rs, &q("1.1.1.1:5", &format!("1.2.3.4:{port}"))).1 == 1;
        assert_eq!(got, want, "{form} vs {port}");
        let rs = set(&format!(
            "{NONE}socks pass {{ from: 0/0 {form} to: 0/0 }}\n"
        ));
        let got = socks_rule(&rs, &q(&format!("1.1.1.1:{port}"), "1.2.3.4:1")).1 == 1;
        assert_eq!(got, want, "from {form} vs {port}");
    }
}

#[test]
fn commands_and_protocols() {
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 0/0 command: bind }}\n\
         socks pass {{ from: 0/0 to: 0/0 protocol: udp }}\n\
         socks pass {{ from: 0/0 to: 0/0 protocol: tcp }}\n\
         socks pass {{ from: 0/0 to: 0/0 command: udpassociate protocol: tcp }}\n"
    ));
    let with = |c: Command| {
        let mut r = q("1.1.1.1:5", "1.2.3.4:80");
        r.command = c;
        rs.socks(&r).number
    };
    assert_eq!(with(Command::Bind), 1);
    assert_eq!(with(Command::UdpAssociate), 2);
    assert_eq!(with(Command::UdpReply), 2);
    assert_eq!(with(Command::Connect), 3);
    assert_eq!(with(Command::BindReply), 3);
    // `command: udpassociate` with `protocol: tcp` matches nothing.
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 0/0 command: udpassociate protocol: tcp }}\n"
    ));
    let mut r = q("1.1.1.1:5", "1.2.3.4:80");
    r.command = Command::UdpAssociate;
    assert_eq!(rs.socks(&r).number, 0);
}

#[test]
fn proxy_protocols() {
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 0/0 proxyprotocol: socks_v4 }}\n\
         socks pass {{ from: 0/0 to: 0/0 proxyprotocol: socks_v5 }}\n"
    ));
    let mut r = q("1.1.1.1:5", "1.2.3.4:80");
    assert_eq!(rs.socks(&r).number, 2);
    r.version = ProxyProtocol::SocksV4;
    assert_eq!(rs.socks(&r).number, 1);
}

#[test]
fn methods_and_users() {
    let c = cfg_all(
        "socksmethod: username none\n\
         socks pass { from: 0/0 to: 10.0.0.0/8 socksmethod: username user: alice bob }\n\
         socks pass { from: 0/0 to: 10.0.0.0/8 socksmethod: username }\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    );
    let rs = RuleSet::compile(&c, &ifaces).unwrap();
    let mut r = q("1.1.1.1:5", "10.0.0.1:80");
    assert_eq!(rs.socks(&r).number, 3);
    r.method = Method::Username;
    r.user = Some("alice");
    assert_eq!(rs.socks(&r).number, 1);
    r.user = Some("carol");
    assert_eq!(rs.socks(&r).number, 2);
    r.user = None;
    assert_eq!(rs.socks(&r).number, 2);
    // The global list applies to rules without their own.
    r.method = Method::Gssapi;
    assert_eq!(rs.socks(&r).number, 0);
}

#[test]
fn socks_v4_never_matches_a_rule_without_none() {
    // CVE-2024-54662.
    let c = cfg_all(
        "socksmethod: username none\n\
         client pass { from: 0/0 to: 0/0 socksmethod: username }\n\
         client pass { from: 0/0 to: 0/0 }\n\
         socks pass { from: 0/0 to: 0/0 socksmethod: username }\n",
    );
    let rs = RuleSet::compile(&c, &ifaces).unwrap();
    let mut r = q("1.1.1.1:5", "1.2.3.4:80");
    r.version = ProxyProtocol::SocksV4;
    assert_eq!(rs.socks(&r).number, 0);
    // Even when the caller claims a method for a v4 request.
    r.method = Method::Username;
    assert_eq!(rs.socks(&r).number, 0);
    r.version = ProxyProtocol::SocksV5;
    assert_eq!(rs.socks(&r).number, 1);

    let m = rs.client(&ClientQuery {
        src: sa("1.1.1.1:5"),
        dst: sa("2.2.2.2:1080"),
        src_names: &[],
        dst_names: &[],
    });
    assert_eq!(rs.client_socksmethod(&m), &[Method::Username]);
    assert!(!rs.client_allows_socks_v4(&m));
    let c2 = cfg("socksmethod: none\nclient pass { from: 0/0 to: 0/0 }\n");
    let rs2 = RuleSet::compile(&c2, &ifaces).unwrap();
    let m = rs2.client(&ClientQuery {
        src: sa("1.1.1.1:5"),
        dst: sa("2.2.2.2:1080"),
        src_names: &[],
        dst_names: &[],
    });
    assert!(rs2.client_allows_socks_v4(&m));
    let blocked = rs2.client(&ClientQuery {
        src: sa("[::1]:5"),
        dst: sa("2.2.2.2:1080"),
        src_names: &[],
        dst_names: &[],
    });
    assert_eq!(blocked.number, 1);
}

#[test]
fn bindreply_convention() {
    // from = the remote peer, to = the client.
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 10.0.0.0/8 command: bindreply udpreply }}\n"
    ));
    let mut r = q("203.0.113.9:20", "10.0.0.5:40000");
    r.command = Command::BindReply;
    assert_eq!(rs.socks(&r).number, 1);
    r.command = Command::UdpReply;
    assert_eq!(rs.socks(&r).number, 1);
    r.command = Command::Connect;
    assert_eq!(rs.socks(&r).number, 0);
}

#[test]
fn reply_rules_ignore_the_sessions_method_unless_checkreplyauth() {
    // A username session's BIND reply: the reply rule allows only `none`, and names a user.
    let rules = "socks pass { from: 0/0 to: 0/0 command: bindreply socksmethod: none }\n\
                 socks pass { from: 0/0 to: 0/0 command: udpreply user: alice }\n";
    let text = format!("socksmethod: none username\n{rules}");
    let mut r = q("203.0.113.9:20", "10.0.0.5:40000");
    r.method = Method::Username;
    r.user = Some("alice");
    r.command = Command::BindReply;
    let off = set(&text);
    assert_eq!(
        off.socks(&r).number,
        1,
        "Dante checks replies as method none"
    );
    r.command = Command::UdpReply;
    assert_eq!(off.socks(&r).number, 0, "and without the session's user");
    let on = set(&format!("srchost: checkreplyauth\n{text}"));
    assert_eq!(on.socks(&r).number, 2, "checkreplyauth: the user counts");
    r.command = Command::BindReply;
    assert_eq!(on.socks(&r).number, 0, "checkreplyauth: the method counts");
    // Requests are checked as before either way.
    r.command = Command::Connect;
    assert_eq!(off.socks(&r).number, 0);
}

#[test]
fn unsupported_conditions_refuse_to_compile() {
    // A user or group in a client rule needs a clientmethod that names the user (Dante's
    // error otherwise).
    let c = cfg_all("socksmethod: none\nclient pass { from: 0/0 to: 0/0 group: staff }\n");
    let e = RuleSet::compile(&c, &ifaces).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "client-rule #1 (line 2): the settings in this client-rule requires the client to \
             provide a user/group-name"
        ),
        "{e}"
    );
    let c = cfg_all("socksmethod: none\nclient pass { from: 0/0 to: 0/0 user: bob }\n");
    assert!(matches!(
        RuleSet::compile(&c, &ifaces),
        Err(CompileError::Invalid { .. })
    ));
    // A host name in a client rule's `to:` names our own address, by its confirmed names.
    let c = cfg("socksmethod: none\nclient pass { from: 0/0 to: proxy.example }\n");
    let set = RuleSet::compile(&c, &ifaces).unwrap();
    assert!(set.needs_local_names());
    let names = ["Proxy.Example.".to_string()];
    let mut q = ClientQuery {
        src: "10.1.2.3:4000".parse().unwrap(),
        dst: "127.0.0.1:1080".parse().unwrap(),
        src_names: &[],
        dst_names: &names,
    };
    assert_eq!(set.client(&q).number, 1);
    q.dst_names = &[];
    assert_eq!(set.client(&q).number, 0);
    let mut c = cfg(&format!("{NONE}socks pass {{ from: 0/0 to: x }}\n"));
    c.socks_rules[0].to.addr = rsockd_config::AddrMatch::Name("bad name".into());
    assert!(matches!(
        RuleSet::compile(&c, &ifaces),
        Err(CompileError::InvalidName { .. })
    ));
}

#[test]
fn log_flags_reach_the_caller() {
    let rs = set(&format!(
        "{NONE}socks pass {{ from: 0/0 to: 0/0 log: connect error }}\n"
    ));
    let m = rs.socks(&q("1.1.1.1:5", "1.2.3.4:80"));
    let r = m.rule.unwrap();
    assert!(r.log.connect && r.log.error && !r.log.data);
}

#[test]
fn user_and_group_conditions() {
    let rs = set("socksmethod: username none\n\
         socks pass { from: 0/0 to: 0/0 user: alice bob }\n\
         socks pass { from: 0/0 to: 0/0 group: staff }\n\
         socks block { from: 0/0 to: 0/0 }\n");
    assert!(rs.needs_groups());
    let base = SocksQuery {
        method: Method::Username,
        ..q("10.0.0.1:1000", "10.0.0.2:80")
    };
    let staff = vec!["users".to_string(), "staff".to_string()];
    let other = vec!["users".to_string()];
    let cases: [(Option<&str>, &[String], u32); 5] = [
        (Some("alice"), &other, 1),
        (Some("bob"), &[], 1),
        (Some("carol"), &staff, 2),
        (Some("carol"), &other, 3),
        // A rule with groups never matches a session without a user, whatever groups say.
        (None, &staff, 3),
    ];
    for (user, groups, want) in cases {
        let m = rs.socks(&SocksQuery {
            user,
            groups,
            ..base
        });
        assert_eq!(m.number, want, "{user:?} {groups:?}");
    }
    assert!(!set(&format!("{NONE}socks pass {{ from: 0/0 to: 0/0 }}\n")).needs_groups());
}

#[test]
fn the_first_matching_monitor_watches_a_session() {
    let rs = set("socksmethod: none\nsocks pass { from: 0/0 to: 0/0 }\n\
         monitor { from: 10.0.0.0/8 to: 0/0 command: bind\n internal.alarm.data.recv: 1 in 1 }\n\
         monitor { from: 10.0.0.0/8 to: 192.0.2.0/24 port = 80\n internal.alarm.data.recv: 1 in 1 }\n\
         monitor { from: 0/0 to: 0/0\n internal.alarm.data.recv: 1 in 1 }\n");
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        rs.monitor(a("10.1.1.1:5000"), Command::Bind, a("192.0.2.1:80")),
        Some(1)
    );
    assert_eq!(
        rs.monitor(a("10.1.1.1:5000"), Command::Connect, a("192.0.2.1:80")),
        Some(2)
    );
    assert_eq!(
        rs.monitor(a("10.1.1.1:5000"), Command::Connect, a("192.0.2.1:81")),
        Some(3)
    );
    assert_eq!(
        rs.monitor(a("[::1]:5000"), Command::Connect, a("[::1]:80")),
        Some(3)
    );
    let none = set("socksmethod: none\nsocks pass { from: 0/0 to: 0/0 }\n\
         monitor { from: 10.0.0.0/8 to: 0/0\n internal.alarm.data.recv: 1 in 1 }\n");
    assert_eq!(
        none.monitor(a("127.0.0.1:5000"), Command::Connect, a("127.0.0.1:80")),
        None
    );
}

#[test]
fn client_rules_with_accept_time_methods() {
    let c = cfg("socksmethod: none\nclientmethod: rfc931 none\n\
         client pass { from: 10.0.0.0/8 to: 0/0\n clientmethod: rfc931\n user: alice\n}\n\
         client block { from: 10.1.0.0/16 to: 0/0\n clientmethod: rfc931\n}\n\
         client pass { from: 0/0 to: 0/0\n clientmethod: none\n}\n");
    let set = RuleSet::compile(&c, &ifaces).unwrap();
    assert!(set.needs_client_auth());
    let q = ClientQuery {
        src: "10.1.2.3:4000".parse().unwrap(),
        dst: "127.0.0.1:1080".parse().unwrap(),
        src_names: &[],
        dst_names: &[],
    };
    let got: Vec<(u32, Vec<Method>)> = set
        .client_candidates(&q)
        .into_iter()
        .map(|(m, methods)| (m.number, methods.to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, vec![Method::Rfc931]),
            (2, vec![Method::Rfc931]),
            (3, vec![Method::None])
        ]
    );
    let r1 = set.client_candidates(&q)[0].0.rule.unwrap();
    assert!(rsockd_rules::user_matches(r1, Some("alice"), &[]));
    assert!(!rsockd_rules::user_matches(r1, Some("bob"), &[]));
    assert!(!rsockd_rules::user_matches(r1, None, &[]));
    // Only `none` everywhere: nothing to check at accept.
    let plain = RuleSet::compile(
        &cfg("socksmethod: none\nclient pass { from: 0/0 to: 0/0 }\n"),
        &ifaces,
    )
    .unwrap();
    assert!(!plain.needs_client_auth());
}
