//! One test per implemented keyword and per deprecated alias: the value lands in the model.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cfg, ok, ok_all, socks_rule, warnings};
use ipnet::IpNet;
use rsockd_config::{
    AddrMatch, Command, Families, HostSpec, LogDest, Method, PortMatch, Protocol, ProxyProtocol,
    Rotation, RuleKind, Throttle, Timeouts, Verdict,
};
use std::net::IpAddr;
use std::path::PathBuf;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> AddrMatch {
    AddrMatch::Net(s.parse::<IpNet>().unwrap())
}

#[test]
fn internal_forms() {
    let c = cfg("internal: 127.0.0.1 port = 1081\n\
                 internal: ::1\n\
                 internal: eth0 port=1082\n\
                 internal: localhost port: 1083\n\
                 internal: 10.0.0.1 port eq 1084\n\
                 internal:10.0.0.2 port = socks\n\
                 internal : fe80::1%lo port 1085\n");
    let got: Vec<_> = c
        .internal
        .iter()
        .map(|a| (a.host.clone(), a.port, a.line))
        .collect();
    assert_eq!(
        got,
        vec![
            (HostSpec::Ip(ip("127.0.0.1")), 1081, 1),
            (HostSpec::Ip(ip("::1")), 1080, 2),
            (HostSpec::Name("eth0".into()), 1082, 3),
            (HostSpec::Name("localhost".into()), 1083, 4),
            (HostSpec::Ip(ip("10.0.0.1")), 1084, 5),
            (HostSpec::Ip(ip("10.0.0.2")), 1080, 6),
            (HostSpec::Name("fe80::1%lo".into()), 1085, 7),
        ]
    );
}

#[test]
fn internal_port_operator_other_than_eq_warns() {
    let l = ok("internal: 127.0.0.1 port > 1081\n");
    assert_eq!(l.config.internal[0].port, 1081);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.message.contains("only '=' makes sense")));
}

#[test]
fn external_forms() {
    let c = cfg("external: 192.0.2.1\nexternal: eth1\nexternal: 2001:db8::1\n");
    let got: Vec<_> = c.external.iter().map(|a| a.host.clone()).collect();
    assert_eq!(
        got,
        vec![
            HostSpec::Ip(ip("192.0.2.1")),
            HostSpec::Name("eth1".into()),
            HostSpec::Ip(ip("2001:db8::1"))
        ]
    );
    assert_eq!(c.external[1].line, 2);
}

#[test]
fn two_externals_without_rotation_warn() {
    let w = warnings("socksmethod: none\nexternal: 192.0.2.1\nexternal: 192.0.2.2\n");
    assert!(w
        .iter()
        .any(|m| m.contains("only the first one of each address family is used")));
    let w = warnings("socksmethod: none\nexternal: a\nexternal: b\nexternal.rotation: route\n");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn protocols_and_rotation() {
    let c = cfg("internal.protocol: ipv4\nexternal.protocol: ipv6\nexternal.rotation: same-same\n");
    assert_eq!(
        c.internal_protocol,
        Families {
            ipv4: true,
            ipv6: false
        }
    );
    assert_eq!(
        c.external_protocol,
        Families {
            ipv4: false,
            ipv6: true
        }
    );
    assert_eq!(c.external_rotation, Rotation::SameSame);
    let c = cfg("internal.protocol: ipv6 ipv4\nexternal.rotation: route\n");
    assert_eq!(c.internal_protocol, Families::default());
    assert_eq!(c.external_rotation, Rotation::Route);
    assert_eq!(
        cfg("external.rotation: none\n").external_rotation,
        Rotation::None
    );
}

#[test]
fn global_methods() {
    let c = cfg("socksmethod: none\nclientmethod: none\n");
    assert_eq!(c.socksmethod, vec![Method::None]);
    assert_eq!(c.clientmethod, vec![Method::None]);
    // Every method but bsdauth (refused as Dante's Linux build refuses it) parses into the
    // model when the support gate is off, in file order.
    let c = ok_all(
        "socksmethod: gssapi username none rfc931 pam.any pam.address pam.username \
         ldapauth\nclientmethod: rfc931 pam.any pam.address none\n",
    )
    .config;
    assert_eq!(
        c.socksmethod,
        vec![
            Method::Gssapi,
            Method::Username,
            Method::None,
            Method::Rfc931,
            Method::PamAny,
            Method::PamAddress,
            Method::PamUsername,
            Method::LdapAuth
        ]
    );
    assert_eq!(c.clientmethod.len(), 4);
}

#[test]
fn a_second_global_method_line_replaces_the_first() {
    let l = ok("socksmethod: none\nsocksmethod: none\n");
    assert_eq!(l.config.socksmethod, vec![Method::None]);
    assert!(l.warnings[0].message.contains("replaces the one on line 1"));
}

#[test]
fn duplicate_method_is_dropped_with_a_warning() {
    let l = ok("socksmethod: none none\n");
    assert_eq!(l.config.socksmethod, vec![Method::None]);
    assert!(l.warnings[0].message.contains("duplicate method"));
}

#[test]
fn deprecated_method_keyword() {
    let l = ok(
        "method: none\nclient pass { from: 0/0 to: 0/0 method: none }\n\
                socks pass { from: 0/0 to: 0/0 method: none }\n",
    );
    assert_eq!(l.config.socksmethod, vec![Method::None]);
    assert_eq!(l.config.client_rules[0].clientmethod, vec![Method::None]);
    assert_eq!(l.config.socks_rules[0].socksmethod, vec![Method::None]);
    let w: Vec<_> = l
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    assert_eq!(
        w,
        vec![
            (1, "'method' is deprecated; assuming 'socksmethod'"),
            (2, "'method' is deprecated; assuming 'clientmethod'"),
            (3, "'method' is deprecated; assuming 'socksmethod'"),
        ]
    );
}

#[test]
fn deprecated_pam_method() {
    let l = ok_all("socksmethod: pam\n");
    assert_eq!(l.config.socksmethod, vec![Method::PamUsername]);
    assert!(l.warnings[0].message.contains("assuming 'pam.username'"));
}

#[test]
fn users() {
    let c = cfg("user.privileged: root\nuser.unprivileged: nobody\n");
    assert_eq!(c.user_privileged.as_deref(), Some("root"));
    assert_eq!(c.user_unprivileged.as_deref(), Some("nobody"));
    // Dante's alias, applied silently.
    let l = ok("socksmethod: none\nuser.notprivileged: proxy\n");
    assert_eq!(l.config.user_unprivileged.as_deref(), Some("proxy"));
    assert!(l.warnings.is_empty());
}

#[test]
fn user_libwrap_is_kept_but_warned() {
    let l = ok("socksmethod: none\nuser.libwrap: nobody\n");
    assert_eq!(l.config.user_libwrap.as_deref(), Some("nobody"));
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].message.contains("user.unprivileged"));
    assert_eq!((l.warnings[0].line, l.warnings[0].column), (2, 1));
}

#[test]
fn log_outputs() {
    let c = cfg("logoutput: syslog stdout /var/log/sockd.log\n\
                 logoutput: syslog/local0 stderr\n\
                 errorlog: syslog/daemon rel.log\n");
    assert_eq!(
        c.logoutput,
        vec![
            LogDest::Syslog { facility: None },
            LogDest::Stdout,
            LogDest::File(PathBuf::from("/var/log/sockd.log")),
            LogDest::Syslog {
                facility: Some("local0".into())
            },
            LogDest::Stderr,
        ]
    );
    assert_eq!(
        c.errorlog,
        vec![
            LogDest::Syslog {
                facility: Some("daemon".into())
            },
            LogDest::File(PathBuf::from("rel.log"))
        ]
    );
}

#[test]
fn debug_and_udp_connectdst() {
    let c = cfg("debug: 2\nudp.connectdst: no\n");
    assert_eq!(c.debug, Some(2));
    assert!(!c.udp_connectdst);
    assert!(cfg("udp.connectdst: yes\n").udp_connectdst);
    assert!(cfg("").udp_connectdst);
}

#[test]
fn global_timeouts() {
    let c = cfg("timeout.negotiate: 5\ntimeout.connect: 6\ntimeout.io: 7\n\
                 timeout.io.udp: 8\ntimeout.tcp_fin_wait: 9\n");
    assert_eq!(
        c.timeout,
        Timeouts {
            negotiate: Some(5),
            connect: Some(6),
            io_tcp: Some(7),
            io_udp: Some(8),
            tcp_fin_wait: Some(9)
        }
    );
    assert_eq!(cfg("timeout.io.tcp: 0\n").timeout.io_tcp, Some(0));
    // Dante reads numbers with strtoll base 0.
    assert_eq!(cfg("timeout.io: 0x10\n").timeout.io_udp, Some(16));
    assert_eq!(cfg("timeout.io: 010\n").timeout.io_udp, Some(8));
}

#[test]
fn deprecated_timeouts() {
    let l = ok("socksmethod: none\nconnecttimeout: 5\niotimeout: 6\n");
    assert_eq!(l.config.timeout.connect, Some(5));
    assert_eq!(l.config.timeout.io_tcp, Some(6));
    assert_eq!(l.config.timeout.io_udp, Some(6));
    let w: Vec<_> = l.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        w,
        vec![
            "'connecttimeout' is deprecated; assuming 'timeout.connect'",
            "'iotimeout' is deprecated; assuming 'timeout.io'"
        ]
    );
}

#[test]
fn several_settings_on_one_line() {
    let c = cfg("debug: 1 timeout.io: 5 udp.connectdst: no\n");
    assert_eq!(
        (c.debug, c.timeout.io_tcp, c.udp_connectdst),
        (Some(1), Some(5), false)
    );
}

#[test]
fn ignored_keywords_warn() {
    for (line, needle) in [
        ("child.maxidle: yes", "'child.maxidle' is ignored"),
        ("localdomain: example.com", "'localdomain' is ignored"),
        ("resolveprotocol: tcp", "'resolveprotocol' is ignored"),
    ] {
        let w = warnings(&format!("socksmethod: none\n{line}\n"));
        assert_eq!(w.len(), 1, "{line}: {w:?}");
        assert!(w[0].contains(needle), "{line}: {w:?}");
    }
}

#[test]
fn empty_socksmethod_warns() {
    let w = warnings("socks pass { from: 0/0 to: 0/0 }\n");
    assert!(w[0].contains("socks-rule #1 sets no socks authentication methods"));
    assert!(w[1].contains("no socks authentication methods enabled"));
    assert!(warnings("socksmethod: none\n").is_empty());
}

#[test]
fn rule_kinds_numbers_and_lines() {
    let c = cfg("socksmethod: none\n\
                 client pass { from: 0/0 to: 0/0 }\n\
                 socks block { from: 0/0 to: 0/0 }\n\
                 client block {\n from: 0/0\n to: 0/0\n}\n\
                 socks pass { from: 0/0 to: 0/0 }\n");
    let c_rules: Vec<_> = c
        .client_rules
        .iter()
        .map(|r| (r.kind, r.verdict, r.number, r.line))
        .collect();
    assert_eq!(
        c_rules,
        vec![
            (RuleKind::Client, Verdict::Pass, 1, 2),
            (RuleKind::Client, Verdict::Block, 2, 4)
        ]
    );
    let s_rules: Vec<_> = c
        .socks_rules
        .iter()
        .map(|r| (r.verdict, r.number, r.line))
        .collect();
    assert_eq!(s_rules, vec![(Verdict::Block, 1, 3), (Verdict::Pass, 2, 8)]);
}

#[test]
fn bare_pass_and_block_are_socks_rules() {
    let l = ok("socksmethod: none\npass { from: 0/0 to: 0/0 }\nblock { from: 0/0 to: 0/0 }\n");
    assert_eq!(l.config.socks_rules.len(), 2);
    assert_eq!(l.config.socks_rules[1].verdict, Verdict::Block);
    assert_eq!(
        l.warnings[0].message,
        "'pass' without 'socks' is deprecated; assuming 'socks pass'"
    );
    assert_eq!(l.warnings[1].line, 3);
}

#[test]
fn rule_address_forms() {
    let c = cfg(&socks_rule("from: 10.0.0.0/8 to: 0.0.0.0/0"));
    assert_eq!(c.socks_rules[0].from.addr, net("10.0.0.0/8"));
    // 0.0.0.0/0 is IPv4 only; 0/0 is both families.
    assert_eq!(c.socks_rules[0].to.addr, net("0.0.0.0/0"));
    let c = cfg(&socks_rule("from: 0/0 to: ::/0"));
    assert_eq!(c.socks_rules[0].from.addr, AddrMatch::Any);
    assert_eq!(c.socks_rules[0].to.addr, net("::/0"));
    let c = cfg(&socks_rule("from: fe80::1/64 to: .Example.COM"));
    assert_eq!(c.socks_rules[0].from.addr, net("fe80::1/64"));
    assert_eq!(
        c.socks_rules[0].to.addr,
        AddrMatch::Domain("example.com".into())
    );
    let c = cfg(&socks_rule("from: lo to: www.example.org"));
    assert_eq!(c.socks_rules[0].from.addr, AddrMatch::Name("lo".into()));
    assert_eq!(
        c.socks_rules[0].to.addr,
        AddrMatch::Name("www.example.org".into())
    );
    let c = cfg(&socks_rule("from: 10.1.2.3 / 8 to: 0/0"));
    assert_eq!(c.socks_rules[0].from.addr, net("10.1.2.3/8"));
}

#[test]
fn port_forms() {
    let cases = [
        ("port = 80", PortMatch::Eq(80)),
        ("port=80", PortMatch::Eq(80)),
        ("port: 80", PortMatch::Eq(80)),
        ("port 80", PortMatch::Eq(80)),
        ("port eq 80", PortMatch::Eq(80)),
        ("port ne 80", PortMatch::Ne(80)),
        ("port neq 80", PortMatch::Ne(80)),
        ("port != 80", PortMatch::Ne(80)),
        ("port ge 80", PortMatch::Ge(80)),
        ("port >= 80", PortMatch::Ge(80)),
        ("port le 80", PortMatch::Le(80)),
        ("port <= 80", PortMatch::Le(80)),
        ("port gt 80", PortMatch::Gt(80)),
        ("port > 80", PortMatch::Gt(80)),
        ("port lt 80", PortMatch::Lt(80)),
        ("port < 80", PortMatch::Lt(80)),
        ("port 1-100", PortMatch::Range(1, 100)),
        ("port 1 - 100", PortMatch::Range(1, 100)),
        ("port 5-5", PortMatch::Range(5, 5)),
        ("port = http", PortMatch::Eq(80)),
        ("port = ftp-data", PortMatch::Eq(20)),
        ("port eq https", PortMatch::Eq(443)),
        ("port = 0x50", PortMatch::Eq(80)),
        ("port = 010", PortMatch::Eq(8)),
        ("port = 0", PortMatch::Eq(0)),
        ("port = 65535", PortMatch::Eq(65535)),
    ];
    for (form, want) in cases {
        let c = cfg(&socks_rule(&format!("from: 0/0 {form} to: 0/0 {form}")));
        let r = &c.socks_rules[0];
        assert_eq!((r.from.port, r.to.port), (want, want), "{form}");
    }
    let c = cfg("socksmethod: none\nsocks pass { from: 0/0 to: 0/0 port = http}\n");
    assert_eq!(c.socks_rules[0].to.port, PortMatch::Eq(80));
}

#[test]
fn service_names_from_etc_services_style_table() {
    let opts = rsockd_config::ParseOptions {
        services: rsockd_config::Services::with_etc_services("gizmo 4242/tcp\n"),
        ..Default::default()
    };
    let l =
        rsockd_config::parse_str_with("t", &socks_rule("from: 0/0 to: 0/0 port = gizmo"), &opts)
            .unwrap();
    assert_eq!(l.config.socks_rules[0].to.port, PortMatch::Eq(4242));
}

#[test]
fn rule_options() {
    let c = cfg("socksmethod: none\nclientmethod: none\n\
                 socks pass {\n\
                   from: 0/0 to: 0/0 port = http log: connect\n\
                   command: bind bindreply connect udpassociate udpreply\n\
                   protocol: tcp udp\n\
                   proxyprotocol: socks_v4 socks_v5\n\
                   socksmethod: none\n\
                   clientmethod: none\n\
                   log: disconnect data error iooperation tcpinfo\n\
                   timeout.negotiate: 1 timeout.connect: 2 timeout.io: 3 timeout.tcp_fin_wait: 4\n\
                 }\n");
    let r = &c.socks_rules[0];
    assert_eq!(r.command, Command::ALL.to_vec());
    assert_eq!(r.protocol, vec![Protocol::Tcp, Protocol::Udp]);
    assert_eq!(
        r.proxyprotocol,
        vec![ProxyProtocol::SocksV4, ProxyProtocol::SocksV5]
    );
    assert_eq!(r.socksmethod, vec![Method::None]);
    assert_eq!(r.clientmethod, vec![Method::None]);
    assert_eq!(
        r.log.names(),
        vec![
            "connect",
            "disconnect",
            "data",
            "error",
            "iooperation",
            "tcpinfo"
        ]
    );
    assert_eq!(
        r.timeout,
        Timeouts {
            negotiate: Some(1),
            connect: Some(2),
            io_tcp: Some(3),
            io_udp: Some(3),
            tcp_fin_wait: Some(4)
        }
    );
    let c = cfg(&socks_rule("from: 0/0 to: 0/0 log: ioop"));
    assert!(c.socks_rules[0].log.iooperation);
}

#[test]
fn several_list_options_on_one_line() {
    // Dante needs each list on its own line; we also take `keyword:` as the end of a list.
    let c = cfg(&socks_rule(
        "from: 0/0 to: 0/0 command: connect log: connect error protocol: tcp",
    ));
    let r = &c.socks_rules[0];
    assert_eq!(r.command, vec![Command::Connect]);
    assert!(r.log.connect && r.log.error);
    assert_eq!(r.protocol, vec![Protocol::Tcp]);
}

#[test]
fn client_rule_options() {
    let c = cfg(
        "socksmethod: none\nclient pass { from: 10.0.0.0/8 port 1-65535 to: 0/0\n\
                 socksmethod: none\nclientmethod: none\nlog: connect\ntimeout.negotiate: 9 }\n",
    );
    let r = &c.client_rules[0];
    assert_eq!(r.from.port, PortMatch::Range(1, 65535));
    assert_eq!(r.socksmethod, vec![Method::None]);
    assert_eq!(r.timeout.negotiate, Some(9));
}

#[test]
fn user_group_and_portrange_parse_into_the_model() {
    let l = ok_all(
        "socksmethod: username\nsocks pass { from: 0/0 to: 0/0\nuser: alice bob\ngroup: staff\n\
         udp.portrange: 2000 - 3000 }\n",
    );
    let r = &l.config.socks_rules[0];
    assert_eq!(r.user, vec!["alice".to_string(), "bob".to_string()]);
    assert_eq!(r.group, vec!["staff".to_string()]);
    assert_eq!(r.udp_portrange, Some((2000, 3000)));
    let l = ok_all("socksmethod: none\nsocks pass { from: 0/0 to: 0/0 udp.portrange: 1-2 }\n");
    assert_eq!(l.config.socks_rules[0].udp_portrange, Some((1, 2)));
}

#[test]
fn rule_methods_accumulate_across_lines() {
    let l = ok_all(
        "socksmethod: username none\nsocks pass { from: 0/0 to: 0/0\nsocksmethod: none\n\
         socksmethod: username none }\n",
    );
    assert_eq!(
        l.config.socks_rules[0].socksmethod,
        vec![Method::None, Method::Username]
    );
    assert!(l
        .warnings
        .iter()
        .any(|w| w.message.contains("duplicate method 'none'")));
}

#[test]
fn comments_continuations_and_crlf() {
    let c = cfg("# comment\r\nsocksmethod: none # trailing\r\n\
                 socks pass { from: 0/0 \\\n to: 0/0 } # after\r\n\
                 socks block { # open\n from: 0/0 to: 0/0 # in\n } \n");
    assert_eq!(c.socks_rules.len(), 2);
}

#[test]
fn empty_file_is_an_empty_config() {
    let c = cfg("");
    assert!(c.internal.is_empty() && c.socks_rules.is_empty());
    assert_eq!(c.effective_clientmethod(), vec![Method::None]);
}

#[test]
fn families_default_both() {
    let c = cfg("");
    assert_eq!(
        c.internal_protocol,
        Families {
            ipv4: true,
            ipv6: true
        }
    );
}

#[test]
fn session_limits_parse_into_client_and_socks_rules() {
    let l = ok_all(
        "client pass { from: 0/0 to: 0/0 session.max: 10 session.inheritable: no }\n\
         socks pass { from: 0/0 to: 0/0 session.throttle: 5/2 session.max: 3 }\n",
    );
    let c = l.config.client_rules[0].session;
    assert_eq!(c.max, Some(10));
    assert_eq!(c.inheritable, Some(false));
    assert!(!c.inherits());
    let s = l.config.socks_rules[0].session;
    assert_eq!(s.max, Some(3));
    assert_eq!(
        s.throttle,
        Some(Throttle {
            sessions: 5,
            seconds: 2
        })
    );
    assert!(s.inherits(), "Dante's default is inheritable");
    let l = ok_all("socks pass { from: 0/0 to: 0/0 bandwidth: 1048576 }\n");
    assert_eq!(l.config.socks_rules[0].bandwidth, Some(1_048_576));
    assert!(s.limits());
}

#[test]
fn redirect_from_and_to_parse_with_and_without_a_port() {
    let l = ok_all(
        "socks pass { from: 0/0 to: 0/0 command: connect\nredirect from: 127.0.0.2 redirect to: ::1 port = 3128 }\n",
    );
    let r = &l.config.socks_rules[0];
    let from = r.redirect_from.unwrap();
    assert_eq!((from.ip, from.port), ("127.0.0.2".parse().unwrap(), None));
    let to = r.redirect_to.unwrap();
    assert_eq!((to.ip, to.port), ("::1".parse().unwrap(), Some(3128)));
    // Printed and read back the same.
    let again = ok_all(&l.config.to_string());
    assert_eq!(again.config.socks_rules[0].redirect_to, r.redirect_to);
}

#[test]
fn monitors_parse_with_every_alarm_form() {
    let l = ok_all(
        "socksmethod: none\nsocks pass { from: 0/0 to: 0/0 }\n\
         monitor {\n from: 127.0.0.0/8 to: 0/0\n protocol: tcp\n command: connect\n\
         internal.alarm.data.recv: 0 in 5\n external.alarm.data.send: 1024 in 2\n\
         alarm.data.recv: 7 in 1\n alarm.data: 8 in 1\n\
         internal.alarm.disconnect: 2/50 in 60\n alarm.disconnect: 3/4 in 10\n}\n\
         monitor { from: 0/0 to: 10.0.0.0/8 port = 80\n external.alarm.data.recv: 1 in 1 }\n",
    );
    let m = &l.config.monitors;
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].number, m[0].line, m[1].number), (1, 3, 2));
    let names: Vec<_> = m[0]
        .data
        .iter()
        .map(|d| (d.name(), d.bytes, d.seconds))
        .collect();
    assert_eq!(
        names,
        [
            ("internal.recv".to_string(), 0, 5),
            ("external.send".to_string(), 1024, 2),
            ("recv".to_string(), 7, 1),
            (String::new(), 8, 1)
        ]
    );
    let d = &m[0].disconnect;
    assert_eq!(
        (d[0].sides.name(), d[0].min, d[0].sessions, d[0].seconds),
        ("internal", 2, 50, 60)
    );
    assert_eq!(d[1].sides.name(), "");
    assert_eq!(m[0].command, [rsockd_config::Command::Connect]);
    // Printed and read back the same.
    let again = ok_all(&l.config.to_string());
    let no_lines = |m: &[rsockd_config::Monitor]| {
        m.iter()
            .cloned()
            .map(|mut m| {
                m.line = 0;
                m
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        no_lines(&again.config.monitors),
        no_lines(&l.config.monitors)
    );
}

#[test]
fn child_limits_parse_and_zero_means_none() {
    let l = ok_all(
        "child.maxrequests: 100\nchild.maxlifetime: 3600\nsocksmethod: none\n\
         socks pass { from: 0/0 to: 0/0 }\n",
    );
    assert_eq!(l.config.child_maxrequests, Some(100));
    assert_eq!(l.config.child_maxlifetime, Some(3600));
    let again = ok_all(&l.config.to_string());
    assert_eq!(again.config.child_maxrequests, Some(100));
    let z = ok_all("child.maxrequests: 0\nsocksmethod: none\nsocks pass { from: 0/0 to: 0/0 }\n");
    assert_eq!(z.config.child_maxrequests, None);
}

#[test]
fn cpu_schedule_and_mask_map_dantes_process_names_to_ours() {
    use rsockd_config::{CpuRole, SchedPolicy};
    let l = ok_all(
        "cpu.schedule.negotiate: batch/0\ncpu.mask.io: 0 1\ncpu.schedule.relay: idle/0\n\
         cpu.mask.mother: any\nsocksmethod: none\nsocks pass { from: 0/0 to: 0/0 }\n",
    );
    let c = &l.config.cpu;
    assert_eq!(
        c.of(CpuRole::Mother).schedule,
        Some((SchedPolicy::Batch, 0))
    );
    assert_eq!(c.of(CpuRole::Mother).mask, None);
    assert_eq!(c.of(CpuRole::Relay).mask, Some(vec![0, 1]));
    assert_eq!(c.of(CpuRole::Relay).schedule, Some((SchedPolicy::Idle, 0)));
    let again = ok_all(&l.config.to_string());
    assert_eq!(&again.config.cpu, c);
}

#[test]
fn libwrap_keywords() {
    let c = cfg(
        "socksmethod: none\nlibwrap.hosts_access: yes\nlibwrap.allow: /etc/a\n\
                 libwrap.deny: /etc/d\n\
                 client pass { from: 0/0 to: 0/0\n libwrap: spawn (echo %a %d) &\n}\n\
                 socks pass { from: 0/0 to: 0/0 libwrap: deny }\n",
    );
    assert!(c.libwrap_hosts_access);
    assert_eq!(c.libwrap_allow, Some(PathBuf::from("/etc/a")));
    assert_eq!(c.libwrap_deny, Some(PathBuf::from("/etc/d")));
    assert_eq!(
        c.client_rules[0].libwrap.as_deref(),
        Some("spawn (echo %a %d) &")
    );
    // A line ending the rule: the `}` is the rule's.
    assert_eq!(c.socks_rules[0].libwrap.as_deref(), Some("deny"));
    assert!(!cfg("socksmethod: none\nlibwrap.hosts_access: no\n").libwrap_hosts_access);
}

#[test]
fn external_prefixes_and_rotations() {
    let c = cfg(
        "external: 2001:db8:1::/64\nexternal: 10.9.8.0/24\nexternal: 127.0.0.1\n\
         external.rotation: random\nsocksmethod: none\n",
    );
    assert_eq!(c.external_prefixes.len(), 2);
    assert_eq!(c.external.len(), 1);
    assert_eq!(c.external_rotation, rsockd_config::Rotation::Random);
    let c = cfg("external: 10.9.8.0/24\nexternal.rotation: user\nsocksmethod: none\n");
    assert_eq!(c.external_rotation, rsockd_config::Rotation::User);
    assert!(rsockd_config::check_startable(&c).is_ok() || c.internal.is_empty());
}
